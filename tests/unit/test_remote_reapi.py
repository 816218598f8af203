"""The REAPI cache client (mbuild.cache.remote.reapi): resource names, batching
decisions, and behaviour against a fake in-process gRPC server (wrong bytes,
capabilities, metadata, read-only caches)."""

from __future__ import annotations

import hashlib
import os
import time
from concurrent import futures

import grpc
import pytest

from mbuild.cache.remote import BlobRef, CorruptBlob, RemoteError, SafeRemote, UpdatesDisabled, open_remote
from mbuild.cache.remote.proto import bytestream_pb2 as bs_pb2
from mbuild.cache.remote.proto import bytestream_pb2_grpc as bs_grpc
from mbuild.cache.remote.proto import remote_execution_pb2 as re_pb2
from mbuild.cache.remote.proto import remote_execution_pb2_grpc as re_grpc
from mbuild.cache.remote.reapi import (
    ACTION_KEY_SIZE,
    BYTESTREAM_THRESHOLD,
    GRPC_MESSAGE_LIMIT,
    MAX_BATCH_COUNT,
    PER_BLOB_OVERHEAD,
    REQUEST_OVERHEAD,
    batch_limit,
    plan_batches,
    read_resource_name,
    use_bytestream,
    write_resource_name,
)

H = "ab" * 32


def blob(n: int, tag: int = 0) -> BlobRef:
    return BlobRef(hashlib.sha256(f"{n}-{tag}".encode()).hexdigest(), n)


# ---------------------------------------------------------------- pure helpers


def test_resource_names():
    b = BlobRef(H, 42)
    assert read_resource_name("", b) == f"blobs/{H}/42"
    assert read_resource_name("main/ci", b) == f"main/ci/blobs/{H}/42"
    assert write_resource_name("", b, "u-1") == f"uploads/u-1/blobs/{H}/42"
    assert write_resource_name("main", b, "u-1") == f"main/uploads/u-1/blobs/{H}/42"
    a, c = write_resource_name("", b), write_resource_name("", b)
    assert a != c and a.startswith("uploads/") and a.endswith(f"/blobs/{H}/42")  # a fresh uuid each time


def test_batch_limit():
    assert batch_limit(0) == GRPC_MESSAGE_LIMIT - REQUEST_OVERHEAD  # no limit announced
    assert batch_limit(100 << 20) == GRPC_MESSAGE_LIMIT - REQUEST_OVERHEAD  # capped by gRPC's message size
    assert batch_limit(4193280) == 4193280 - REQUEST_OVERHEAD  # BuildGrid's announced limit
    assert batch_limit(10_000) == 10_000 - REQUEST_OVERHEAD
    assert batch_limit(10) == 0


def test_use_bytestream():
    limit = batch_limit(0)
    assert not use_bytestream(0, limit)
    assert not use_bytestream(BYTESTREAM_THRESHOLD, limit)
    assert use_bytestream(BYTESTREAM_THRESHOLD + 1, limit)
    small = batch_limit(10_000)
    assert not use_bytestream(small - PER_BLOB_OVERHEAD, small)
    assert use_bytestream(small - PER_BLOB_OVERHEAD + 1, small)  # the server's limit wins


def test_plan_batches_packs_in_order_within_the_limit():
    limit = 1000
    blobs = [blob(300, i) for i in range(5)] + [blob(5000)] + [blob(10)]
    batches, streamed = plan_batches(blobs, limit)
    assert streamed == [blob(5000)]
    # 300 + 128 overhead: two per batch
    assert [[b.size for b in batch] for batch in batches] == [[300, 300], [300, 300], [300, 10]]
    for batch in batches:
        assert sum(b.size + PER_BLOB_OVERHEAD for b in batch) <= limit


def test_plan_batches_count_limit_and_duplicates():
    blobs = [blob(1, i) for i in range(MAX_BATCH_COUNT + 3)]
    batches, streamed = plan_batches(blobs + blobs[:10], batch_limit(0))
    assert streamed == []
    assert [len(b) for b in batches] == [MAX_BATCH_COUNT, 3]
    assert plan_batches([], 1000) == ([], [])


# ---------------------------------------------------------------- a fake server


