"""The seed's Dockerfiles as the oracle: mbuild's runtime images must hold the
same files (type, mode, owner, content) and the same config as
``docker buildx build --target runtime`` of infra/docker/*.Dockerfile.
"""

from __future__ import annotations

import subprocess

import pytest

from ..conftest import REPO
from .conftest import NODE_RUNTIME, PYTHON_RUNTIME, Entry, export_tree, remove_images

pytestmark = pytest.mark.engine

CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

# Paths `docker create` itself writes into every container: not the image's.
CONTAINER_PATHS = {"/.dockerenv", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf"}

# The config keys an image's behaviour depends on (ArgsEscaped is a Windows
# detail the Dockerfile frontend sets; Labels come from the shared base).
CONFIG_KEYS = ("User", "Env", "WorkingDir", "Cmd", "Entrypoint", "ExposedPorts", "Labels", "Volumes",
               "StopSignal", "Healthcheck", "OnBuild", "Shell")


def buildx_build(dockerfile: str, tag: str) -> None:
    cmd = ["docker", "buildx", "build", "--load", "--progress", "plain", "-t", tag, "--target", "runtime",
           "--secret", f"id=cacert,src={CA_BUNDLE}", "-f", dockerfile, "."]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed:\n" + "\n".join(result.stderr.splitlines()[-40:]))


@pytest.fixture(scope="module")
def oracle(docker_sdk, run_id):
    """{label: oracle image} built from the seed Dockerfiles; removed afterwards."""
    images = {
        PYTHON_RUNTIME: (f"mbuild-test-oracle-{run_id}-python:x", "infra/docker/python.Dockerfile"),
        NODE_RUNTIME: (f"mbuild-test-oracle-{run_id}-node:x", "infra/docker/node.Dockerfile"),
    }
    try:
        for tag, dockerfile in images.values():
            buildx_build(dockerfile, tag)
        yield {label: tag for label, (tag, _) in images.items()}
    finally:
        remove_images(docker_sdk, [tag for tag, _ in images.values()])


def tree_diff(ours: dict[str, Entry], theirs: dict[str, Entry]) -> list[str]:
    """Readable differences between two file trees (mbuild's vs the Dockerfile's)."""
    lines = []
    for path in sorted(set(ours) | set(theirs)):
        if path in CONTAINER_PATHS:
            continue
        a, b = ours.get(path), theirs.get(path)
        if a is None:
            lines.append(f"only in the Dockerfile image: {path} {b.meta()}")
        elif b is None:
            lines.append(f"only in mbuild's image:       {path} {a.meta()}")
        elif a.meta() != b.meta():
            lines.append(f"differs: {path}\n    mbuild:     {a.meta()}\n    Dockerfile: {b.meta()}")
        elif a.type == "file" and (a.size, a.sha256) != (b.size, b.sha256):
            lines.append(f"content differs: {path} (mbuild {a.size} bytes, Dockerfile {b.size} bytes)")
    return lines


def config_diff(ours: dict, theirs: dict) -> list[str]:
    return [f"{key}:\n    mbuild:     {ours.get(key)!r}\n    Dockerfile: {theirs.get(key)!r}"
            for key in CONFIG_KEYS if ours.get(key) != theirs.get(key)]


@pytest.mark.parametrize("label", [PYTHON_RUNTIME, NODE_RUNTIME], ids=["python", "node"])
def test_file_tree_matches_the_dockerfile(monorepo_build, oracle, label):
    ours, theirs = export_tree(monorepo_build.image(label)), export_tree(oracle[label])
    assert any(p.startswith("/app/") for p in ours)
    diff = tree_diff(ours, theirs)
    assert not diff, f"{len(diff)} differences ({label} vs {oracle[label]}):\n" + "\n".join(diff[:80])


@pytest.mark.parametrize("label", [PYTHON_RUNTIME, NODE_RUNTIME], ids=["python", "node"])
def test_config_matches_the_dockerfile(monorepo_build, oracle, docker_sdk, label):
    ours = docker_sdk.images.get(monorepo_build.image(label)).attrs["Config"]
    theirs = docker_sdk.images.get(oracle[label]).attrs["Config"]
    diff = config_diff(ours, theirs)
    assert not diff, "config differs:\n" + "\n".join(diff)
    assert ours["Env"] == theirs["Env"]  # as lists: the order counts too
