"""Base images resolved by BuildKit itself: by name on an engine whose images
were imported, pinned digests checked, `mbuild lock` writing what BuildKit
resolves, and one-line errors that say what to do when a base is missing."""

from __future__ import annotations

import json
import subprocess

import pytest

from ..conftest import BASE_IMAGE
from .workspaces import MBUILD, write_tree

pytestmark = pytest.mark.engine


def workspace(root, image_table: str, name: str):
    write_tree(root, {
        "WORKSPACE.toml": f'name = "bases"\n{image_table}\n',
        "app/BUILD": f"""
            container_image(name = "img", base = "base", commands = ["true"], image = "{name}")
            """,
    })
    return root


def mbuild(root, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*MBUILD, "--cache-dir", str(root.parent / "cache"), *args], cwd=root,
                          capture_output=True, text=True, timeout=600)


def error_line(proc) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.startswith("mbuild: error:")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_lock_pins_what_buildkit_resolves_and_the_pin_builds(tmp_path, image_names, docker_sdk):
    name = image_names("bases-lock")
    root = workspace(tmp_path / "ws", f'[images.base]\nref = "{BASE_IMAGE}"', name)
    locked = mbuild(root, "lock")
    assert locked.returncode == 0, locked.stderr
    text = (root / "WORKSPACE.toml").read_text()
    digest = text.split('digest = "', 1)[1].split('"', 1)[0]
    assert digest == docker_sdk.images.get(BASE_IMAGE).id  # the engine's copy, as BuildKit found it
    built = mbuild(root, "build", "--json", "//app:img")
    assert built.returncode == 0, built.stderr[-3000:]
    explain = mbuild(root, "explain", "//app:img")
    assert f'"base": "{digest}"' in explain.stdout


def test_a_missing_base_says_to_load_it(tmp_path, image_names):
    root = workspace(tmp_path / "ws", '[images.base]\nref = "mbuild-test/no-such-image:1"', image_names("bases-x"))
    proc = mbuild(root, "build", "//app:img")
    assert proc.returncode == 1
    line = error_line(proc)
    assert "base image base (mbuild-test/no-such-image:1" in line and "[images.base]" in line
    assert "docker load" in line and "mbuild lock" in line


def test_a_pin_the_engine_does_not_have_says_what_to_do(tmp_path, image_names):
    missing = "sha256:" + "1" * 64
    root = workspace(tmp_path / "ws", f'[images.base]\nref = "{BASE_IMAGE}"\ndigest = "{missing}"',
                     image_names("bases-pin"))
    proc = mbuild(root, "build", "//app:img")
    assert proc.returncode == 1
    line = error_line(proc)
    assert missing in line and "mbuild lock" in line and "load that image" in line
    # No "not pinned" warning, or anything else, before the error.
    assert proc.stderr.strip().splitlines() == [line]
