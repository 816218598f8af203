"""Remote cache basics: URLs, blob refs, verified streaming (mbuild.cache.remote.base)."""

from __future__ import annotations

import hashlib
import os

import pytest

from mbuild.cache.remote import (
    BlobRef,
    CorruptBlob,
    SourceMismatch,
    TlsConfig,
    open_remote,
    parse_remote_url,
)
from mbuild.cache.remote.base import EMPTY_SHA256, BlobSink, Deadline, Limits, RemoteTimeout, verified_chunks
from mbuild.cache.remote.http import HttpCache
from mbuild.cache.remote.reapi import ReapiCache

# ---------------------------------------------------------------- URLs


def test_parse_grpc_url():
    a = parse_remote_url("grpc://127.0.0.1:50051")
    assert (a.scheme, a.host, a.port, a.instance_name, a.secure, a.is_grpc) == (
        "grpc", "127.0.0.1", 50051, "", False, True,
    )
    assert a.hostport == "127.0.0.1:50051"
    assert a.display() == "grpc://127.0.0.1:50051"


def test_parse_grpcs_default_port_and_instance_from_path():
    a = parse_remote_url("grpcs://cache.example.com/main/ci")
    assert (a.port, a.secure, a.instance_name) == (443, True, "main/ci")
    assert a.display() == "grpcs://cache.example.com:443/main/ci"


def test_instance_name_argument_and_path_must_agree():
    assert parse_remote_url("grpc://h:1", "inst").instance_name == "inst"
    assert parse_remote_url("grpc://h:1/inst", "inst").instance_name == "inst"
    with pytest.raises(ValueError, match="names instance"):
        parse_remote_url("grpc://h:1/a", "b")
    with pytest.raises(ValueError, match="grpc:// remote caches only"):
        parse_remote_url("http://h:1/", "b")


def test_parse_http_url_with_prefix_and_credentials():
    a = parse_remote_url("http://alice:s%40cret@127.0.0.1:8089/team/cache")
    assert (a.host, a.port, a.path) == ("127.0.0.1", 8089, "/team/cache/")
    assert (a.username, a.password) == ("alice", "s@cret")
    assert a.display() == "http://127.0.0.1:8089/team/cache/"  # no credentials in messages
    assert parse_remote_url("https://h").port == 443
    assert parse_remote_url("http://h").path == "/"
    assert parse_remote_url("http://[::1]:80/").hostport == "[::1]:80"


@pytest.mark.parametrize(
    "url, message",
    [
        ("ftp://h/", "scheme must be"),
        ("h:50051", "scheme must be"),
        ("grpc://:50051", "no host"),
        ("http://h:99999/", "bad port"),
        ("http://h/?x=1", "no query"),
    ],
)
def test_bad_urls(url, message):
    with pytest.raises(ValueError, match=message):
        parse_remote_url(url)


def test_open_remote_dispatches_on_scheme():
    r = open_remote("grpc://127.0.0.1:1", timeout=5)
    assert isinstance(r, ReapiCache) and r.name == "grpc://127.0.0.1:1"
    assert r.connect_timeout == 2.0 and r.timeout == 5
    r.close()
    h = open_remote("http://u:p@127.0.0.1:1/x", headers={"X-Team": "a"}, timeout=1.5)
    assert isinstance(h, HttpCache) and h.name == "http://127.0.0.1:1/x/"
    assert h.connect_timeout == 1.5
    assert h._headers["Authorization"] == "Basic dTpw"
    assert h._headers["X-Team"] == "a"
    assert h.url_path("cas", "ab" * 32) == "/x/cas/" + "ab" * 32
    h.close()


def test_open_remote_rejects_tls_for_plain_text_and_bad_timeout():
    with pytest.raises(ValueError, match="TLS options"):
        open_remote("http://h/", tls=TlsConfig(ca_cert="/x"))
    with pytest.raises(ValueError, match="timeout"):
        open_remote("http://h/", timeout=0)
    with pytest.raises(ValueError, match="both"):
        TlsConfig(client_cert="/c")


def test_grpc_credentials_in_url_become_basic_auth_metadata():
    r = open_remote("grpc://u:p@127.0.0.1:1", headers={"X-Extra": "1"})
    assert ("authorization", "Basic dTpw") in r._metadata
    assert ("x-extra", "1") in r._metadata  # gRPC metadata keys are lowercase
    r.close()
    r = open_remote("grpc://u:p@127.0.0.1:1", headers={"Authorization": "Bearer t"})
    assert r._metadata == (("authorization", "Bearer t"),)  # an explicit header wins
    r.close()


