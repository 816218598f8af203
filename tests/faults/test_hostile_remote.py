"""Builds against a hostile remote cache (hostile_remote.py) in both
protocols: corrupt, truncated, oversized, slow (1 B/s), hanging (before
answering, after the headers, mid-body), never accepting, failing
(500 / UNAVAILABLE) and poisoned action-cache entries (poison.py: right
blobs of another image).

Each case, after the honest results of //images:app and //images:tool were
uploaded, removes app's image from the engine and

* fetches app's result in-process, timed: it must come back a miss within
  the deadline of one remote operation (``remote_timeout``, the transfer
  allowance being negligible at ``remote_min_rate``) plus a small margin,
  leaving nothing in the store;
* builds //images:app with ``mbuild --remote`` on a fresh local store: the
  build must succeed, rebuilt (BuildKit's cache makes that quick) with the
  honest digest, the engine holding that image, and the store holding no
  byte that is not app's (corrupt, foreign, or a record for another image).
  Its time is held to the same build without a remote, plus the deadline,
  plus a margin for a shared machine.

The counts (hostile-remote cases, bad bytes accepted) and each case's times
against their limits go to the fault ledger, printed at the end of the run.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import docker.errors
import pytest

from mbuild.cache.remote import open_safe_remote
from mbuild.cache.store import LocalStore
from mbuild.execution.remote import RemoteActions

from ..conftest import BASE_IMAGE
from ..integration.conftest import json_records
from ..integration.workspaces import Workspace, git, make_workspace, remove_workspace_images
from .hostile_remote import Content, Fault, HostileRemote
from .ledger import BAD_BYTES, HOSTILE_REMOTE_CASES
from .poison import POISONS, foreign_blobs, record_of

pytestmark = pytest.mark.engine

TIMEOUT = 2.0  # the fault workspace's remote_timeout
MIN_RATE = 64 << 20  # its remote_min_rate: app's 1.5 MiB layer adds 0.02 s
MARGIN = 1.0  # seconds to notice a deadline, on a loaded machine
BUILD_MARGIN = 10.0  # a build's own time varies on a shared engine
APP, TOOL = "//images:app", "//images:tool"

# (case name, fault): what every request or one sort of them is answered with.
FAULTS = [
    ("corrupt", Fault("corrupt", on={"cas"})),
    ("corrupt-result", Fault("corrupt", on={"ac"})),
    ("truncated", Fault("truncated", on={"cas"})),
    ("truncated-result", Fault("truncated", on={"ac"})),
    ("oversized", Fault("oversized", on={"cas"})),
    ("oversized-result", Fault("oversized", on={"ac"})),
    ("slow-1B/s", Fault("slow", rate=1)),
    ("hang", Fault("hang")),
    ("hang-after-headers", Fault("hang-after-headers", on={"cas"})),
    ("hang-mid-body", Fault("hang-mid-body", on={"cas"})),
    ("hang-mid-layer", Fault("hang-mid-body", on={"cas"}, over=1 << 20)),  # after record, manifest, config
    ("corrupt-layer", Fault("corrupt", on={"cas"}, over=1 << 20)),
    ("never-accepts", Fault("never-accepts")),
    ("error", Fault("error")),
]
# A result saying app's image has another name is refused: the executor tells
# fetch() the name it expects (RemoteActions.fetch(image=...)).
BUILD_POISONS = sorted(POISONS)
CASES = [(name, fault, None) for name, fault in FAULTS] + [(f"poison-{p}", Fault(), p) for p in BUILD_POISONS]


@dataclass
class Bed:
    """The workspace, its honest results on the remote, and what they are."""

    ws: Workspace
    content: Content
    remotes: dict[str, HostileRemote]
    keys: dict[str, str]  # label -> action key
    digests: dict[str, str]  # label -> manifest digest
    honest_ac: dict[str, bytes]  # key -> the honest action result
    app_blobs: set[str]  # hex digests of app's blobs
    foreign: set[str]  # tool's blobs that are not app's
    base_diff_ids: tuple[str, ...]
    baseline: float  # seconds: app rebuilt without a remote (the worst of two)

    def remove_app(self, docker_sdk) -> None:
        try:
            docker_sdk.images.remove(self.ws.names["app"], force=True)
        except Exception:  # noqa: BLE001 - not there
            pass


def _build_app(ws: Workspace, store: Path, *remote: str):
    t0 = time.monotonic()
    proc = ws.mbuild("--cache-dir", str(store), "build", "--json", "--progress", "plain", *remote, APP, check=False)
    return proc, time.monotonic() - t0


@pytest.fixture(scope="module")
def bed(tmp_path_factory, docker_sdk, run_id) -> Bed:
    root = tmp_path_factory.mktemp("hostile")
    ws = make_workspace(root / "ws", root / "cache", f"{run_id}-hostile")
    with open(ws.root / "WORKSPACE.toml", "a") as f:
        f.write(f'\n[cache]\nremote_timeout = {TIMEOUT}\nremote_min_rate = "{MIN_RATE >> 20}MiB"\n')
    (ws.root / "lib" / "big.txt").write_bytes(os.urandom(3 << 19))  # a layer over 1 MiB: a ByteStream read
    git(ws.root, "add", "-A")
    git(ws.root, "commit", "-qm", "fault workspace")
    content = Content()
    with HostileRemote("http", content) as http, HostileRemote("grpc", content) as grpc_:
        built = ws.build_json("--remote", http.url, "--remote-upload", APP, TOOL)
        keys = {label: built[label]["key"] for label in (APP, TOOL)}
        digests = {label: built[label]["manifest_digest"] for label in (APP, TOOL)}
        app_blobs = {b["digest"][7:] for b in record_of(content, keys[APP])["blobs"]}
        baseline = 0.0
        for i in range(2):
            docker_sdk.images.remove(ws.names["app"], force=True)
            proc, seconds = _build_app(ws, root / f"baseline-{i}")
            assert proc.returncode == 0, proc.stderr[-3000:]
            baseline = max(baseline, seconds)
        yield Bed(ws, content, {"http": http, "grpc": grpc_}, keys, digests,
                  {k: content.result_bytes(k) for k in keys.values()}, app_blobs,
                  foreign_blobs(content, keys[APP], keys[TOOL]),
                  tuple(docker_sdk.images.get(BASE_IMAGE).attrs["RootFS"]["Layers"]), baseline)
    remove_workspace_images(docker_sdk, ws)


def bad_bytes(store: LocalStore, bed: Bed, docker_sdk) -> list[str]:
    """What the build let in that is not app's: store blobs that are corrupt
    or not app's, records naming another image, and a wrong image in the
    engine; each as ``"<bytes> <what>"``."""
    found = []
    cas, ac = store.root / "cas", store.root / "ac"
    for path in (p for p in cas.rglob("*") if p.is_file()) if cas.exists() else ():
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != path.name:
            found.append(f"{len(data)} corrupt blob {path.name[:12]}")
        elif path.name not in bed.app_blobs:
            found.append(f"{len(data)} blob {path.name[:12]} of {'tool' if path.name in bed.foreign else 'nothing'}")
    for path in (p for p in ac.rglob("*.json") if p.is_file()) if ac.exists() else ():
        record = json.loads(path.read_bytes())["record"]
        if record.get("manifest_digest") not in (None, bed.digests[APP]):
            found.append(f"{path.stat().st_size} record for {record.get('manifest_digest')}")
    try:
        image = docker_sdk.images.get(bed.ws.names["app"])
    except docker.errors.ImageNotFound:
        return found  # not loaded at all: a failed build, which the test reports as such
    if image.id != bed.digests[APP]:
        found.append(f"{image.attrs['Size']} image {image.id} loaded as app")
    return found


def stored_files(store: LocalStore) -> list[str]:
    return sorted(str(p.relative_to(store.root)) for p in store.root.rglob("*") if p.is_file()) \
        if store.root.exists() else []


def test_the_honest_remote_is_used(bed, docker_sdk, tmp_path):
    """The control: the same servers, honest, give app's image back without a build."""
    for protocol, remote in bed.remotes.items():
        bed.remove_app(docker_sdk)
        proc, _ = _build_app(bed.ws, tmp_path / protocol, "--remote", remote.url)
        assert proc.returncode == 0, proc.stderr[-3000:]
        record = json_records(proc.stdout)[APP]
        assert record["source"] == "remote-cache" and record["manifest_digest"] == bed.digests[APP], (protocol, record)
        assert docker_sdk.images.get(bed.ws.names["app"]).id == bed.digests[APP]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("name, fault, poison", CASES, ids=[c[0] for c in CASES])
