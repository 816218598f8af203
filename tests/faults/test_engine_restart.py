"""The engine dies mid-build and comes back: on a private engine of the
test's own (scripts/private_engine.py; never the shared one), dockerd is
killed -9 while a build runs one of its steps, and again while it exports
the image into the engine (48 MiB of incompressible layer: a second or so). The build must end at once with one error line
that names the engine and exit 1, no traceback; once dockerd is started
again on the same state, the same build succeeds with the digest an
uninterrupted build gives, and the store is sound."""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from mbuild.cache.store import LocalStore

from ..conftest import BASE_IMAGE
from ..integration.conftest import json_records
from ..integration.engines import start_engine
from ..integration.workspaces import MBUILD, make_workspace
from .ledger import ENGINE_RESTARTS

pytestmark = pytest.mark.engine

APP = "//images:big"
# Where in the build dockerd dies: the plain progress line to kill it at.
MOMENTS = {
    "step": "] sleep 3",  # the slow command has started
    "export": " exporting to image",
}
BIG = """
container_image(
    name = "big",
    base = "base",
    commands = [
        "sleep 3",
        "python3 -c 'import random; open(\\"/big\\", \\"wb\\").write(random.Random(7).randbytes(48 << 20))'",
    ],
    image = "{image}",
)
"""
LIMIT = 120.0  # seconds for a build, killed or not


@pytest.fixture(scope="module")
def engine():
    folder = Path(tempfile.mkdtemp(prefix="mbx", dir="/tmp"))  # short: socket paths are limited
    engine = start_engine(folder, images=(BASE_IMAGE,))
    yield engine
    engine.remove()


def build(ws, engine, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*MBUILD, "--cache-dir", str(ws.cache), "build", *args, APP], cwd=ws.root,
                          env={**engine.env(), "MBUILD_SERVER": "0"}, capture_output=True, text=True, timeout=LIMIT)


@pytest.mark.parametrize("moment", sorted(MOMENTS))
def test_an_engine_restart_mid_build_is_one_error_and_a_retry_succeeds(engine, moment, tmp_path, run_id,
                                                                      fault_ledger):
    ws = make_workspace(tmp_path / "ws", tmp_path / "cache", f"{run_id}-restart-{moment}")
    ws.names["big"] = ws.names["app"].replace("-app-", "-big-")
    with open(ws.root / "images" / "BUILD", "a") as f:
        f.write(BIG.format(image=ws.names["big"]))
    proc = subprocess.Popen([*MBUILD, "--cache-dir", str(ws.cache), "build", "--progress", "plain", APP],
                            cwd=ws.root, env={**engine.env(), "MBUILD_SERVER": "0"}, stderr=subprocess.PIPE,
                            text=True)
    seen = []
    try:
        for line in proc.stderr:
            seen.append(line)
            if MOMENTS[moment] in line:
                engine.kill_dockerd()
                break
        else:
            pytest.fail(f"the build ended before its {moment}:\n{''.join(seen)[-3000:]}")
        t0 = time.monotonic()
        rest = proc.stderr.read()
        proc.wait(timeout=LIMIT)
        ended = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if not engine.answers():
            engine.restart_dockerd()
    fault_ledger.count(ENGINE_RESTARTS)
    fault_ledger.timing("engine-restart", moment, failed=(ended, LIMIT))
    # Besides progress lines ("[//label] …") and warnings, one error line.
    errors = [line for line in rest.splitlines() if not line.startswith(("[", "mbuild: warning: "))]
    assert proc.returncode == 1, "".join(seen) + rest
    assert len(errors) == 1 and errors[0].startswith("mbuild: error: "), errors
    assert str(engine.sock) in errors[0], errors[0]
    assert "Traceback" not in rest

    retry = build(ws, engine, "--json")
    assert retry.returncode == 0, retry.stderr[-3000:]
    digest = json_records(retry.stdout)[APP]["manifest_digest"]
    again = build(ws, engine, "--json", "--no-cache")  # uninterrupted, every step run again
    assert again.returncode == 0, again.stderr[-3000:]
    assert json_records(again.stdout)[APP]["manifest_digest"] == digest
    assert LocalStore(ws.cache).verify(complete=True) == []
    subprocess.run(["docker", "-H", engine.host, "rmi", "-f", *ws.names.values()], capture_output=True)
