"""Remote caches against the real servers scripts/env-up starts: BuildGrid
(REAPI, cache-only, instance "") on 127.0.0.1:50051 and nginx WebDAV (Bazel
HTTP cache protocol) on 127.0.0.1:8089. Also: a remote that is down, one
that never answers, and one that serves wrong bytes never fail anything.

Every key and blob is random per run, so runs never collide; nothing is
deleted from the servers.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from mbuild.cache.remote import (
    ActionResult,
    BlobRef,
    Digest,
    OutputFile,
    SafeRemote,
    SourceMismatch,
    open_remote,
    open_safe_remote,
)
from mbuild.cache.remote.reapi import ReapiCache

pytestmark = pytest.mark.servers

GRPC = "grpc://127.0.0.1:50051"
HTTP = "http://127.0.0.1:8089"
URLS = [GRPC, HTTP + "/", HTTP + "/mbuild-test-prefix/"]
BIG = 5 << 20


def _reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module", autouse=True)
def servers_up():
    for port, what in ((50051, "BuildGrid"), (8089, "nginx WebDAV")):
        if not _reachable("127.0.0.1", port):
            pytest.fail(f"{what} is not listening on 127.0.0.1:{port}; run scripts/env-up first")


@pytest.fixture(params=URLS, ids=["reapi", "http", "http-prefix"])
def remote(request):
    r = open_remote(request.param)
    yield r
    r.close()


def random_blob(tmp_path: Path, size: int, name: str = "blob") -> tuple[BlobRef, Path]:
    p = tmp_path / name
    with open(p, "wb") as f:
        left = size
        while left:
            n = min(left, 1 << 20)
            f.write(os.urandom(n))
            left -= n
    return BlobRef.of_file(p), p


def result_for(*outputs: tuple[str, BlobRef]) -> ActionResult:
    return ActionResult(
        exit_code=0,  # BuildGrid is configured not to cache failed actions
        output_files=[
            OutputFile(path=path, digest=Digest(hash=b.hash, size_bytes=b.size), is_executable=i == 0)
            for i, (path, b) in enumerate(outputs)
        ],
        stdout_raw=b"built\n",
    )


# ---------------------------------------------------------------- round trips


def test_action_result_round_trip(remote, tmp_path):
    data = os.urandom(2000)
    b = BlobRef.of_bytes(data)
    # BuildGrid answers NOT_FOUND for a result whose outputs are not in its
    # CAS, so outputs go up first (as a real upload does).
    remote.put_blob(b, data)
    key = os.urandom(32).hex()
    assert remote.get_action_result(key) is None
    ar = result_for(("out/app.tar", b))
    ar.execution_metadata.worker = "mbuild-test"
    ar.execution_metadata.queued_timestamp.FromNanoseconds(1_700_000_000_000_000_000)
    remote.put_action_result(key, ar)
    got = remote.get_action_result(key)
    assert got == ar
    assert got.output_files[0].digest.hash == b.hash and got.output_files[0].is_executable


def test_missing_action_key(remote):
    assert remote.get_action_result(os.urandom(32).hex()) is None


def test_small_blob_round_trip_and_find_missing(remote, tmp_path):
    data = os.urandom(4321)
    b = BlobRef.of_bytes(data)
    other = BlobRef.of_bytes(os.urandom(10))
    assert remote.find_missing([b, other]) == {b, other}
    assert remote.get_blob(b, tmp_path / "absent") is False
    assert not (tmp_path / "absent").exists()
    remote.put_blob(b, data)
    assert remote.find_missing([b, other]) == {other}
    assert remote.get_blob(b, tmp_path / "got")
    assert (tmp_path / "got").read_bytes() == data


def test_large_blob_streams_both_ways(remote, tmp_path):
    b, src = random_blob(tmp_path, BIG)
    assert remote.find_missing([b]) == {b}
    if isinstance(remote, ReapiCache):  # check it really goes through ByteStream
        seen = []
        write, read = remote._bs.Write, remote._bs.Read
        remote._bs.Write = lambda *a, **k: (seen.append("Write"), write(*a, **k))[1]
        remote._bs.Read = lambda *a, **k: (seen.append("Read"), read(*a, **k))[1]
    t = time.monotonic()
    remote.put_blob(b, src)
    up = time.monotonic() - t
    assert remote.find_missing([b]) == set()
    dest = tmp_path / "sub" / "got"
    t = time.monotonic()
    assert remote.get_blob(b, dest)
    down = time.monotonic() - t
    assert BlobRef.of_file(dest) == b
    assert [p.name for p in dest.parent.iterdir()] == ["got"]  # no temporary files left
    if isinstance(remote, ReapiCache):
        assert seen == ["Write", "Read"]
    print(f"{remote.name}: 5 MiB up {up:.3f} s, down {down:.3f} s")


def test_many_blobs(remote, tmp_path):
    blobs = {}
    for i in range(40):
        d = os.urandom(100 + i)
        blobs[BlobRef.of_bytes(d)] = d
    present = list(blobs)[:25]
    for b in present:
        remote.put_blob(b, blobs[b])
    assert remote.find_missing(blobs) == set(list(blobs)[25:])
    got = remote.get_blobs([(b, tmp_path / b.hash) for b in blobs])
    assert [b for b, ok in got.items() if ok] == present
    assert all((tmp_path / b.hash).read_bytes() == blobs[b] for b in present)


def test_upload_of_a_file_that_changed_is_cut_short(remote, tmp_path):
    b, src = random_blob(tmp_path, 3 << 20)
    src.write_bytes(os.urandom(3 << 20))  # same size, different bytes: "changed after digesting"
    with pytest.raises(SourceMismatch):
        remote.put_blob(b, src)
    assert remote.find_missing([b]) == {b}  # the server never completed it
    data = os.urandom(100)
    remote.put_blob(BlobRef.of_bytes(data), data)  # and the client still works


def test_safe_remote_passes_through_when_healthy(tmp_path):
    warnings: list[str] = []
    for url in (GRPC, HTTP):
        safe = open_safe_remote(url, warn=warnings.append)
        data = os.urandom(64)
        b = BlobRef.of_bytes(data)
        safe.put_blob(b, data)
        key = os.urandom(32).hex()
        safe.put_action_result(key, result_for(("f", b)))
        assert safe.get_action_result(key) == result_for(("f", b))
        assert safe.find_missing([b]) == set()
        assert safe.get_blob(b, tmp_path / b.hash)
        safe.close()
    assert warnings == []


# ---------------------------------------------------------------- wrong bytes


def raw_put(path: str, body: bytes) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", 8089, timeout=10)
    conn.request("PUT", path, body=body)
    status = conn.getresponse().status
    conn.close()
    return status


@pytest.mark.parametrize("same_size", [True, False], ids=["same-size", "other-size"])
def test_wrong_bytes_from_http_cache(tmp_path, same_size):
    wanted = os.urandom(3000)
    b = BlobRef.of_bytes(wanted)
    wrong = os.urandom(3000 if same_size else 2000)
    assert raw_put(f"/cas/{b.hash}", wrong) in (201, 204)  # stored under the hash of something else
    raw = open_remote(HTTP)
    # A stored length that is not the blob's size shows up as missing already.
    assert raw.find_missing([b]) == (set() if same_size else {b})
    warnings: list[str] = []
    safe = SafeRemote(raw, warnings.append)
    dest = tmp_path / "out"
    assert safe.get_blob(b, dest) is False
    assert safe.get_blob(b, dest) is False
    assert not dest.exists() and list(tmp_path.iterdir()) == []
    assert len(warnings) == 1
    assert warnings[0].startswith(f"mbuild: warning: remote cache {HTTP}/ sent corrupted data")
    assert safe.enabled  # still usable: re-uploading the right bytes heals the entry
    safe.put_blob(b, wanted)
    assert safe.get_blob(b, dest) and dest.read_bytes() == wanted
    safe.close()


def test_wrong_bytes_for_a_large_blob(tmp_path):
    b, src = random_blob(tmp_path, BIG, "wanted")
    _, other = random_blob(tmp_path, BIG, "other")
    conn = http.client.HTTPConnection("127.0.0.1", 8089, timeout=30)
    with open(other, "rb") as f:
        conn.request("PUT", f"/cas/{b.hash}", body=f, headers={"Content-Length": str(BIG)})
    assert conn.getresponse().status in (201, 204)
    conn.close()
    warnings: list[str] = []
    safe = SafeRemote(open_remote(HTTP), warnings.append)
    assert safe.get_blob(b, tmp_path / "dest") is False
    assert not (tmp_path / "dest").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other", "wanted"]
    assert len(warnings) == 1 and "corrupted data" in warnings[0]


def test_garbage_action_result_from_http_cache():
    key = os.urandom(32).hex()
    assert raw_put(f"/ac/{key}", b"\xff\xff\xff\xff not a protobuf") in (201, 204)
    warnings: list[str] = []
    safe = SafeRemote(open_remote(HTTP), warnings.append)
    assert safe.get_action_result(key) is None
    assert len(warnings) == 1 and "corrupted data" in warnings[0]


# ---------------------------------------------------------------- down and slow


@pytest.mark.parametrize("url", ["grpc://127.0.0.1:1", "http://127.0.0.1:1"])
def test_down_remote_is_a_miss_and_warns_once(url, tmp_path):
    warnings: list[str] = []
    safe = open_safe_remote(url, warn=warnings.append)
    b = BlobRef.of_bytes(b"abc")
    t = time.monotonic()
    assert safe.get_action_result(os.urandom(32).hex()) is None
    first = time.monotonic() - t
    assert safe.find_missing([b]) == set()
    assert safe.get_blob(b, tmp_path / "x") is False
    safe.put_blob(b, b"abc")
    safe.put_action_result(os.urandom(32).hex(), ActionResult())
    total = time.monotonic() - t
    assert not (tmp_path / "x").exists()
    assert first < 2.5 and total < 2.5, (first, total)
    assert len(warnings) == 1
    assert warnings[0] == (
        f"mbuild: warning: remote cache {url}{'/' if url.startswith('http') else ''} unavailable "
        "(connection refused); continuing without it for this run (check the address and that the server is up)"
    )
    print(f"{url}: down detected in {first * 1000:.1f} ms")


@pytest.fixture
def silent_server():
    """A TCP server that accepts connections and never says a word."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept():
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                c, _ = srv.accept()
                held.append(c)
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join()
    for c in held:
        c.close()
    srv.close()


