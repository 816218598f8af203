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


def test_a_base_only_a_registry_has_is_resolved_there(tmp_path, image_names, run_id):
    """Where there is a registry, BuildKit resolves the base there: the image is
    pushed to the local registry and is not in the engine under that name."""
    from ..conftest import REGISTRY

    remote = f"{REGISTRY}/mbuild-test/registry-base-{run_id}:v1"
    subprocess.run(["docker", "tag", BASE_IMAGE, remote], check=True, capture_output=True)
    try:
        subprocess.run(["docker", "push", "-q", remote], check=True, capture_output=True, timeout=300)
    finally:
        subprocess.run(["docker", "rmi", remote], capture_output=True)  # only the tag: the engine keeps the base
    name = image_names("bases-registry")
    root = workspace(tmp_path / "ws", f'[images.base]\nref = "{remote}"', name)
    proc = mbuild(root, "build", "--json", "//app:img")
    assert proc.returncode == 0, proc.stderr[-3000:]
    explain = mbuild(root, "explain", "//app:img").stdout
    digest = json.loads(explain[explain.index("{"):explain.rindex("}") + 1])["bases"]["base"]
    head = subprocess.run(["curl", "-fsSI", "-H", "Accept: application/vnd.oci.image.manifest.v1+json",
                           "-H", "Accept: application/vnd.docker.distribution.manifest.v2+json",
                           f"http://{REGISTRY}/v2/mbuild-test/registry-base-{run_id}/manifests/v1"],
                          capture_output=True, text=True)
    assert f"docker-content-digest: {digest}" in head.stdout.lower()
