"""buildkit-py stands alone: ``pip install`` of its folder (not editable) into a
fresh venv, then the README's quick-start example against the engine, with
mbuild not importable there and grpcio-tools needed only to build."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bk_oci import OCIArchive

pytestmark = pytest.mark.engine

DIST = Path(__file__).resolve().parents[1]
EXAMPLE = re.compile(r"<!-- tests/test_standalone_install.py[^>]*-->\n```python\n(.*?)```", re.S)


def clean_env() -> dict[str, str]:
    """This environment without what would let the venv see another tree's packages."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}


def readme_example() -> str:
    found = EXAMPLE.search((DIST / "README.md").read_text())
    assert found, "README.md lost its runnable quick-start example"
    return found.group(1)


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh venv with buildkit-py installed from a clean copy of its folder
    (no generated code, no build leftovers), as a user's ``pip install`` would."""
    root = tmp_path_factory.mktemp("standalone")
    src = root / "buildkit-py"
    shutil.copytree(DIST, src, ignore=shutil.ignore_patterns(
        "build", "*.egg-info", "__pycache__", "*_pb2.py", "*_pb2_grpc.py", "*_pb2.pyi", "tests"))
    env_dir = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, timeout=120, env=clean_env())
    pip = subprocess.run([str(env_dir / "bin" / "pip"), "install", "--quiet", str(src)], capture_output=True,
                         text=True, timeout=900, env=clean_env())
    assert pip.returncode == 0, pip.stderr[-3000:]
    return env_dir


def run_python(venv: Path, code: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, cwd=cwd,
                          timeout=600, env=clean_env())


def test_the_installed_package_is_complete_and_alone(venv):
    probe = run_python(venv, "import buildkit, buildkit.proto.gateway_pb2 as g, buildkit.proto.sshforward_pb2_grpc;"
                             " print(buildkit.__file__); print(g.__file__)")
    assert probe.returncode == 0, probe.stderr
    for line in probe.stdout.split():
        assert line.startswith(str(venv)), line  # installed, not the source tree
    for absent in ("mbuild", "grpc_tools", "docker"):
        gone = run_python(venv, f"import {absent}")
        assert gone.returncode != 0 and "ModuleNotFoundError" in gone.stderr, absent
    installed = subprocess.run([str(venv / "bin" / "pip"), "freeze"], capture_output=True, text=True,
                               env=clean_env()).stdout
    names = {re.split(r"[=@ ]", line)[0].lower() for line in installed.splitlines() if line}
    assert {"buildkit-py", "grpcio", "protobuf"} <= names and not names & {"grpcio-tools", "docker", "mbuild"}


def test_the_readme_example_runs_against_the_engine(venv, tmp_path):
    run = run_python(venv, readme_example(), cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    # The step's log, or (the engine ran it before) its CACHED line: progress streamed either way.
    ran = "| hello from buildkit-py" in run.stdout and "| token has 16 bytes" in run.stdout
    assert ran or re.search(r"^#\d+ CACHED run the app once$", run.stdout, re.M), run.stdout
    assert re.search(r"^built sha256:[0-9a-f]{64} into app.tar$", run.stdout, re.M), run.stdout
    archive = OCIArchive(tmp_path / "app.tar")
    (image,) = archive.images()
    files = archive.files(image)
    assert files["app/greeting.txt"] == b"hello from buildkit-py\n"
    assert not any(b"not-in-any-layer" in data for data in files.values())
    assert image.config["config"]["Cmd"] == ["python", "main.py"]
    archive.close()