@pytest.mark.parametrize("scheme", ["grpc", "http"])
def test_silent_remote_is_bounded_by_the_timeout(scheme, silent_server, tmp_path):
    url = f"{scheme}://127.0.0.1:{silent_server}"
    warnings: list[str] = []
    safe = open_safe_remote(url, warn=warnings.append, timeout=1.0)
    b = BlobRef.of_bytes(b"abc")
    t = time.monotonic()
    assert safe.get_action_result(os.urandom(32).hex()) is None
    first = time.monotonic() - t
    assert safe.get_blob(b, tmp_path / "x") is False
    assert safe.find_missing([b]) == set()
    safe.put_blob(b, b"abc")
    total = time.monotonic() - t
    assert 0.8 < first < 5 and total < 5, (first, total)
    assert len(warnings) == 1 and "no answer within 1 s" in warnings[0] and url in warnings[0]
    assert not safe.enabled
    print(f"{url}: silent server given up after {first:.2f} s")


def test_silent_remote_large_upload_is_bounded(silent_server, tmp_path):
    """A big upload to a server that reads nothing still ends: each socket
    wait is bounded, and so is the whole transfer."""
    b, src = random_blob(tmp_path, 8 << 20)
    warnings: list[str] = []
    safe = open_safe_remote(f"http://127.0.0.1:{silent_server}", warn=warnings.append, timeout=1.0)
    t = time.monotonic()
    safe.put_blob(b, src)
    elapsed = time.monotonic() - t
    assert elapsed < 12, elapsed  # 1 s + 8 MiB at the 1 MiB/s floor, at most
    assert len(warnings) == 1