class FakeServer(
    re_grpc.CapabilitiesServicer,
    re_grpc.ActionCacheServicer,
    re_grpc.ContentAddressableStorageServicer,
    bs_grpc.ByteStreamServicer,
):
    """An in-memory REAPI cache that records what it is asked, and can be
    told to lie."""

    def __init__(self) -> None:
        self.blobs: dict[tuple[str, int], bytes] = {}
        self.ac: dict[tuple[str, int], re_pb2.ActionResult] = {}
        self.calls: list[str] = []
        self.metadata: list[dict[str, str]] = []
        self.resources: list[str] = []
        self.write_chunks: list[int] = []
        self.corrupt = False  # serve wrong bytes
        self.digest_functions = [re_pb2.DigestFunction.SHA256]
        self.update_enabled = True
        self.max_batch = 0
        self.max_blob = 0
        self.busy = 0  # answer this many calls with RESOURCE_EXHAUSTED, as a loaded BuildGrid does

    def _note(self, name: str, context) -> None:
        self.calls.append(name)
        self.metadata.append(dict(context.invocation_metadata()))
        if self.busy > 0:
            self.busy -= 1
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "Concurrent RPC limit exceeded!")

    def _data(self, key: tuple[str, int]) -> bytes | None:
        data = self.blobs.get(key)
        if data is not None and self.corrupt:
            return bytes([data[0] ^ 0xFF]) + data[1:] if data else b"x"
        return data

    def GetCapabilities(self, request, context):
        self._note("GetCapabilities", context)
        return re_pb2.ServerCapabilities(
            cache_capabilities=re_pb2.CacheCapabilities(
                digest_functions=self.digest_functions,
                action_cache_update_capabilities=re_pb2.ActionCacheUpdateCapabilities(
                    update_enabled=self.update_enabled
                ),
                max_batch_total_size_bytes=self.max_batch,
                max_cas_blob_size_bytes=self.max_blob,
            )
        )

    def GetActionResult(self, request, context):
        self._note("GetActionResult", context)
        key = (request.action_digest.hash, request.action_digest.size_bytes)
        if key not in self.ac:
            context.abort(grpc.StatusCode.NOT_FOUND, "no such action")
        return self.ac[key]

    def UpdateActionResult(self, request, context):
        self._note("UpdateActionResult", context)
        if not self.update_enabled:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "read-only")
        self.ac[(request.action_digest.hash, request.action_digest.size_bytes)] = request.action_result
        return request.action_result

    def FindMissingBlobs(self, request, context):
        self._note("FindMissingBlobs", context)
        missing = [d for d in request.blob_digests if (d.hash, d.size_bytes) not in self.blobs]
        return re_pb2.FindMissingBlobsResponse(missing_blob_digests=missing)

    def BatchUpdateBlobs(self, request, context):
        self._note(f"BatchUpdateBlobs:{len(request.requests)}", context)
        resp = re_pb2.BatchUpdateBlobsResponse()
        for r in request.requests:
            assert hashlib.sha256(r.data).hexdigest() == r.digest.hash
            self.blobs[(r.digest.hash, r.digest.size_bytes)] = r.data
            resp.responses.add(digest=r.digest)
        return resp

    def BatchReadBlobs(self, request, context):
        self._note(f"BatchReadBlobs:{len(request.digests)}", context)
        resp = re_pb2.BatchReadBlobsResponse()
        for d in request.digests:
            data = self._data((d.hash, d.size_bytes))
            r = resp.responses.add(digest=d)
            if data is None:
                r.status.code = 5
            else:
                r.data = data
        return resp

    def Read(self, request, context):
        self._note("Read", context)
        self.resources.append(request.resource_name)
        _, h, size = request.resource_name.rsplit("/", 2)
        data = self._data((h, int(size)))
        if data is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "no such blob")
        for off in range(0, len(data), 64 << 10):
            yield bs_pb2.ReadResponse(data=data[off : off + (64 << 10)])

    def Write(self, request_iterator, context):
        self._note("Write", context)
        parts = []
        name = None
        finished = False
        for req in request_iterator:
            if name is None:
                name = req.resource_name
                self.resources.append(name)
            assert req.write_offset == sum(len(p) for p in parts)
            parts.append(req.data)
            self.write_chunks.append(len(req.data))
            finished = req.finish_write
        assert finished
        data = b"".join(parts)
        _, h, size = name.rsplit("/", 2)
        assert hashlib.sha256(data).hexdigest() == h and len(data) == int(size)
        self.blobs[(h, int(size))] = data
        return bs_pb2.WriteResponse(committed_size=len(data))


