"""FileSend: exports streamed back by the daemon (tarballs, and the `local` exporter's fsutil packets)."""

from __future__ import annotations

import io
import os
import queue
import tarfile
import time
import stat
from pathlib import Path

import grpc
import pytest

from buildkit.filesend import _CANCEL_GRACE_LONG, FileSendServicer
from buildkit.fswalk import MODE_DIR, MODE_SYMLINK, to_stat, walk
from buildkit.proto import filesync_pb2, fsutil_pb2

P = fsutil_pb2.Packet
METHOD = "/moby.filesync.v1.FileSend/DiffCopy"




def tar_bytes(size: int = 300_000) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = os.urandom(size)
        info = tarfile.TarInfo("blob")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def split(data: bytes, n: int = 100_000) -> list[bytes]:
    return [data[i : i + n] for i in range(0, len(data), n)]


def send_tar(channel, chunks, metadata=()):
    call = channel.stream_stream(METHOD, request_serializer=filesync_pb2.BytesMessage.SerializeToString,
                                 response_deserializer=filesync_pb2.BytesMessage.FromString)
    return list(call((filesync_pb2.BytesMessage(data=c) for c in chunks), metadata=list(metadata), timeout=10))


def test_tar_is_written_atomically(tmp_path, serve):
    out = tmp_path / "out" / "image.tar"
    svc = FileSendServicer({1: ("oci", out), 2: ("tar", tmp_path / "other.tar")})
    channel = serve(svc)
    data = tar_bytes()
    t = time.monotonic()
    assert send_tar(channel, split(data), [("buildkit-attachable-exporter-id", "1")]) == []
    assert time.monotonic() - t < _CANCEL_GRACE_LONG  # a complete tar stream needs only the short cancel check
    assert out.read_bytes() == data
    assert not (tmp_path / "other.tar").exists()
    assert sorted(p.name for p in out.parent.iterdir()) == ["image.tar"]  # no temp file left
    assert svc.bytes_received[1] == len(data) and svc.completed[1] == out
    with tarfile.open(out) as tar:
        assert tar.getnames() == ["blob"]


def test_cancelled_tar_leaves_nothing(tmp_path, serve):
    out = tmp_path / "image.tar"
    svc = FileSendServicer({0: ("docker", out)})
    channel = serve(svc)
    call = channel.stream_stream(METHOD, request_serializer=filesync_pb2.BytesMessage.SerializeToString,
                                 response_deserializer=filesync_pb2.BytesMessage.FromString)

    def chunks():
        yield filesync_pb2.BytesMessage(data=b"x" * 1000)
        # Go away only once the handler holds a partial file, so that there is one to clean up.
        for _ in range(500):
            if svc.bytes_received.get(0):
                break
            time.sleep(0.01)
        partial.extend(p.name for p in tmp_path.iterdir() if p.suffix == ".part")
        raise RuntimeError("daemon went away")

    partial: list[str] = []
    with pytest.raises(grpc.RpcError):
        list(call(chunks(), metadata=[("buildkit-attachable-exporter-id", "0")], timeout=10))
    for _ in range(100):
        if not list(tmp_path.iterdir()):
            break
        time.sleep(0.05)
    assert partial, "the handler never held a partial file: nothing was tested"
    assert list(tmp_path.iterdir()) == []


def test_exporter_id_absent_or_unknown(tmp_path, serve):
    out = tmp_path / "a.tar"
    channel = serve(FileSendServicer({3: ("tar", out)}))
    data = tar_bytes(10)
    send_tar(channel, [data])  # 0.8-era daemon: no id, a single target
    assert out.read_bytes() == data
    with pytest.raises(grpc.RpcError) as info:
        send_tar(channel, [data], [("buildkit-attachable-exporter-id", "7")])
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_rejects_non_streaming_exporters():
    with pytest.raises(ValueError):
        FileSendServicer({0: ("image", None)})


def play_local_sender(channel, src: Path, metadata=(("buildkit-attachable-exporter-id", "0"),)):
    """Plays the daemon's fsutil sender over FileSend: STATs, DATA on REQ, FIN for FIN."""
    entries = list(walk(src))
    stats = [to_stat(e) for e in entries]
    out: queue.Queue = queue.Queue()
    for st in stats:
        out.put(P(type=fsutil_pb2.PACKET_STAT, stat=st))
    out.put(P(type=fsutil_pb2.PACKET_STAT))

    requests = iter(out.get, None)  # the queued packets, up to a None

    call = channel.stream_stream(METHOD, request_serializer=P.SerializeToString, response_deserializer=P.FromString)
    requested = []
    got_fin = False
    try:
        for p in call(requests, metadata=list(metadata), timeout=10):
            if p.type == fsutil_pb2.PACKET_REQ:
                requested.append(p.ID)
                data = (src / stats[p.ID].path).read_bytes()
                for i in range(0, len(data), 7):  # small chunks, to exercise reassembly
                    out.put(P(type=fsutil_pb2.PACKET_DATA, ID=p.ID, data=data[i : i + 7]))
                out.put(P(type=fsutil_pb2.PACKET_DATA, ID=p.ID))
            elif p.type == fsutil_pb2.PACKET_FIN:
                got_fin = True
                out.put(P(type=fsutil_pb2.PACKET_FIN))
    finally:
        out.put(None)
    return stats, requested, got_fin