def test_buildgrid_capabilities():
    r = open_remote(GRPC)
    info = r.server_info()
    assert 1 in info.digest_functions  # SHA256
    assert info.update_enabled
    assert info.max_batch_total_size_bytes > 0
    r.close()


def test_concurrent_use(tmp_path):
    """One client shared by threads, as parallel actions share it. More
    threads than BuildGrid's concurrent-RPC limit (10 on a 2-CPU machine):
    its RESOURCE_EXHAUSTED answers are retried."""
    for url in (GRPC, HTTP):
        r = open_remote(url)
        errors: list[BaseException] = []

        def work(i: int) -> None:
            try:
                data = os.urandom(500 + i)
                b = BlobRef.of_bytes(data)
                r.put_blob(b, data)
                assert r.find_missing([b]) == set()
                assert r.get_blob(b, tmp_path / f"{url[:4]}-{i}")
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        r.close()
        assert errors == []


def test_sha_of_empty_blob_is_served_everywhere(tmp_path):
    e = BlobRef(hashlib.sha256(b"").hexdigest(), 0)
    for url in (GRPC, HTTP):
        r = open_remote(url)
        r.put_blob(e, b"")
        assert r.find_missing([e]) == set()
        assert r.get_blob(e, tmp_path / f"e{url[:4]}") and (tmp_path / f"e{url[:4]}").read_bytes() == b""
        r.close()