def test_a_hostile_remote_never_fails_a_build_nor_gets_bad_bytes_in(bed, protocol, name, fault, poison, tmp_path,
                                                                    docker_sdk, fault_ledger):
    remote = bed.remotes[protocol]
    remote.fault = fault
    app_key, tool_key = bed.keys[APP], bed.keys[TOOL]
    try:
        if poison:
            POISONS[poison](bed.content, app_key, tool_key)
        url = remote.url
        # The fetch alone, timed: a miss within one operation's deadline.
        warnings: list[str] = []
        probe_store = LocalStore(tmp_path / "probe")
        actions = RemoteActions(open_safe_remote(url, warn=warnings.append, timeout=TIMEOUT, min_rate=MIN_RATE),
                                probe_store, upload=False)
        t0 = time.monotonic()
        try:
            got = actions.fetch(app_key, bed.base_diff_ids, image=bed.ws.names["app"])
        finally:
            probe = time.monotonic() - t0
            actions.remote.close()
            probe_store.close()  # leaves the store's users: nothing of the fetch may stay
        deadline = TIMEOUT + (3 << 19) / MIN_RATE
        assert got is None, f"{protocol} {name}: a hostile answer was taken"
        assert stored_files(probe_store) == [], f"{protocol} {name}: a refused answer left files"
        assert len(warnings) == 1, warnings
        # The build.
        bed.remove_app(docker_sdk)
        store = LocalStore(tmp_path / "store")
        proc, seconds = _build_app(bed.ws, store.root, "--remote", url)
    finally:
        remote.fault = Fault()
        for key, data in bed.honest_ac.items():
            bed.content.set_result(key, data)
    bad = bad_bytes(store, bed, docker_sdk)
    fault_ledger.count(HOSTILE_REMOTE_CASES)
    fault_ledger.count(BAD_BYTES, sum(int(b.split()[0]) for b in bad))
    build_limit = bed.baseline + deadline + BUILD_MARGIN
    fault_ledger.timing("hostile-remote", f"{protocol} {name}", remote=(probe, deadline + MARGIN),
                        build=(seconds, build_limit))
    assert proc.returncode == 0, f"{protocol} {name}: the build failed\n{proc.stderr[-3000:]}"
    record = json_records(proc.stdout)[APP]
    assert record["source"] == "solve" and record["manifest_digest"] == bed.digests[APP], record
    assert docker_sdk.images.get(bed.ws.names["app"]).id == bed.digests[APP]
    assert bad == [], f"{protocol} {name}: accepted {bad}"
    assert [line for line in proc.stderr.splitlines() if "remote cache" in line][:1], "no warning about the remote"
    assert probe < deadline + MARGIN, f"{protocol} {name}: the fetch took {probe:.2f} s, deadline {deadline:.2f} s"
    assert seconds < build_limit, f"{protocol} {name}: the build took {seconds:.1f} s ({bed.baseline:.1f} s without)"
