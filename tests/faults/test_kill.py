"""kill -9 at random moments: of a build, of a cache write, of a remote
upload and of a restore from the remote (32 kills a run), on the small
workspace over a base of a few MiB (tiny_base.py: a cycle takes seconds).
After each kill

* a build of the same targets must succeed with the digests (and the
  compose file) of an uninterrupted build, the engine holding those images;
* a scan of the local store (:meth:`LocalStore.verify`, every record and
  blob checked) must find nothing bad, nor anything half written: what the
  killed process left is swept by that next build;
* the remote (the hostile test server, honest) must hold whole results
  only, and, the next build uploading with ``--remote-upload`` what the
  killed one did not, each image's; after a killed upload, a build from
  the remote into an empty store gets the same digests and nothing bad.

What a kill leaves outside the store (folders in TMPDIR, a temporary in the
output folder) is counted in the suite's notes.

The moments are drawn from a seeded generator (``MBUILD_FAULT_SEED``
repeats a run's choices; the seed is printed with the suite's counts) over
windows measured on this machine first: the time a ``--no-cache`` build
takes; from the store's first blob write to the app's record (cache
write); from that record to the end (upload); from the remote staging
folder's appearance to the end (restore). A kill comes a drawn fraction
of its window after its marker; a run that ends first is tried again with
a quarter of the delay. Which kind comes when, over which protocol, and the
fractions are the seed's; where a kill lands within a step is the
machine's.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from mbuild.cache.remote import ActionResult
from mbuild.cache.store import LocalStore

from ..conftest import BASE_IMAGE
from ..integration.conftest import json_records
from ..integration.workspaces import MBUILD, Workspace, git, make_workspace, remove_workspace_images
from .hostile_remote import Content, Fault, HostileRemote
from .ledger import BAD_BYTES, KILLS
from .poison import RECORD_PATH, record_of
from .tiny_base import import_tiny_base

pytestmark = pytest.mark.engine

SEED_ENV = "MBUILD_FAULT_SEED"
PLAN = (("build", 6), ("cache-write", 9), ("upload", 9), ("restore", 8))
APP, TOOL, COMPOSE = "//images:app", "//images:tool", "//images:compose"
TARGETS = (APP, TOOL, COMPOSE)
COMPOSE_FILE = "mbuild-out/images/docker-compose.yml"
UPLOAD_DELAY = 0.02  # seconds the remote waits before each upload request: an upload worth killing
POLL = 0.002
ATTEMPTS = 4
RUN_LIMIT = 120.0  # seconds any one build may take (subprocess timeout)


def fault_seed() -> int:
    text = os.environ.get(SEED_ENV, "").strip()
    if text:
        try:
            return int(text)
        except ValueError:
            pytest.fail(f"{SEED_ENV}={text!r}: use a whole number")
    return random.SystemRandom().randrange(1 << 31)


@dataclass(frozen=True)
class Moment:
    index: int
    kind: str  # build, cache-write, upload, restore
    protocol: str  # http, grpc
    fraction: float  # of the kind's window, after its marker


def moments(seed: int) -> list[Moment]:
    rng = random.Random(seed)
    kinds = [kind for kind, n in PLAN for _ in range(n)]
    rng.shuffle(kinds)
    return [Moment(i, kind, rng.choice(("http", "grpc")), rng.random()) for i, kind in enumerate(kinds)]


@dataclass
class Bed:
    """The workspace, its uninterrupted results, and the remote."""

    seed: int
    root: Path
    ws: Workspace
    content: Content
    remotes: dict[str, HostileRemote]
    env: dict[str, str]
    keys: dict[str, str]
    digests: dict[str, str]
    compose: bytes
    full: tuple[dict, dict]  # the remote's state holding the honest results
    bases_only: tuple[dict, dict]  # ... holding only the base image's layers
    reference: Path  # the store of the uninterrupted build
    base_blobs: list[Path]  # the base image's layers in it
    windows: dict[str, float] = field(default_factory=dict)
    cycle: int = 0

    def store(self) -> Path:
        """A fresh store for a cycle: it has the base image's layers, as
        any store that ever built on that base has."""
        self.cycle += 1
        path = self.root / f"store-{self.cycle}"
        for blob in self.base_blobs:
            dest = path / blob.relative_to(self.reference)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.link(blob, dest)
        return path

    def command(self, store: Path, kind: str, protocol: str) -> list[str]:
        """The build a kill of this kind interrupts."""
        upload = () if kind == "restore" else ("--remote-upload",)
        no_cache = ("--no-cache",) if kind == "build" else ()
        return [*MBUILD, "--cache-dir", str(store), "build", *no_cache, "--remote", self.remotes[protocol].url,
                *upload, *TARGETS]

    def prepare(self, kind: str, docker_sdk) -> None:
        """The remote and the engine as the kind needs them: a restore
        finds the results on the remote and the images gone; the others
        find a remote without them, so they solve, write and upload."""
        self.content.set_state(*(self.full if kind == "restore" else self.bases_only))
        if kind == "restore":
            remove_workspace_images(docker_sdk, self.ws)

    def marker(self, kind: str, store: Path) -> Callable[[], bool]:
        """When the kind's window opens."""
        base = {b.name for b in self.base_blobs}
        record = store / "ac" / self.keys[APP][:2] / f"{self.keys[APP]}.json"
        return {
            "build": lambda: True,
            "cache-write": lambda: any(_names(store / "cas" / shard) - base for shard in _names(store / "cas")),
            "upload": record.exists,
            "restore": lambda: any(n.startswith(".remote-") for n in _names(store)),
        }[kind]

    def end(self, kind: str, store: Path) -> Callable[[], bool]:
        """When the kind's window closes before the run's end (cache-write: at the app's record)."""
        record = store / "ac" / self.keys[APP][:2] / f"{self.keys[APP]}.json"
        return record.exists if kind == "cache-write" else (lambda: False)


