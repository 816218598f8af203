"""Fixtures and helpers of the monorepo tests: running the mbuild CLI, copies
of the workspace with their own image names, and looking inside images.

The monorepo's own images (ai-mono-python:latest, ai-mono-node:latest) are
built once per session by ``monorepo_build`` and left in place: they are the
project's outputs. Every other image or container a test makes is named
``mbuild-test-*`` with the run id and removed afterwards.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pytest

from ..conftest import REPO

# The targets //infra:all builds, and what each one yields.
PYTHON_RUNTIME = "//infra:python_runtime"
NODE_RUNTIME = "//infra:node_runtime"
COMPOSE = "//infra:compose"
PYTHON_IMAGE = "ai-mono-python:latest"
NODE_IMAGE = "ai-mono-node:latest"
COMPOSE_FILE = "mbuild-out/infra/docker-compose.yml"

# Variables the fetching steps see (CA bundle); they must never reach a runtime config.
CA_VARIABLES = ("SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "CURL_CA_BUNDLE")


# ---------------------------------------------------------------------------
# the CLI


def mbuild(*args: str, cwd: Path = REPO, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run the mbuild CLI (this interpreter's ``mbuild.cli``) and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "mbuild.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def json_records(stdout: str) -> dict[str, dict]:
    """The ``--json`` records of a build, by label (every stdout line must be JSON)."""
    records = {}
    for line in stdout.splitlines():
        if line.strip():
            record = json.loads(line)
            records[record["label"]] = record
    return records


def steps_solved(progress_json: str) -> list[str]:
    """Names of the vertices a ``--progress json`` stream shows (BuildKit reports
    every vertex of a solve, cached ones included): empty means nothing was solved."""
    names = []
    for line in progress_json.splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue  # warnings and summaries are plain lines
        if isinstance(ev, dict) and ev.get("event") in ("VertexStarted", "VertexCompleted", "VertexFailed"):
            names.append(ev.get("name", ""))
    return names


def describe(result: subprocess.CompletedProcess, tail: int = 40) -> str:
    """Exit code plus the last lines of stdout/stderr, for assertion messages."""
    err = "\n".join(result.stderr.splitlines()[-tail:])
    out = "\n".join(result.stdout.splitlines()[-tail:])
    return f"exit code {result.returncode}\n--- stdout (tail)\n{out}\n--- stderr (tail)\n{err}"


@dataclass(frozen=True)
class BuildRun:
    """One ``mbuild ... --json`` run: its records by label and its output."""

    records: dict[str, dict]
    result: subprocess.CompletedProcess

    def image(self, label: str) -> str:
        return self.records[label]["image"]

    def digest(self, label: str) -> str:
        return self.records[label]["manifest_digest"]


def build_json(*labels: str, cwd: Path = REPO) -> BuildRun:
    """Build ``labels`` with ``--json --progress plain``; fail the test if mbuild fails."""
    result = mbuild(*labels, "--json", "--progress", "plain", cwd=cwd)
    if result.returncode != 0:
        pytest.fail(f"mbuild {' '.join(labels)} failed in {cwd}:\n{describe(result)}")
    return BuildRun(json_records(result.stdout), result)


@pytest.fixture(scope="session")
def monorepo_build(docker_sdk) -> BuildRun:
    """``mbuild //infra:all`` on the repository itself, once per session.

    The first build on a fresh machine downloads from PyPI and npm; one
    transient network failure there would fail every test that uses this
    fixture, so a failed build is tried once more (a cached step is not redone).
    """
    result = mbuild("//infra:all", "--json", "--progress", "plain")
    if result.returncode != 0:
        sys.stderr.write(f"monorepo build failed once, trying again:\n{describe(result)}\n")
        return build_json("//infra:all")
    return BuildRun(json_records(result.stdout), result)


# ---------------------------------------------------------------------------
# copies of the workspace


def tracked_files(repo: Path = REPO) -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=repo, capture_output=True, check=True).stdout
    return [p for p in out.decode().split("\0") if p]


def copy_workspace(dest: Path, repo: Path = REPO) -> Path:
    """Copy the repository's tracked files (as they are in the work tree) to ``dest``."""
    for rel in tracked_files(repo):
        src = repo / rel
        if not src.exists() and not src.is_symlink():
            continue  # deleted in the work tree, not yet committed
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target, follow_symlinks=False)
    return dest


_IMAGE_ATTR_RE = re.compile(r'(\bimage\s*=\s*")([^"]+)(")')


