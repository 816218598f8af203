"""node_build's `script`: a package.json script run as `pnpm run` runs it,
without pnpm (rules/node.py PACKAGE_SCRIPT_RUNNER), in the Node base image."""

from __future__ import annotations

import ast
import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _runner() -> str:
    """rules/node.py's PACKAGE_SCRIPT_RUNNER, read without importing the
    workspace's rules as a Python package (rule modules are loaded by mbuild,
    outside Python's module cache)."""
    tree = ast.parse((ROOT / "rules" / "node.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)] == \
                ["PACKAGE_SCRIPT_RUNNER"]:
            return ast.literal_eval(node.value)
    raise AssertionError("rules/node.py defines no PACKAGE_SCRIPT_RUNNER")


PACKAGE_SCRIPT_RUNNER = _runner()

NODE_IMAGE = "node:22-slim"


def _workspace(tmp_path: Path, scripts: dict) -> Path:
    pkg = tmp_path / "apps" / "p"
    (pkg / "node_modules" / ".bin").mkdir(parents=True)
    (tmp_path / "node_modules" / ".bin").mkdir(parents=True)
    (pkg / "package.json").write_text(json.dumps({"name": "@t/p", "version": "1.2.3", "scripts": scripts}))
    for where, tool in ((pkg, "own-tool"), (tmp_path, "root-tool")):
        shim = where / "node_modules" / ".bin" / tool
        shim.write_text(f"#!/bin/sh\necho {tool} \"$@\"\n")
        shim.chmod(0o755)
    return pkg


def _run(tmp_path: Path, script: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "run", "--rm", "--network", "none", "-v", f"{tmp_path}:/w", "-w", "/w/apps/p",
                           NODE_IMAGE, "node", "-e", PACKAGE_SCRIPT_RUNNER, script],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.usefixtures("docker_sdk")
def test_a_script_runs_with_its_pre_and_post_scripts_and_both_bins_on_path(tmp_path):
    _workspace(tmp_path, {
        "prebuild": "echo pre $npm_lifecycle_event >> log",
        "build": "own-tool a && root-tool b && echo $npm_package_name@$npm_package_version $npm_lifecycle_event >> log",
        "postbuild": "echo post $npm_lifecycle_event >> log",
        "other": "echo never >> log",
    })
    done = _run(tmp_path, "build")
    assert done.returncode == 0, done.stderr
    assert "own-tool a" in done.stdout and "root-tool b" in done.stdout
    assert "> @t/p@1.2.3 build /w/apps/p" in done.stdout
    log = (tmp_path / "apps/p/log").read_text().splitlines()
    assert log == ["pre prebuild", "@t/p@1.2.3 build", "post postbuild"]  # and never "other"


@pytest.mark.usefixtures("docker_sdk")
def test_a_failing_script_ends_the_step_with_its_exit_code_and_post_does_not_run(tmp_path):
    _workspace(tmp_path, {"build": "exit 7", "postbuild": "echo post >> log"})
    done = _run(tmp_path, "build")
    assert done.returncode == 7
    assert not (tmp_path / "apps/p/log").exists()


@pytest.mark.usefixtures("docker_sdk")
def test_a_missing_script_is_one_line_naming_the_package_json(tmp_path):
    _workspace(tmp_path, {"test": "true"})
    done = _run(tmp_path, "build")
    assert done.returncode == 1
    assert done.stderr.strip() == ('/w/apps/p/package.json has no script "build"; add it or fix the target\'s '
                                   'script')