def _names(folder: Path) -> set[str]:
    try:
        return set(os.listdir(folder))
    except OSError:
        return set()


@dataclass
class Outcome:
    killed: bool
    waited: float  # seconds from the marker to the kill (or to the run's end)
    window: float  # the kind's window when calibrating


def run_and_kill(cmd: list[str], bed: Bed, store: Path, marker: Callable[[], bool], delay: float | None,
                 end: Callable[[], bool] | None = None) -> Outcome:
    """Run ``cmd``; ``delay`` seconds after ``marker()`` first holds, kill
    its process group with SIGKILL. With ``delay`` None, run it to the end
    and measure the window from ``marker()`` to ``end()`` (or the end)."""
    log = open(bed.root / f"run-{bed.cycle}.log", "ab")
    proc = subprocess.Popen(cmd, cwd=bed.ws.root, env=bed.env, stdout=log, stderr=log, start_new_session=True)
    log.close()
    t0 = time.monotonic()
    try:
        while proc.poll() is None and not marker():
            _tick(t0)
        marked = time.monotonic()
        if delay is None:
            assert proc.poll() is None, f"{' '.join(cmd[-8:])}: ended before its window opened"
            ended = None
            while proc.poll() is None:
                if ended is None and end is not None and end():
                    ended = time.monotonic()
                _tick(t0)
            assert proc.returncode == 0, (bed.root / f"run-{bed.cycle}.log").read_text()[-3000:]
            return Outcome(False, 0.0, (ended or time.monotonic()) - marked)
        while proc.poll() is None and time.monotonic() < marked + delay:
            _tick(t0)
        if proc.poll() is not None:
            return Outcome(False, time.monotonic() - marked, 0.0)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return Outcome(True, time.monotonic() - marked, 0.0)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _tick(t0: float) -> None:
    if time.monotonic() - t0 > RUN_LIMIT:
        raise AssertionError(f"a build ran longer than {RUN_LIMIT:.0f} s")
    time.sleep(POLL)


def rebuild(bed: Bed, store: Path, protocol: str, *targets: str, upload: bool = True) -> tuple[dict, float]:
    t0 = time.monotonic()
    proc = subprocess.run([*MBUILD, "--cache-dir", str(store), "build", "--json", "--progress", "plain",
                           "--remote", bed.remotes[protocol].url, *(("--remote-upload",) if upload else ()),
                           *(targets or TARGETS)],
                          cwd=bed.ws.root, env=bed.env, capture_output=True, text=True, timeout=RUN_LIMIT)
    assert proc.returncode == 0, f"the build after the kill failed:\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return json_records(proc.stdout), time.monotonic() - t0


def remote_problems(content: Content) -> list[str]:
    """Action results on the remote that are not whole: an output blob
    missing or of another size, or a record blob that does not parse."""
    ac, cas = content.state()
    problems = []
    for key, data in sorted(ac.items()):
        result = ActionResult.FromString(data)
        for f in result.output_files:
            blob = cas.get(f.digest.hash)
            if blob is None or len(blob) != f.digest.size_bytes:
                problems.append(f"{key[:12]}: {f.path} {'missing' if blob is None else 'of another size'}")
            elif f.path == RECORD_PATH:
                try:
                    json.loads(blob)["key"]
                except (ValueError, KeyError, TypeError):
                    problems.append(f"{key[:12]}: its record does not parse")
    return problems


