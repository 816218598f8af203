"""Every remote operation ends by its deadline, whatever the server does
(mbuild.cache.remote.base, "Deadlines"): both clients against the hostile
test server of the fault suite (tests/faults/hostile_remote.py), with a
0.5 s limit. The margin allowed is the time to notice on a loaded machine, not
a second deadline."""

from __future__ import annotations

import os
import time

import pytest

from mbuild.cache.remote import BlobRef, RemoteTimeout, open_remote

from ..faults.hostile_remote import Content, Fault, HostileRemote

TIMEOUT = 0.5
MARGIN = 1.0
FAST = 1 << 30  # bytes/s: the transfer allowance plays no part here
SMALL = os.urandom(2600)  # the 2.6 kB blob of the report
BIG = os.urandom((3 << 20) // 2)  # over 1 MiB: a ByteStream read over gRPC
KEY = "ab" * 32


@pytest.fixture(scope="module")
def content() -> Content:
    c = Content()
    for data in (SMALL, BIG):
        c.put_bytes(data)
    c.set_result(KEY, b"")  # an empty ActionResult
    return c


@pytest.fixture(scope="module", params=["http", "grpc"])
def hostile(request, content):
    with HostileRemote(request.param, content) as remote:
        yield remote


def _timed(remote: HostileRemote, fault: Fault, op, tmp_path, timeout: float = TIMEOUT, min_rate: float = FAST):
    remote.fault = fault
    client = open_remote(remote.url, timeout=timeout, min_rate=min_rate)
    t0 = time.monotonic()
    try:
        return op(client, tmp_path), time.monotonic() - t0
    except RemoteTimeout:
        return "timeout", time.monotonic() - t0
    finally:
        client.close()


OPS = {
    "get_action_result": lambda c, tmp: c.get_action_result(KEY),
    "find_missing": lambda c, tmp: c.find_missing([BlobRef.of_bytes(SMALL)]),
    "get_small_blob": lambda c, tmp: c.get_blob(BlobRef.of_bytes(SMALL), tmp / "small"),
    "get_big_blob": lambda c, tmp: c.get_blob(BlobRef.of_bytes(BIG), tmp / "big"),
    "put_blob": lambda c, tmp: c.put_blob(BlobRef.of_bytes(b"new"), b"new"),
}
# Drips are given at rates that get the report's 2.6 kB blob (a 27 s read at
# 100 B/s against a 10 s limit) past the client's checks at this 0.5 s limit.
CASES = [
    (Fault("slow", rate=20), "get_action_result"),  # a drip through the headers
    (Fault("slow", rate=400), "get_small_blob"),  # headers in time, then a drip through the body
    (Fault("hang"), "get_action_result"),
    (Fault("hang"), "find_missing"),
    (Fault("hang"), "put_blob"),
    (Fault("hang-after-headers", on={"cas"}), "get_small_blob"),
    (Fault("hang-mid-body", on={"cas"}), "get_small_blob"),
    (Fault("hang-mid-body", on={"cas"}), "get_big_blob"),
    (Fault("never-accepts"), "get_action_result"),
]


@pytest.mark.parametrize("fault, op", CASES, ids=[f"{f.kind}-{op}" for f, op in CASES])
def test_every_wait_ends_by_the_deadline(hostile, fault, op, tmp_path):
    got, elapsed = _timed(hostile, fault, OPS[op], tmp_path)
    assert got == "timeout", got
    assert elapsed < TIMEOUT + MARGIN, f"{hostile.protocol} {fault.kind} {op}: {elapsed:.2f} s"
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary file left


def test_a_slow_server_within_the_deadline_still_answers(hostile, tmp_path):
    got, _ = _timed(hostile, Fault("slow", rate=50_000), OPS["get_small_blob"], tmp_path, timeout=5.0)
    assert got is True and (tmp_path / "small").read_bytes() == SMALL


def test_big_transfers_get_time_for_their_bytes(hostile, tmp_path):
    """1.5 MiB at a 4 MiB/s floor: 0.375 s on top of the 0.5 s, so a server
    that takes 0.7 s to start answering is still waited for, and one that
    never answers is given up on after 0.875 s."""
    rate = 4 << 20
    fault = Fault("honest", on={"cas"}, delay=TIMEOUT + 0.2)
    got, elapsed = _timed(hostile, fault, OPS["get_big_blob"], tmp_path, min_rate=rate)
    assert got is True and (tmp_path / "big").read_bytes() == BIG
    got, elapsed = _timed(hostile, Fault("hang", on={"cas"}), OPS["get_big_blob"], tmp_path, min_rate=rate)
    assert got == "timeout" and elapsed < TIMEOUT + len(BIG) / rate + MARGIN, elapsed


# ---------------------------------------------------------------- one deadline per operation


def test_http_find_missing_has_one_deadline_for_all_its_requests(content, tmp_path):
    """24 HEADs, 8 at a time, each answered after 0.2 s: 0.6 s in all, over
    the 0.5 s an operation may take, though each request alone is in time."""
    blobs = [BlobRef.of_bytes(os.urandom(8)) for _ in range(24)]
    with HostileRemote("http", content) as remote:
        got, elapsed = _timed(remote, Fault("honest", on={"other"}, delay=0.2), lambda c, _: c.find_missing(blobs),
                              tmp_path)
    assert got == "timeout" and elapsed < TIMEOUT + MARGIN, (got, elapsed)


def test_grpc_capabilities_count_against_the_first_operation(content, tmp_path):
    """GetCapabilities and GetActionResult each answered after 0.3 s: within
    the connect bound and the timeout one by one, 0.6 s together."""
    with HostileRemote("grpc", content) as remote:
        got, elapsed = _timed(remote, Fault("honest", on={"other", "ac"}, delay=0.3), OPS["get_action_result"],
                              tmp_path)
    assert got == "timeout" and elapsed < TIMEOUT + MARGIN, (got, elapsed)


@pytest.mark.parametrize("protocol, count", [("http", 3), ("grpc", 1200)])
def test_the_requests_of_get_blobs_share_its_deadline(protocol, count, tmp_path):
    """Blobs asked for together, each request answered after 0.22 s: three
    HTTP GETs, or three BatchReadBlobs calls of at most 500 blobs."""
    content = Content()
    refs = [content.put_bytes(os.urandom(16)) for _ in range(count)]
    with HostileRemote(protocol, content) as remote:
        got, elapsed = _timed(remote, Fault("honest", on={"cas"}, delay=0.22),
                              lambda c, tmp: c.get_blobs([(r, tmp / r.hash) for r in refs]), tmp_path)
    assert got == "timeout" and elapsed < TIMEOUT + MARGIN, (got, elapsed)