def test_local_export_writes_tree(tmp_path, serve):
    src = tmp_path / "src"
    (src / "bin").mkdir(parents=True)
    (src / "bin" / "tool").write_text("#!/bin/sh\necho tool\n")
    (src / "bin" / "tool").chmod(0o755)
    (src / "data.txt").write_text("some data that spans several chunks\n" * 3)
    (src / "empty").write_bytes(b"")
    (src / "link").symlink_to("data.txt")
    os.link(src / "data.txt", src / "hard")
    (src / "ro").mkdir()
    (src / "ro" / "f").write_text("inside read-only dir")
    (src / "ro").chmod(0o555)
    os.utime(src / "data.txt", ns=(1_000_000_000, 1_000_000_000))
    dest = tmp_path / "dest"
    (dest / "data.txt").parent.mkdir(parents=True)
    (dest / "data.txt").write_text("old content")  # merge: replaced
    (dest / "keep-me").write_text("untouched")  # merge: kept
    svc = FileSendServicer({0: ("local", dest)})
    channel = serve(svc)
    try:
        stats, requested, got_fin = play_local_sender(channel, src)
        assert got_fin
        by_id = {i: s.path for i, s in enumerate(stats)}
        assert sorted(by_id[i] for i in requested) == ["bin/tool", "data.txt", "ro/f"]  # not: empty, hard link
        assert (dest / "bin" / "tool").read_text() == "#!/bin/sh\necho tool\n"
        assert stat.S_IMODE((dest / "bin" / "tool").stat().st_mode) == 0o755
        assert (dest / "data.txt").read_text() == (src / "data.txt").read_text()
        assert (dest / "data.txt").stat().st_mtime_ns == 1_000_000_000
        assert (dest / "empty").read_bytes() == b""
        assert os.readlink(dest / "link") == "data.txt"
        assert (dest / "hard").stat().st_ino == (dest / "data.txt").stat().st_ino
        assert (dest / "ro" / "f").read_text() == "inside read-only dir"
        assert stat.S_IMODE((dest / "ro").stat().st_mode) == 0o555
        assert (dest / "keep-me").read_text() == "untouched"
        assert svc.completed[0] == dest
    finally:
        (src / "ro").chmod(0o755)
        if (dest / "ro").exists():
            (dest / "ro").chmod(0o755)


def test_local_export_rejects_escaping_paths(tmp_path, serve):
    dest = tmp_path / "dest"
    channel = serve(FileSendServicer({0: ("local", dest)}))
    call = channel.stream_stream(METHOD, request_serializer=P.SerializeToString, response_deserializer=P.FromString)
    pkts = [P(type=fsutil_pb2.PACKET_STAT, stat=fsutil_pb2.Stat(path="../evil", mode=0o644, size=1))]
    with pytest.raises(grpc.RpcError) as info:
        list(call(iter(pkts), timeout=10))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert not (tmp_path / "evil").exists()
    # a symlink inside the export must not be written through
    pkts = [
        P(type=fsutil_pb2.PACKET_STAT, stat=fsutil_pb2.Stat(path="l", mode=MODE_SYMLINK | 0o777, linkname=str(tmp_path))),
        P(type=fsutil_pb2.PACKET_STAT, stat=fsutil_pb2.Stat(path="l/evil2", mode=0o644, size=0)),
    ]
    with pytest.raises(grpc.RpcError):
        list(call(iter(pkts), timeout=10))
    assert not (tmp_path / "evil2").exists()


def test_local_export_directory_modes(tmp_path, serve):
    dest = tmp_path / "dest"
    channel = serve(FileSendServicer({0: ("local", dest)}))
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d").chmod(0o750)
    stats, requested, got_fin = play_local_sender(channel, src, metadata=())
    assert got_fin and requested == []
    assert stats[0].mode == MODE_DIR | 0o750
    assert stat.S_IMODE((dest / "d").stat().st_mode) == 0o750