# ---------------------------------------------------------------- blob refs


def test_blobref():
    b = BlobRef.of_bytes(b"abc")
    assert b == BlobRef(hashlib.sha256(b"abc").hexdigest(), 3)
    assert str(b).endswith("/3")
    assert BlobRef(EMPTY_SHA256, 0).is_empty and not b.is_empty
    with pytest.raises(ValueError):
        BlobRef("ABC", 1)
    with pytest.raises(ValueError):
        BlobRef("a" * 64, -1)


def test_blobref_of_file(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(os.urandom(3 << 20 | 5))
    assert BlobRef.of_file(p) == BlobRef.of_bytes(p.read_bytes())


# ---------------------------------------------------------------- streaming


def test_verified_chunks_from_file_holds_back_the_last_piece(tmp_path):
    data = os.urandom(10_000)
    p = tmp_path / "f"
    p.write_bytes(data)
    good = BlobRef.of_bytes(data)
    pieces = list(verified_chunks(good, p, chunk=4096))
    assert b"".join(d for d, _ in pieces) == data
    assert [last for _, last in pieces] == [False, False, True]

    bad = BlobRef(hashlib.sha256(b"x").hexdigest(), len(data))
    got = []
    with pytest.raises(SourceMismatch):
        for d, last in verified_chunks(bad, p, chunk=4096):
            got.append(last)
    assert got == [False, False]  # the last piece never left


def test_verified_chunks_size_checks(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"abcdef")
    with pytest.raises(SourceMismatch):
        list(verified_chunks(BlobRef.of_bytes(b"abc"), p, chunk=2))  # file grew
    with pytest.raises(SourceMismatch):
        list(verified_chunks(BlobRef.of_bytes(b"abcdefg"), p, chunk=2))  # file shrank
    with pytest.raises(SourceMismatch):
        list(verified_chunks(BlobRef.of_bytes(b"abc"), b"abd"))
    assert list(verified_chunks(BlobRef.of_bytes(b""), b"")) == [(b"", True)]
    empty = tmp_path / "e"
    empty.write_bytes(b"")
    assert list(verified_chunks(BlobRef.of_bytes(b""), empty)) == [(b"", True)]


def test_blob_sink_is_atomic(tmp_path):
    data = b"hello world"
    blob = BlobRef.of_bytes(data)
    dest = tmp_path / "sub" / "out"
    with BlobSink(blob, dest) as sink:
        sink.write(data[:5])
        assert not dest.exists()
        sink.write(data[5:])
        sink.commit()
    assert dest.read_bytes() == data

    dest2 = tmp_path / "bad"
    with pytest.raises(CorruptBlob):
        with BlobSink(blob, dest2) as sink:
            sink.write(b"hello WORLD")
            sink.commit()
    with pytest.raises(CorruptBlob):
        with BlobSink(blob, dest2) as sink:
            sink.write(data + b"!")  # too long: refused while receiving
    assert not dest2.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub"]  # no temporary files left
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["out"]


def test_blob_sink_never_replaces_an_existing_file_with_wrong_bytes(tmp_path):
    dest = tmp_path / "out"
    dest.write_bytes(b"previous")
    with pytest.raises(CorruptBlob):
        with BlobSink(BlobRef.of_bytes(b"new"), dest) as sink:
            sink.write(b"old")
            sink.commit()
    assert dest.read_bytes() == b"previous"


def test_deadline_and_limits():
    limits = Limits(10, 1 << 20)
    assert limits.deadline().seconds == 10
    assert limits.deadline(5 << 20).seconds == 15  # the bytes at the floor rate on top
    assert Limits(1.5).connect_timeout == 1.5 and Limits(30).connect_timeout == 2.0
    for bad in ({"timeout": 0}, {"timeout": -1}, {"min_rate": 0}):
        with pytest.raises(ValueError, match="must be positive"):
            Limits(**bad)
    d = Deadline(0)
    with pytest.raises(RemoteTimeout, match="within 0 s"):
        d.left()
    assert Deadline(5).left() > 4
    phase = Deadline(5).within(1)
    assert phase.seconds == 1 and phase.left() <= 1  # the sooner of the two
    assert Deadline(1).within(5).left() <= 1
