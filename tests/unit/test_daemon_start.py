"""A build's daemon starts early (mbuild.execution.daemon.Daemon.start): it
connects and resolves the workspace's base images while the command loads,
and analysis takes those answers — only for the very images asked for, and
never a failure it could raise better itself."""

from __future__ import annotations

import threading
from concurrent.futures import Future

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

    def _held(self, images):
        return images  # as if the engine had them all


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


class ClosingClient(FakeClient):
    closed_during: list[bool]

    def close(self) -> None:
        self.closed_during = list(self.calls)


def test_closing_never_waits_and_never_closes_under_the_early_start():
    """A command that ends early (a BUILD error, nothing to rebuild) does not
    wait for the engine; the early start closes the connection when it is done."""
    gate = threading.Event()
    client = ClosingClient(gate)

    class Connected(Daemon):
        def __init__(self):
            super().__init__("docker://")

        def _held(self, images):
            return images

    daemon = Connected()
    daemon._connection = Future()  # connected already
    daemon._connection.set_result(client)
    daemon.start([NODE], PLATFORM)
    daemon.close()  # returns at once: the resolution is still held at the gate
    assert not hasattr(client, "closed_during")
    gate.set()
    for _ in range(100):
        if hasattr(client, "closed_during"):
            break
        threading.Event().wait(0.01)
    assert client.closed_during == [["docker.io/library/node:22-slim"]], "not closed after the early start"


def test_a_failed_connection_is_not_tried_twice(monkeypatch):
    """An unreachable engine makes the user wait once, however many parts of the build ask."""
    import buildkit.client

    opened = []

    def failing(address, *a, **k):
        opened.append(address)
        raise ConnectionError("no engine there")

    monkeypatch.setattr(buildkit.client.Client, "open", failing)
    daemon = Daemon("unix:///nonexistent/buildkitd.sock")
    daemon.start([NODE], PLATFORM)
    for _ in range(2):
        with pytest.raises(ConnectionError):
            daemon.client()
    assert len(opened) == 1
