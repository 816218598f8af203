"""A build's daemon starts early (mbuild.execution.daemon.Daemon.start): it
connects and resolves the workspace's base images while the command loads,
and analysis takes those answers — only for the very images asked for, and
never a failure it could raise better itself."""

from __future__ import annotations

import threading

import pytest

from buildkit.gateway import ResolvedImage
from mbuild.execution.daemon import Daemon
from mbuild.loading.workspace import BaseImage

PLATFORM = "linux/amd64"
NODE = BaseImage("node", "node:22-slim")
PYTHON = BaseImage("python", "python:3.11")


class FakeClient:
    """resolve_images as BuildKit answers it: every ref found, each call counted."""

    address = "docker://"

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.calls: list[list[str]] = []
        self.gate = gate

    def resolve_images(self, wanted):
        if self.gate is not None:
            self.gate.wait(5)
        self.calls.append([ref for ref, _ in wanted])
        return [ResolvedImage(ref, "sha256:" + "a" * 64, {"architecture": "amd64", "os": "linux",
                                                         "rootfs": {"diff_ids": []}}) for ref, _ in wanted]

    def close(self) -> None:
        pass


class FakeDaemon(Daemon):
    def __init__(self, client=None, failure: BaseException | None = None) -> None:
        super().__init__("docker://")
        self.fake, self.failure = client, failure

    def client(self):
        if self.failure is not None:
            raise self.failure
        return self.fake


def test_analysis_takes_the_early_answers_for_images_it_asked_for():
    client = FakeClient()
    daemon = FakeDaemon(client)
    daemon.start([NODE, PYTHON], PLATFORM)
    found, missing = daemon.resolve([NODE], PLATFORM)
    assert set(found) == {"node"} and not missing
    assert client.calls == [["docker.io/library/node:22-slim", "docker.io/library/python:3.11"]]  # asked once


def test_other_images_or_platforms_are_resolved_then_and_there():
    client = FakeClient()
    daemon = FakeDaemon(client)
    daemon.start([NODE], PLATFORM)
    daemon.resolve([NODE, PYTHON], PLATFORM)
    daemon.resolve([NODE], "linux/arm64")
    pinned = BaseImage("node", "node:22-slim", "sha256:" + "b" * 64)  # the same name, another pin
    daemon.resolve([pinned], PLATFORM)
    # the early call, one for each later resolve, and the pin's lookup by digest (the name's differs)
    assert len(client.calls) == 5


def test_a_failed_early_start_is_met_again_where_analysis_asks():
    daemon = FakeDaemon(failure=ConnectionError("engine is down"))
    daemon.start([NODE], PLATFORM)
    with pytest.raises(ConnectionError, match="engine is down"):
        daemon.resolve([NODE], PLATFORM)


def test_closing_waits_for_the_early_start():
    gate = threading.Event()
    client = FakeClient(gate)
    daemon = FakeDaemon(client)
    daemon.start([NODE], PLATFORM)
    threading.Timer(0.2, gate.set).start()
    daemon.close()
    assert client.calls, "closed before the early start was done"