@pytest.fixture
def fake():
    servicer = FakeServer()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    re_grpc.add_CapabilitiesServicer_to_server(servicer, server)
    re_grpc.add_ActionCacheServicer_to_server(servicer, server)
    re_grpc.add_ContentAddressableStorageServicer_to_server(servicer, server)
    bs_grpc.add_ByteStreamServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    servicer.url = f"grpc://127.0.0.1:{port}"
    yield servicer
    server.stop(grace=None)


def test_round_trips_and_metadata(fake, tmp_path):
    r = open_remote(fake.url, instance_name="main", headers={"Authorization": "Bearer tok"})
    try:
        key = os.urandom(32).hex()
        assert r.get_action_result(key) is None
        ar = re_pb2.ActionResult(exit_code=0, stdout_raw=b"hi")
        r.put_action_result(key, ar)
        assert r.get_action_result(key) == ar
        assert (key, ACTION_KEY_SIZE) in fake.ac
        small, big = os.urandom(1000), os.urandom(BYTESTREAM_THRESHOLD + 10)
        sb, bb = BlobRef.of_bytes(small), BlobRef.of_bytes(big)
        assert r.find_missing([sb, bb]) == {sb, bb}
        r.put_blob(sb, small)
        (tmp_path / "big").write_bytes(big)
        r.put_blob(bb, tmp_path / "big")
        assert r.find_missing([sb, bb]) == set()
        assert r.get_blob(sb, tmp_path / "s") and (tmp_path / "s").read_bytes() == small
        assert r.get_blob(bb, tmp_path / "b") and (tmp_path / "b").read_bytes() == big
        assert not r.get_blob(blob(7), tmp_path / "none") and not (tmp_path / "none").exists()
    finally:
        r.close()
    assert fake.calls[0] == "GetCapabilities" and fake.calls.count("GetCapabilities") == 1
    assert "BatchUpdateBlobs:1" in fake.calls and "Write" in fake.calls
    assert "BatchReadBlobs:1" in fake.calls and "Read" in fake.calls
    assert all(md.get("authorization") == "Bearer tok" for md in fake.metadata)
    w = [x for x in fake.resources if "/uploads/" in x]
    assert len(w) == 1 and w[0].startswith("main/uploads/") and w[0].endswith(f"/blobs/{bb.hash}/{bb.size}")
    assert f"main/blobs/{bb.hash}/{bb.size}" in fake.resources
    assert max(fake.write_chunks) <= 1 << 20  # streamed a piece at a time


def test_server_batch_limit_is_respected(fake, tmp_path):
    fake.max_batch = 5000  # usable: 5000 - 1 KiB of request overhead
    r = open_remote(fake.url)
    items = [(BlobRef.of_bytes(d), d) for d in (os.urandom(900) for _ in range(5))]
    big = os.urandom(3900)  # under 1 MiB, but over this server's batch limit
    items.append((BlobRef.of_bytes(big), big))
    r.put_blobs(items)
    batches = [c for c in fake.calls if c.startswith("BatchUpdate")]
    assert batches == ["BatchUpdateBlobs:3", "BatchUpdateBlobs:2"]
    assert fake.calls.count("Write") == 1
    got = r.get_blobs([(b, tmp_path / b.hash) for b, _ in items])
    assert all(got.values())
    assert fake.calls.count("Read") == 1
    r.close()


def test_blobs_over_the_server_size_cap_are_skipped(fake):
    fake.max_blob = 100
    r = open_remote(fake.url)
    small, big = os.urandom(100), os.urandom(101)
    r.put_blobs([(BlobRef.of_bytes(small), small), (BlobRef.of_bytes(big), big)])
    assert list(fake.blobs.values()) == [small]
    r.close()


def test_empty_blob_needs_no_network(fake, tmp_path):
    r = open_remote(fake.url)
    e = BlobRef.of_bytes(b"")
    assert r.find_missing([e]) == set()
    r.put_blob(e, b"")
    assert r.get_blob(e, tmp_path / "e") and (tmp_path / "e").read_bytes() == b""
    assert fake.calls == []
    r.close()