def rename_images(build_file: Path, prefix: str) -> dict[str, str]:
    """Rewrite every ``image = "NAME"`` in a BUILD file to ``PREFIX-NAME``;
    returns {old name: new name}."""
    renamed: dict[str, str] = {}

    def sub(m: re.Match) -> str:
        new = f"{prefix}-{m.group(2)}"
        renamed[m.group(2)] = new
        return m.group(1) + new + m.group(3)

    build_file.write_text(_IMAGE_ATTR_RE.sub(sub, build_file.read_text()))
    return renamed


@dataclass
class WorkspaceCopy:
    """A copy of the monorepo whose images load under ``mbuild-test-*`` names."""

    root: Path
    images: dict[str, str]  # original name -> this copy's name

    def image(self, original: str) -> str:
        return self.images[original]


def remove_images(docker_sdk, names: Iterable[str]) -> None:
    for name in names:
        for c in docker_sdk.containers.list(all=True, filters={"ancestor": name}):
            c.remove(force=True)
        try:
            docker_sdk.images.remove(name, force=True)
        except Exception:  # noqa: BLE001 - never built (e.g. a failing build), or gone
            pass


@pytest.fixture(scope="module")
def workspace_copies(tmp_path_factory, docker_sdk, run_id):
    """Makes copies of the workspace with unique image names; removes their images."""
    made: list[WorkspaceCopy] = []

    def make(stem: str, extra_build: str = "") -> WorkspaceCopy:
        root = copy_workspace(tmp_path_factory.mktemp(f"ws-{stem}"))
        build_file = root / "infra" / "BUILD"
        if extra_build:
            build_file.write_text(build_file.read_text() + "\n" + extra_build)
        images = rename_images(build_file, f"mbuild-test-{run_id}-{stem}")
        assert {PYTHON_IMAGE, NODE_IMAGE} <= set(images), f"infra/BUILD no longer names both images: {images}"
        copy = WorkspaceCopy(root, images)
        made.append(copy)
        return copy

    yield make
    for copy in made:
        remove_images(docker_sdk, copy.images.values())


# ---------------------------------------------------------------------------
# looking inside images


def run_in_image(image: str, script: str, user: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """``sh -c SCRIPT`` in a throwaway container of ``image`` (entrypoint overridden)."""
    cmd = ["docker", "run", "--rm", "--network", "none", "--entrypoint", "/bin/sh"]
    if user is not None:
        cmd += ["--user", user]
    cmd += [image, "-c", script]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def sh_ok(image: str, script: str, user: str | None = None) -> str:
    """Run ``script`` in ``image``; assert it succeeds; return its stdout."""
    out = run_in_image(image, script, user=user)
    assert out.returncode == 0, f"{script!r} in {image} exited {out.returncode}:\n{out.stdout}\n{out.stderr}"
    return out.stdout


@dataclass(frozen=True)
class Entry:
    """One path of an image's file system, as ``docker export`` shows it."""

    type: str  # file, dir, symlink, hardlink, char, block, fifo
    mode: int
    uid: int
    gid: int
    size: int = 0
    link: str = ""
    sha256: str = ""  # regular files: of the (normalised, see normalise) content
    contains_marker: bool = False

    def meta(self) -> tuple:
        return (self.type, oct(self.mode), self.uid, self.gid, self.link)


_TYPES = {
    tarfile.REGTYPE: "file", tarfile.AREGTYPE: "file", tarfile.DIRTYPE: "dir", tarfile.SYMTYPE: "symlink",
    tarfile.LNKTYPE: "hardlink", tarfile.CHRTYPE: "char", tarfile.BLKTYPE: "block", tarfile.FIFOTYPE: "fifo",
}


def normalise(path: str, data: bytes) -> bytes:
    """Content as compared between two builds of the same image. Kept minimal:

    * ``*.pyc``: after the magic number, the 16-byte header says how the
      code is checked against its source (PEP 552): by the source's mtime
      and size, as Python writes it on import (the Dockerfile's image: the
      mtime differs build to build), or by the source's hash, as mbuild's
      Python rules rewrite it for reproducible images. The magic number and
      the code must match; the rest of the header is left out.
    * ``*.dist-info/RECORD``: the line order varies in the Dockerfile's
      image (virtualenv appends to pip's in set order; mbuild's rules sort
      them); lines are sorted.
    """
    if path.endswith(".pyc") and len(data) >= 16:
        return data[:4] + data[16:]
    if path.endswith("/RECORD") and ".dist-info/" in path:
        return b"\n".join(sorted(data.splitlines()))
    return data


def tar_path(name: str) -> str:
    """A tar member name as an absolute path: ``./app/x/`` -> ``/app/x``."""
    if name.startswith("./"):
        name = name[2:]
    name = name.strip("/")
    return "/" + name if name not in ("", ".") else "/"


def export_tree(image: str, marker: bytes | None = None) -> dict[str, Entry]:
    """Every path of ``image``'s file system (via ``docker create`` + ``docker
    export``), with type, mode, owner and, for regular files, size and sha256.
    ``marker``: also record whether each file's content contains these bytes."""
    cid = subprocess.run(["docker", "create", "--entrypoint", "/bin/true", image],
                         capture_output=True, text=True, check=True).stdout.strip()
    try:
        tree: dict[str, Entry] = {}
        proc = subprocess.Popen(["docker", "export", cid], stdout=subprocess.PIPE)
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for m in tar:
                path = tar_path(m.name)
                kind = _TYPES.get(m.type, repr(m.type))
                if kind == "file":
                    data = tar.extractfile(m).read()
                    tree[path] = Entry(kind, m.mode, m.uid, m.gid, m.size,
                                       sha256=hashlib.sha256(normalise(path, data)).hexdigest(),
                                       contains_marker=bool(marker) and marker in data)
                else:
                    tree[path] = Entry(kind, m.mode, m.uid, m.gid, link=m.linkname)
        assert proc.wait() == 0, f"docker export of {image} failed"
        return tree
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True)


