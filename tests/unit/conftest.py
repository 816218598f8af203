"""Fixtures shared by the unit tests: in-process gRPC servers on unix sockets."""

from __future__ import annotations

import shutil
import tempfile
from concurrent import futures
from pathlib import Path

import grpc
import pytest


@pytest.fixture
def sock_dir():
    d = tempfile.mkdtemp(prefix="mbfs-")  # short: unix socket paths are limited to 107 bytes
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def serve(sock_dir):
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