def bad_size(store: Path, problems: list[str]) -> int:
    """Bytes of the entries the verifier named."""
    total = 0
    for line in problems:
        path = store / line.split(":", 1)[0]
        for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
            total += p.stat().st_size if p.is_file() else 0
    return total


@pytest.fixture(scope="module")
def bed(tmp_path_factory, docker_sdk, run_id) -> Bed:
    seed = fault_seed()
    root = tmp_path_factory.mktemp("kills")
    ws = make_workspace(root / "ws", root / "unused-cache", f"{run_id}-kills")
    tiny = f"mbuild-test/tiny-{run_id}:latest"
    import_tiny_base(tiny)
    workspace_toml = ws.root / "WORKSPACE.toml"
    workspace_toml.write_text(workspace_toml.read_text().replace(BASE_IMAGE, tiny) +
                              '\n[cache]\nremote_timeout = 5\nremote_min_rate = "16MiB"\n')
    (ws.root / "lib" / "big.txt").write_bytes(random.Random(seed).randbytes(4 << 20))  # a layer worth writing
    git(ws.root, "add", "-A")
    git(ws.root, "commit", "-qm", "kill workspace")
    (root / "tmp").mkdir()
    env = {**os.environ, "TMPDIR": str(root / "tmp"), "MBUILD_SERVER": "0"}
    content = Content()
    slow_uploads = Fault("honest", on={"other"}, delay=UPLOAD_DELAY)
    with HostileRemote("http", content, slow_uploads) as http, HostileRemote("grpc", content, slow_uploads) as grpc_:
        reference = root / "reference"
        proc = subprocess.run([*MBUILD, "--cache-dir", str(reference), "build", "--json", "--remote", http.url,
                               "--remote-upload", *TARGETS], cwd=ws.root, env=env, capture_output=True, text=True,
                              timeout=RUN_LIMIT)
        assert proc.returncode == 0, proc.stderr[-3000:]
        built = json_records(proc.stdout)
        keys = {label: built[label]["key"] for label in TARGETS}
        digests = {label: built[label]["manifest_digest"] for label in (APP, TOOL)}
        app, tool = (record_of(content, keys[label])["blobs"] for label in (APP, TOOL))
        shared = {b["digest"][7:] for b in app} & {b["digest"][7:] for b in tool}  # the base's layers
        ac, cas = content.state()
        the_bed = Bed(seed, root, ws, content, {"http": http, "grpc": grpc_}, env, keys, digests,
                      (ws.root / COMPOSE_FILE).read_bytes(), (ac, cas),
                      ({}, {h: data for h, data in cas.items() if h in shared}),
                      reference, [LocalStore(reference).blob_path(h) for h in sorted(shared)])
        calibrate(the_bed, docker_sdk)
        yield the_bed
    remove_workspace_images(docker_sdk, ws)
    docker_sdk.images.remove(tiny, force=True)


def calibrate(bed: Bed, docker_sdk) -> None:
    """Each kind's window, measured on a run it would kill."""
    for kind in ("build", "cache-write", "upload", "restore"):
        bed.prepare(kind, docker_sdk)
        store = bed.store()
        outcome = run_and_kill(bed.command(store, kind, "http"), bed, store, bed.marker(kind, store), None,
                               bed.end(kind, store))
        bed.windows[kind] = max(outcome.window, 0.01)
        shutil.rmtree(store)


@dataclass
class Landings:
    """What the kills of one kind left behind, for the suite's notes."""

    kills: int = 0
    retried: int = 0  # runs that ended before their kill, tried again sooner
    store_temporaries: int = 0  # kills after which the store held temporaries (the next build swept them)
    output_temporaries: int = 0  # ... a temporary file in the output folder
    tmpdir: Counter = field(default_factory=Counter)  # folders left in TMPDIR, by prefix
    worst: tuple[float, float] = (0.0, 0.0)  # seconds: the latest kill after its marker, the slowest next build

    def note(self, kind: str) -> str:
        tmpdir = ", ".join(f"{n} {prefix}-*" for prefix, n in sorted(self.tmpdir.items())) or "none"
        return (f"kills during {kind}: {self.kills}; after them the store held temporaries {self.store_temporaries} "
                f"times (swept by the next build), the output folder {self.output_temporaries}; folders left in "
                f"TMPDIR: {tmpdir}; runs that ended before their kill: {self.retried}")


