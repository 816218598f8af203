"""Shared fixtures. Engine tests run against the real Docker engine's BuildKit
(started by scripts/env-up); when it is not reachable they fail, never skip.

Tests share one engine: everything a test creates (images, containers,
registry tags) is named ``mbuild-test-*`` with a per-run suffix and removed
afterwards; build caches are never pruned here.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BASE_IMAGE = "mbuild-test/base:bookworm"  # made by scripts/env-up (Debian 12 + python3)
REGISTRY = "127.0.0.1:5000"


@pytest.fixture(scope="session", autouse=True)
def usual_umask():
    """Tests that create files without a mode expect 0644/0755, as a CI runner
    with umask 002 would not give them."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def _docker0() -> bool:
    return os.path.exists("/sys/class/net/docker0")  # what `ip link show docker0` asks, without a process


@pytest.fixture(autouse=True)
def shared_engine_network_intact(request):
    """No test may take the shared engine's bridge away (a dockerd started
    with --bridge=none, or a bridge deleted by name, does): it would leave every
    container on the shared engine without a network. Checked after each test,
    so the test that did it is the one that fails."""
    present = _docker0()
    yield
    if present and not _docker0():
        pytest.fail(f"{request.node.nodeid} removed docker0, the shared engine's bridge")


@pytest.fixture(scope="session")
def run_id() -> str:
    return secrets.token_hex(4)


@pytest.fixture(scope="session")
def docker_sdk():
    import docker

    client = docker.from_env(timeout=120)
    try:
        client.ping()
    except Exception as e:  # noqa: BLE001
        pytest.fail(f"Docker engine not reachable ({e}); run scripts/env-up first")
    return client


@pytest.fixture(scope="session")
def buildkit(docker_sdk):
    from buildkit.client import Client

    client = Client.open(os.environ.get("MBUILD_TEST_BUILDKIT", "docker://"))
    yield client
    client.close()


@pytest.fixture(scope="session")
def base_image_config(docker_sdk) -> dict:
    """The base image's OCI config, as the rules would resolve it."""
    img = docker_sdk.images.get(BASE_IMAGE)
    return img.attrs["Config"]


@pytest.fixture
def image_names(docker_sdk, run_id):
    """Hands out unique image names and removes those images afterwards."""
    made: list[str] = []

    def make(stem: str, registry: str | None = None) -> str:
        name = f"mbuild-test-{stem}-{run_id}-{len(made)}:latest"
        if registry:
            name = f"{registry}/{name}"
        made.append(name)
        return name

    yield make
    for name in made:
        for c in docker_sdk.containers.list(all=True, filters={"ancestor": name}):
            c.remove(force=True)
        try:
            docker_sdk.images.remove(name, force=True)
        except Exception:  # noqa: BLE001 - not loaded, or already gone
            pass


def docker_run(image: str, *args: str, user: str | None = None) -> subprocess.CompletedProcess:
    cmd = ["docker", "run", "--rm"]
    if user:
        cmd += ["--user", user]
    cmd += [image, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)
