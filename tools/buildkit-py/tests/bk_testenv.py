"""What buildkit-py's engine tests share besides fixtures: the engine and
image they use, and the docker CLI (which honours DOCKER_HOST as the client
does). A module of its own (not conftest) so tests can import it: several
test folders of the repository have a conftest module."""

from __future__ import annotations

import os
import subprocess

BASE_IMAGE = os.environ.get("BUILDKIT_TEST_IMAGE", "mbuild-test/base:bookworm")
REGISTRY = os.environ.get("BUILDKIT_TEST_REGISTRY", "127.0.0.1:5000")
ADDRESS = os.environ.get("BUILDKIT_TEST_ADDRESS", "docker://")


def docker(*args: str, timeout: float = 120, input: bytes | None = None) -> subprocess.CompletedProcess:
    """The docker CLI (it honours DOCKER_HOST, as the client does)."""
    return subprocess.run(["docker", *args], capture_output=True, timeout=timeout, input=input)


def docker_run(image: str, *args: str, user: str | None = None) -> subprocess.CompletedProcess:
    cmd = ["docker", "run", "--rm"]
    if user:
        cmd += ["--user", user]
    cmd += [image, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)
