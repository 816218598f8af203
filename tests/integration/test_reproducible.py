"""The seed's images are bit-identical from empty caches on two engines:
``//infra:all`` built on two fresh private engines (empty BuildKit caches,
cache mounts and content stores; the same base images, which every engine
of the machine gets with the same digests) into two empty mbuild stores
gives the same manifest digest for each image and the same compose file.

Each build downloads from PyPI and npm (about a minute); the two run side by
side. When a digest differs, the message lists the files that differ.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest

from .conftest import COMPOSE_FILE, NODE_RUNTIME, PYTHON_RUNTIME, copy_workspace, describe, json_records, tar_path
from .engines import start_engine

pytestmark = pytest.mark.engine

BASES = ("python:3.11", "python:3.11-slim", "node:22-slim")
IMAGES = (PYTHON_RUNTIME, NODE_RUNTIME)


def file_digests(host: str, image: str) -> dict[str, str]:
    """path -> sha256 (or the entry's type and link) of ``image``'s file system on engine ``host``."""
    docker = ["docker", "-H", host]
    cid = subprocess.run([*docker, "create", "--entrypoint", "/bin/true", image], capture_output=True, text=True,
                         check=True).stdout.strip()
    try:
        out = {}
        proc = subprocess.Popen([*docker, "export", cid], stdout=subprocess.PIPE)
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for m in tar:
                data = tar.extractfile(m).read() if m.isfile() else m.linkname.encode()
                out[tar_path(m.name)] = f"{m.type!r} {oct(m.mode)} {m.uid}:{m.gid} {hashlib.sha256(data).hexdigest()}"
        proc.wait()
        return out
    finally:
        subprocess.run([*docker, "rm", "-f", cid], capture_output=True)


@pytest.fixture
def engines():
    started = []
    try:
        for _ in range(2):
            folder = Path(tempfile.mkdtemp(prefix="mbx", dir="/tmp"))  # short: socket paths are limited
            started.append(start_engine(folder, images=BASES))
        yield started
    finally:
        for engine in started:
            engine.remove()


def test_two_fresh_engines_build_the_same_infra_all(engines, tmp_path):
    runs = []
    for i, engine in enumerate(engines):
        root = copy_workspace(tmp_path / f"ws-{i}")
        env = {**engine.env(), "MBUILD_SERVER": "0"}
        runs.append((root, engine, subprocess.Popen(
            [sys.executable, "-m", "mbuild.cli", "--cache-dir", str(tmp_path / f"store-{i}"), "build", "--json",
             "--progress", "plain", "//infra:all"], cwd=root, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)))
    built = []
    for root, engine, proc in runs:
        out, err = proc.communicate(timeout=1800)
        result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        assert proc.returncode == 0, f"//infra:all on {engine.host}:\n{describe(result)}"
        records = json_records(out)
        assert all(records[label]["source"] == "solve" for label in IMAGES), "not built from empty caches"
        built.append(({label: records[label]["manifest_digest"] for label in IMAGES},
                      (root / COMPOSE_FILE).read_text(), {label: records[label]["image"] for label in IMAGES}))
    (first, first_compose, names), (second, second_compose, _) = built
    differing = [label for label in IMAGES if first[label] != second[label]]
    if differing:
        lines = []
        for label in differing:
            a, b = (file_digests(engine.host, names[label]) for engine in engines)
            lines += [f"{label}: {path}" for path in sorted(set(a) | set(b)) if a.get(path) != b.get(path)]
        pytest.fail(f"{', '.join(differing)} differ between two fresh engines ({first} vs {second}):\n"
                    + "\n".join(lines[:60]))
    assert first_compose == second_compose