def kill_once(bed: Bed, moment: Moment, docker_sdk, landings: Landings) -> Path:
    """Run the moment's build and kill it (sooner, if it ended first); its store."""
    fraction = moment.fraction
    for _ in range(ATTEMPTS):
        bed.prepare(moment.kind, docker_sdk)
        store = bed.store()
        outcome = run_and_kill(bed.command(store, moment.kind, moment.protocol), bed, store,
                               bed.marker(moment.kind, store), fraction * bed.windows[moment.kind])
        if outcome.killed:
            landings.kills += 1
            landings.worst = (max(landings.worst[0], outcome.waited), landings.worst[1])
            return store
        landings.retried += 1
        shutil.rmtree(store)
        fraction /= 4
    raise AssertionError(f"kill #{moment.index}: the build ended before each of {ATTEMPTS} tries")


def what_the_kill_left(bed: Bed, store: Path, landings: Landings) -> None:
    """Count (and remove) what is not the store's: the next build cannot sweep it."""
    landings.store_temporaries += bool(LocalStore(store).temporaries())
    for path in (bed.root / "tmp").iterdir():  # the executor's exports, the session's sockets
        landings.tmpdir[path.name.rsplit("-", 1)[0]] += 1
        shutil.rmtree(path, ignore_errors=True)
    outputs = list((bed.ws.root / "mbuild-out" / "images").glob(".*"))
    landings.output_temporaries += bool(outputs)
    for path in outputs:
        path.unlink()


def check_sound(bed: Bed, store: Path, records: dict, where: str, docker_sdk, fault_ledger) -> None:
    """The build after a kill: the uninterrupted digests and compose file,
    those images in the engine, nothing bad in the store or on the remote."""
    assert {label: records[label]["manifest_digest"] for label in (APP, TOOL)} == bed.digests, \
        f"{where}: other digests after the kill"
    assert (bed.ws.root / COMPOSE_FILE).read_bytes() == bed.compose, f"{where}: another compose file"
    for label in (APP, TOOL):
        assert docker_sdk.images.get(bed.ws.names[label.rsplit(":", 1)[1]]).id == bed.digests[label], where
    problems = LocalStore(store).verify(complete=True)
    fault_ledger.count(BAD_BYTES, bad_size(store, problems))
    assert problems == [], f"{where}: the store after the kill and a build: {problems}"
    assert remote_problems(bed.content) == [], f"{where}: the remote holds a broken result"


def test_kill_9_at_random_moments_then_the_same_digests_and_a_sound_store(bed, docker_sdk, fault_ledger):
    fault_ledger.note(f"kill -9 seed {bed.seed} ({SEED_ENV}={bed.seed} repeats its choices); windows "
                      + ", ".join(f"{k} {w:.2f} s" for k, w in bed.windows.items()))
    landings = {kind: Landings() for kind, _ in PLAN}
    for moment in moments(bed.seed):
        kind, protocol = moment.kind, moment.protocol
        where = f"kill #{moment.index} ({kind} over {protocol}, {moment.fraction:.3f} of {bed.windows[kind]:.2f} s)"
        landed = landings[kind]
        store = kill_once(bed, moment, docker_sdk, landed)
        fault_ledger.count(KILLS)
        what_the_kill_left(bed, store, landed)
        records, seconds = rebuild(bed, store, protocol)
        landed.worst = (landed.worst[0], max(landed.worst[1], seconds))
        check_sound(bed, store, records, where, docker_sdk, fault_ledger)
        if kind != "restore":  # the rebuild uploaded what the killed build did not (local hits too)
            keys = {**bed.keys, COMPOSE: records[COMPOSE]["key"]}
            assert [label for label in TARGETS if bed.content.result_bytes(keys[label]) is None] == [], where
        if kind == "upload":  # what was uploaded, as a build from the remote alone sees it
            remove_workspace_images(docker_sdk, bed.ws)
            fresh = bed.root / f"fresh-{bed.cycle}"
            records, _ = rebuild(bed, fresh, protocol, APP, TOOL, upload=False)
            assert {label: records[label]["manifest_digest"] for label in (APP, TOOL)} == bed.digests, where
            problems = LocalStore(fresh).verify(complete=True)
            fault_ledger.count(BAD_BYTES, bad_size(fresh, problems))
            assert problems == [], f"{where}: a build from the remote after the kill: {problems}"
            shutil.rmtree(fresh)
        shutil.rmtree(store)
    for kind, landed in landings.items():
        fault_ledger.timing("kill -9", kind, kill=(landed.worst[0], bed.windows[kind]),
                            rebuild=(landed.worst[1], RUN_LIMIT))
        fault_ledger.note(landed.note(kind))
