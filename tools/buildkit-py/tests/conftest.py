"""Fixtures of buildkit-py's own tests. No mbuild here: the package must stand alone.

Unit tests use in-process gRPC servers on unix sockets. Engine tests run
against a real Docker engine's BuildKit, the one the docker CLI would use
(``DOCKER_HOST``, the docker context, else ``/var/run/docker.sock``), or
``BUILDKIT_TEST_ADDRESS``; when it is not reachable they fail, never skip.

``BUILDKIT_TEST_IMAGE`` names a local Debian image with ``python3`` (default
``mbuild-test/base:bookworm``, which the repository's ``scripts/env-up``
makes). Tests import what they share from ``bk_testenv`` (not from conftest,
which is not a unique module name in this repository). Everything a test creates is named ``buildkit-test-*`` with a per-run
suffix and removed afterwards; build caches are never pruned here.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from bk_testenv import ADDRESS, BASE_IMAGE, docker


@pytest.fixture(scope="session", autouse=True)
def usual_umask():
    """Tests that create files without a mode expect 0644/0755."""
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture
def sock_dir():
    d = tempfile.mkdtemp(prefix="bkt-")  # short: unix socket paths are limited to 107 bytes
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def serve(sock_dir):
    """Starts a servicer on an in-process gRPC server; returns a channel to it."""
    servers = []

    def start(servicer) -> grpc.Channel:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=64))
        servicer.register(server)
        addr = f"unix:{sock_dir}/s{len(servers)}.sock"
        server.add_insecure_port(addr)
        server.start()
        servers.append(server)
        return grpc.insecure_channel(addr)

    yield start
    for s in servers:
        s.stop(None)


@pytest.fixture(scope="session")
def run_id() -> str:
    return secrets.token_hex(4)


@pytest.fixture(scope="session")
def buildkit():
    from buildkit import Client

    client = Client.open(ADDRESS)
    yield client
    client.close()


@pytest.fixture(scope="session")
def base_image_config(buildkit) -> dict:
    """The base image's config section, as BuildKit resolves it."""
    (found,) = buildkit.resolve_images([(BASE_IMAGE, None)])
    if isinstance(found, Exception):
        pytest.fail(f"{BASE_IMAGE} is not in the engine ({found}); set BUILDKIT_TEST_IMAGE or run scripts/env-up")
    return dict(found.container_config)


@pytest.fixture
def image_names(run_id):
    """Hands out unique image names and removes those images afterwards."""
    made: list[str] = []

    def make(stem: str, registry: str | None = None) -> str:
        name = f"buildkit-test-{stem}-{run_id}-{len(made)}:latest"
        if registry:
            name = f"{registry}/{name}"
        made.append(name)
        return name

    yield make
    for name in made:
        ids = docker("ps", "-aq", "--filter", f"ancestor={name}").stdout.split()
        if ids:
            docker("rm", "-f", *[i.decode() for i in ids])
        docker("rmi", "-f", name)