def image_layers(image: str) -> list[dict[str, tarfile.TarInfo]]:
    """The layers of ``image`` in order (via ``docker save``), each as
    {path: TarInfo} of the entries that layer adds or changes."""
    layers = []
    with tempfile.TemporaryDirectory(prefix="mbuild-test-save-") as tmp:
        archive = Path(tmp) / "image.tar"
        subprocess.run(["docker", "save", "-o", str(archive), image], check=True, capture_output=True)
        with tarfile.open(archive) as outer:
            manifest = json.load(outer.extractfile("manifest.json"))[0]
            for blob in manifest["Layers"]:
                with tarfile.open(fileobj=outer.extractfile(blob), mode="r:*") as layer:
                    layers.append({tar_path(m.name): m for m in layer.getmembers()})
    return layers


# ---------------------------------------------------------------------------
# running services


def get_json(url: str, timeout: float = 2) -> tuple[int, dict]:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.status, json.loads(resp.read())


def wait_for_health(url: str, seconds: float = 60, container: str | None = None) -> dict:
    """Poll ``url`` until it answers 200 (up to ``seconds``); return its JSON body."""
    deadline = time.monotonic() + seconds
    last: object = None
    while time.monotonic() < deadline:
        try:
            status, body = get_json(url)
            if status == 200:
                return body
            last = f"HTTP {status}: {body}"
        except (urllib.error.URLError, ConnectionError, OSError, ValueError) as e:
            last = e
        time.sleep(0.25)
    logs = ""
    if container:
        logs = subprocess.run(["docker", "logs", container], capture_output=True, text=True).stdout
    pytest.fail(f"{url} did not answer 200 within {seconds}s (last: {last!r}); container logs:\n{logs}")


@dataclass
class Containers:
    """Starts detached containers and removes them all at the end."""

    prefix: str
    started: list[str] = field(default_factory=list)

    def run(self, image: str, port: int, name: str) -> tuple[str, int]:
        """Run ``image`` publishing container ``port`` on a free host port; return (name, host port)."""
        full = f"{self.prefix}-{name}"
        self.started.append(full)
        subprocess.run(["docker", "run", "-d", "--name", full, "-p", f"127.0.0.1::{port}", image],
                       check=True, capture_output=True, text=True)
        mapping = subprocess.run(["docker", "port", full, f"{port}/tcp"], check=True, capture_output=True,
                                 text=True).stdout.split()[0]
        return full, int(mapping.rsplit(":", 1)[1])

    def remove_all(self) -> None:
        for name in self.started:
            subprocess.run(["docker", "rm", "-f", name], capture_output=True)


@pytest.fixture
def containers(run_id):
    made = Containers(f"mbuild-test-{run_id}")
    yield made
    made.remove_all()


def env_of(config: dict) -> dict[str, str]:
    return dict(e.split("=", 1) for e in config.get("Env") or [])


@pytest.fixture
def ws(tmp_path, docker_sdk, run_id):
    """A small offline workspace of its own (see workspaces.py), images removed afterwards."""
    import hashlib

    from .workspaces import make_workspace, remove_workspace_images

    suffix = f"{run_id}-{hashlib.sha256(str(tmp_path).encode()).hexdigest()[:8]}"
    workspace = make_workspace(tmp_path / "ws", tmp_path / "cache", suffix)
    yield workspace
    remove_workspace_images(docker_sdk, workspace)