@pytest.mark.parametrize("size", [100, BYTESTREAM_THRESHOLD + 100], ids=["batch", "bytestream"])
def test_wrong_bytes_are_rejected(fake, tmp_path, size):
    data = os.urandom(size)
    b = BlobRef.of_bytes(data)
    fake.blobs[(b.hash, b.size)] = data
    fake.corrupt = True
    raw = open_remote(fake.url)
    with pytest.raises(CorruptBlob):
        raw.get_blob(b, tmp_path / "raw")
    assert not (tmp_path / "raw").exists()

    warnings: list[str] = []
    safe = SafeRemote(open_remote(fake.url), warnings.append)
    assert safe.get_blob(b, tmp_path / "x") is False
    assert safe.get_blob(b, tmp_path / "x") is False
    assert not (tmp_path / "x").exists()
    assert list(tmp_path.iterdir()) == []  # no temporary files either
    assert len(warnings) == 1 and "corrupted data" in warnings[0] and fake.url.split("//")[1] in warnings[0]
    assert safe.enabled  # a corrupt blob is a miss, not an outage
    fake.corrupt = False
    assert safe.get_blob(b, tmp_path / "x") and (tmp_path / "x").read_bytes() == data
    raw.close()
    safe.close()


def test_batch_with_one_corrupt_blob_keeps_the_others(fake, tmp_path):
    good, bad = os.urandom(50), os.urandom(60)
    gb, bb = BlobRef.of_bytes(good), BlobRef.of_bytes(bad)
    fake.blobs[(gb.hash, gb.size)] = good
    fake.blobs[(bb.hash, bb.size)] = bad[::-1]  # stored wrong
    warnings: list[str] = []
    safe = SafeRemote(open_remote(fake.url), warnings.append)
    got = safe.get_blobs([(gb, tmp_path / "g"), (bb, tmp_path / "b"), (blob(3), tmp_path / "m")])
    assert got == {gb: True, bb: False, blob(3): False}
    assert (tmp_path / "g").read_bytes() == good and not (tmp_path / "b").exists()
    assert len(warnings) == 1


def test_busy_server_is_retried_within_the_deadline(fake, tmp_path):
    r = open_remote(fake.url, timeout=5)
    r.server_info()
    data = os.urandom(BYTESTREAM_THRESHOLD + 1)
    b = BlobRef.of_bytes(data)
    fake.busy = 3
    r.put_blob(b, data)  # a ByteStream write, restarted from the first byte
    fake.busy = 3
    assert r.get_blob(b, tmp_path / "b")
    fake.busy = 2
    assert r.get_action_result(H) is None
    assert fake.calls.count("Write") == 4 and fake.calls.count("Read") == 4
    fake.busy = 10**6  # for good: gives up with the server's word, within the deadline
    r2 = open_remote(fake.url, timeout=0.5)
    t = time.monotonic()
    with pytest.raises(RemoteError, match="resource_exhausted"):
        r2.find_missing([blob(1)])
    assert time.monotonic() - t < 2.5  # the 0.5 s deadline, with room for a loaded machine
    r.close()
    r2.close()


def test_no_sha256_is_an_error(fake):
    fake.digest_functions = [re_pb2.DigestFunction.SHA1]
    r = open_remote(fake.url)
    with pytest.raises(RemoteError, match="SHA-256"):
        r.find_missing([blob(1)])
    r.close()


def test_read_only_cache(fake):
    fake.update_enabled = False
    r = open_remote(fake.url)
    with pytest.raises(UpdatesDisabled):
        r.put_action_result(H, re_pb2.ActionResult())
    assert "UpdateActionResult" not in fake.calls  # known from the capabilities
    warnings: list[str] = []
    safe = SafeRemote(r, warnings.append)
    safe.put_action_result(H, re_pb2.ActionResult())
    safe.put_action_result(H, re_pb2.ActionResult())
    assert len(warnings) == 1 and "read-only" in warnings[0]
    assert safe.enabled and safe.get_action_result(H) is None  # reads go on
    safe.close()


def test_permission_denied_on_update_means_read_only(fake):
    r = open_remote(fake.url)
    r.server_info()
    fake.update_enabled = False  # the capabilities said yes, the call says no
    with pytest.raises(UpdatesDisabled, match="permission_denied"):
        r.put_action_result(H, re_pb2.ActionResult())
    r.close()


def test_bad_action_key():
    r = open_remote("grpc://127.0.0.1:1")
    with pytest.raises(ValueError):
        r.get_action_result("not-hex")
    r.close()
