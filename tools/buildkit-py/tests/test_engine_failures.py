"""What a failed solve reports: the step whose error is its own."""

from __future__ import annotations

import pytest

from buildkit import Client, LocalDir, SolveRequest, llb
from buildkit.errors import SolveError

from bk_testenv import BASE_IMAGE

MISSING = "sha256:" + "0" * 64


def test_a_missing_image_is_the_failed_step_not_a_cancelled_sibling(buildkit, tmp_path):
    """An image BuildKit cannot load fails its own vertex; steps cancelled
    beside it (here a local source) report "context canceled" and are not it."""
    (tmp_path / "a.txt").write_text("a\n")
    name = BASE_IMAGE.rsplit(":", 1)[0]
    st = llb.image(f"{name}@{MISSING}").copy(llb.local("context"), "/a.txt", "/a.txt")
    with pytest.raises(SolveError) as info:
        buildkit.solve(SolveRequest(definition=st, local_dirs={"context": LocalDir(tmp_path)}))
    assert info.value.step.startswith("docker-image://"), info.value.step
    assert MISSING in info.value.step and "\n" not in str(info.value)


def test_the_tracker_passes_over_cancelled_steps_whatever_the_order():
    """The daemon may report the cancelled sibling first (as it did for a base
    image that was missing: "load 3 source files" was named)."""
    from buildkit.progress import StatusTracker
    from buildkit.proto import control_pb2

    resp = control_pb2.StatusResponse()
    for digest, name, error in (("sha256:1", "[//x] load 3 source files", "failed to prepare: context canceled"),
                                ("sha256:2", "docker-image://docker.io/library/python:3.11@sha256:ab",
                                 "failed to load cache key: no such host")):
        v = resp.vertexes.add(digest=digest, name=name, error=error)
        v.started.seconds = 1
    tracker = StatusTracker()
    tracker.feed(resp)
    assert tracker.failed().name.startswith("docker-image://")
