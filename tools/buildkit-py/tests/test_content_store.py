"""The session's content store (local cache directories): index tags and the
containerd Write/Read protocol, against an in-process gRPC server."""

from __future__ import annotations

import hashlib
import json

import grpc
import pytest

from buildkit.content import STORE_HEADER, ContentStoreService, read_tag, store_id, write_tag
from buildkit.proto import content_pb2, content_pb2_grpc


def test_tags_in_index_json_replace_only_their_own_entry(tmp_path):
    write_tag(tmp_path, "a", {"mediaType": "x", "digest": "sha256:" + "1" * 64, "size": 1})
    write_tag(tmp_path, "b", {"mediaType": "x", "digest": "sha256:" + "2" * 64, "size": 2})
    write_tag(tmp_path, "a", {"mediaType": "x", "digest": "sha256:" + "3" * 64, "size": 3})
    assert read_tag(tmp_path, "a") == "sha256:" + "3" * 64
    assert read_tag(tmp_path, "b") == "sha256:" + "2" * 64
    assert read_tag(tmp_path, "c") is None
    assert len(json.loads((tmp_path / "index.json").read_text())["manifests"]) == 2


def test_write_then_read_and_info_through_grpc(tmp_path, serve):
    root = tmp_path / "store"
    channel = serve(ContentStoreService({store_id(root): root}))
    stub = content_pb2_grpc.ContentStub(channel)
    md = ((STORE_HEADER, store_id(root)),)
    data = b"layer bytes " * 1000
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    reqs = [content_pb2.WriteContentRequest(action=content_pb2.STAT, ref="r", total=len(data), expected=digest),
            content_pb2.WriteContentRequest(action=content_pb2.WRITE, ref="r", offset=0, data=data[:5000]),
            content_pb2.WriteContentRequest(action=content_pb2.COMMIT, ref="r", offset=5000, data=data[5000:],
                                            total=len(data), expected=digest)]
    answers = list(stub.Write(iter(reqs), metadata=md))
    assert [a.action for a in answers] == [content_pb2.STAT, content_pb2.WRITE, content_pb2.COMMIT]
    assert answers[-1].digest == digest and answers[1].offset == 5000
    assert stub.Info(content_pb2.InfoRequest(digest=digest), metadata=md).info.size == len(data)
    assert b"".join(r.data for r in stub.Read(content_pb2.ReadContentRequest(digest=digest), metadata=md)) == data
    with pytest.raises(grpc.RpcError) as info:  # written once: a second write is refused
        list(stub.Write(iter(reqs[:1]), metadata=md))
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
    bad = [content_pb2.WriteContentRequest(action=content_pb2.COMMIT, ref="x", data=b"other",
                                           expected="sha256:" + "0" * 64)]
    with pytest.raises(grpc.RpcError) as info:  # wrong bytes never land under a digest
        list(stub.Write(iter(bad), metadata=md))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert not (root / "blobs" / "sha256" / ("0" * 64)).exists()


def test_many_writes_at_once_all_land_and_leave_no_temp_file(tmp_path, serve):
    """BuildKit's exporter writes a cache's blobs at once; none may trip over another's temp file."""
    from concurrent.futures import ThreadPoolExecutor

    root = tmp_path / "store"
    channel = serve(ContentStoreService({store_id(root): root}))
    stub = content_pb2_grpc.ContentStub(channel)
    md = ((STORE_HEADER, store_id(root)),)

    def write(i):
        data = f"blob {i}".encode()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        req = content_pb2.WriteContentRequest(action=content_pb2.COMMIT, ref=f"r{i}", data=data,
                                              total=len(data), expected=digest)
        return list(stub.Write(iter([req]), metadata=md))[-1].digest == digest

    with ThreadPoolExecutor(32) as pool:
        assert all(pool.map(write, range(400)))
    assert len(list((root / "blobs" / "sha256").iterdir())) == 400
    assert [p.name for p in root.iterdir()] == ["blobs"]  # no temp file left behind
