"""The fsutil-order walker and the FileSync sender, with a test client playing the daemon."""

from __future__ import annotations

import os
import queue
import shutil
import stat
import tempfile
import threading
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from buildkit.filesync import CHUNK_SIZE, FileSyncServicer, LocalDir, decode_metadata
from buildkit.fswalk import (
    MODE_DIR,
    MODE_NAMED_PIPE,
    MODE_SETUID,
    MODE_SYMLINK,
    go_mode,
    resolve_follow_paths,
    to_stat,
    walk,
)
from buildkit.proto import filesync_pb2_grpc, fsutil_pb2

P = fsutil_pb2.Packet


def paths(root, **kw) -> list[str]:
    return [e.path for e in walk(root, **kw)]


def make_tree(root: Path) -> Path:
    (root / "a" / "b").mkdir(parents=True)
    (root / "a-c").mkdir()
    (root / "a" / "b" / "f.txt").write_text("f\n")
    (root / "a-c" / "g.txt").write_text("g\n")
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "run.sh").chmod(0o755)
    (root / ".env").write_text("SECRET=1\n")
    (root / ".envrc").write_text("use nix\n")
    (root / "link").symlink_to("run.sh")
    (root / "node_modules" / "pkg").mkdir(parents=True)
    (root / "node_modules" / "pkg" / "index.js").write_text("x")
    (root / "web" / "node_modules" / "dep").mkdir(parents=True)
    (root / "web" / "node_modules" / "dep" / "a.js").write_text("y")
    (root / "web" / "app.js").write_text("app")
    (root / "big.bin").write_bytes(os.urandom(3 * CHUNK_SIZE + 123))
    (root / "empty").write_bytes(b"")
    return root


# ------------------------------------------------------------------- walker


def test_walk_order_is_go_walkdir_order(tmp_path):
    make_tree(tmp_path)
    assert paths(tmp_path) == [
        ".env", ".envrc", "a", "a/b", "a/b/f.txt", "a-c", "a-c/g.txt", "big.bin", "empty", "link",
        "node_modules", "node_modules/pkg", "node_modules/pkg/index.js", "run.sh",
        "web", "web/app.js", "web/node_modules", "web/node_modules/dep", "web/node_modules/dep/a.js",
    ]


def test_walk_sorts_by_bytes(tmp_path):
    for name in ["b", "B", "a_", "a-", "é", "z"]:
        (tmp_path / name).write_text("")
    assert paths(tmp_path) == sorted(["b", "B", "a_", "a-", "é", "z"], key=os.fsencode)
    assert paths(tmp_path) == ["B", "a-", "a_", "b", "z", "é"]


def test_go_modes(tmp_path):
    make_tree(tmp_path)
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "suid").write_text("")
    (tmp_path / "suid").chmod(0o4755)
    stats = {e.path: to_stat(e) for e in walk(tmp_path)}
    assert stats["a"].mode == MODE_DIR | 0o755
    assert stats["a"].size == 0
    assert stats["link"].mode == MODE_SYMLINK | 0o777
    assert stats["link"].linkname == "run.sh"
    assert stats["link"].size == len("run.sh")
    assert stats["run.sh"].mode == 0o755
    assert stats["run.sh"].size == len("#!/bin/sh\necho hi\n")
    assert stats["fifo"].mode & ~0o777 == MODE_NAMED_PIPE
    assert stats["suid"].mode == MODE_SETUID | 0o755
    st = stats["run.sh"]
    assert (st.uid, st.gid) == (0, 0)
    assert st.modTime == (tmp_path / "run.sh").lstat().st_mtime_ns
    assert go_mode(stat.S_IFDIR | 0o700) == (1 << 31) | 0o700
    assert go_mode(stat.S_IFCHR | 0o600) == (1 << 26) | (1 << 21) | 0o600


def test_sockets_are_skipped(tmp_path):
    import socket

    short = Path(tempfile.mkdtemp(prefix="mb-"))
    try:
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(short / "sock"))
        (short / "file").write_text("")
        assert paths(short) == ["file"]
        s.close()
    finally:
        shutil.rmtree(short)


def test_hardlinks(tmp_path):
    (tmp_path / "a.txt").write_text("data")
    os.link(tmp_path / "a.txt", tmp_path / "b.txt")
    entries = {e.path: e for e in walk(tmp_path)}
    assert entries["a.txt"].linkname == ""
    assert entries["b.txt"].linkname == "a.txt"
    st = to_stat(entries["b.txt"])
    assert st.size == 0 and st.mode == 0o644 and st.linkname == "a.txt"
    # The first *sent* path is the link target: excluding a.txt makes b.txt the original.
    entries = {e.path: e for e in walk(tmp_path, exclude=["a.txt"])}
    assert entries["b.txt"].linkname == ""


def test_excluded_directories_are_pruned(tmp_path, monkeypatch):
    make_tree(tmp_path)
    listed = []
    import buildkit.fswalk as fswalk

    real = fswalk._listdir
    monkeypatch.setattr(fswalk, "_listdir", lambda p: listed.append(os.path.relpath(p, tmp_path)) or real(p))
    got = paths(tmp_path, exclude=["**/node_modules", ".env", "a"])
    assert got == [".envrc", "a-c", "a-c/g.txt", "big.bin", "empty", "link", "run.sh", "web", "web/app.js"]
    assert "node_modules" not in listed and "web/node_modules" not in listed and "a" not in listed


def test_exception_reenters_excluded_directory(tmp_path):
    make_tree(tmp_path)
    got = paths(tmp_path, exclude=["node_modules", "!node_modules/pkg/index.js", "web"])
    assert "node_modules" in got and "node_modules/pkg" in got and "node_modules/pkg/index.js" in got
    assert not any(p.startswith("web") for p in got)
    # parents come before children even though they were held back
    assert got.index("node_modules") < got.index("node_modules/pkg") < got.index("node_modules/pkg/index.js")
    # an excluded directory with nothing re-included inside is not sent at all
    got = paths(tmp_path, exclude=["node_modules", "!node_modules/nothing-here"])
    assert not any(p.startswith("node_modules") for p in got)


def test_env_but_not_envrc(tmp_path):
    make_tree(tmp_path)
    got = paths(tmp_path, exclude=[".env"])
    assert ".env" not in got and ".envrc" in got


def test_include_patterns_keep_parents(tmp_path):
    make_tree(tmp_path)
    assert paths(tmp_path, include=["a/b/f.txt", "web/node_modules"]) == [
        "a", "a/b", "a/b/f.txt", "web", "web/node_modules", "web/node_modules/dep", "web/node_modules/dep/a.js"]
    assert paths(tmp_path, include=["*.sh"]) == ["run.sh"]
    assert paths(tmp_path, include=["a"], exclude=["a/b/f.txt"]) == ["a", "a/b"]


def test_follow_paths(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "Dockerfile").write_text("FROM x\n")
    (tmp_path / "Dockerfile").symlink_to("real/Dockerfile")
    (tmp_path / "other").write_text("")
    assert resolve_follow_paths(tmp_path, ["Dockerfile"]) == ["Dockerfile", "real/Dockerfile"]
    assert paths(tmp_path, follow_paths=["Dockerfile"]) == ["Dockerfile", "real", "real/Dockerfile"]
    (tmp_path / "abs").symlink_to("/real/Dockerfile")  # absolute: relative to the root
    assert resolve_follow_paths(tmp_path, ["abs"]) == ["abs", "real/Dockerfile"]
    (tmp_path / "loop1").symlink_to("loop2")
    (tmp_path / "loop2").symlink_to("loop1")
    assert resolve_follow_paths(tmp_path, ["loop1"]) == ["loop1", "loop2"]


def test_several_filters_all_apply(tmp_path):
    from buildkit.fswalk import Filter

    make_tree(tmp_path)
    got = paths(tmp_path, exclude=["*.env", "!.env"], filters=[Filter(exclude=[".env"])])
    assert ".env" not in got  # the second filter's exclude is not undone by the first's exception


# ------------------------------------------------------- FileSync round trip




class Daemon:
    """Plays BuildKit's receiver: REQ every regular file, collect DATA, then FIN."""

    def __init__(self, channel: grpc.Channel, metadata):
        self.stats: list[fsutil_pb2.Stat] = []
        self.data: dict[int, bytearray] = {}
        self.chunks: list[int] = []
        self.fin = False
        self.stat_ids_at_first_data: int | None = None
        out: queue.Queue = queue.Queue()

        requests = iter(out.get, None)  # the queued packets, up to a None

        self.out = out
        self.call = filesync_pb2_grpc.FileSyncStub(channel).DiffCopy(requests, metadata=metadata, timeout=30)

    def run(self) -> "Daemon":
        pending: set[int] = set()
        walk_done = False
        try:
            for p in self.call:
                if p.type == fsutil_pb2.PACKET_STAT:
                    if not p.HasField("stat"):
                        walk_done = True
                    else:
                        i = len(self.stats)
                        self.stats.append(p.stat)
                        if p.stat.mode & 0xFFF80000 == 0 and not p.stat.linkname:
                            pending.add(i)
                            self.out.put(P(type=fsutil_pb2.PACKET_REQ, ID=i))
                elif p.type == fsutil_pb2.PACKET_DATA:
                    assert p.ID in pending
                    if p.data:
                        if self.stat_ids_at_first_data is None:
                            self.stat_ids_at_first_data = len(self.stats)
                        assert len(p.data) <= CHUNK_SIZE
                        self.chunks.append(len(p.data))
                        self.data.setdefault(p.ID, bytearray()).extend(p.data)
                    else:
                        self.data.setdefault(p.ID, bytearray())
                        pending.discard(p.ID)
                elif p.type == fsutil_pb2.PACKET_FIN:
                    self.fin = True
                elif p.type == fsutil_pb2.PACKET_ERR:
                    raise AssertionError(p.data)
                if walk_done and not pending and not self.fin and p.type != fsutil_pb2.PACKET_FIN:
                    if not getattr(self, "_fin_sent", False):
                        self._fin_sent = True
                        self.out.put(P(type=fsutil_pb2.PACKET_FIN))
        finally:
            self.out.put(None)
        return self

    def rebuild(self, dest: Path) -> None:
        for i, st in enumerate(self.stats):
            target = dest / st.path
            if st.mode & MODE_DIR:
                target.mkdir()
            elif st.mode & MODE_SYMLINK:
                target.symlink_to(st.linkname)
            elif st.linkname:
                os.link(dest / st.linkname, target)
            else:
                target.write_bytes(bytes(self.data[i]))
                target.chmod(st.mode & 0o7777)


def test_round_trip(tmp_path, serve):
    src = make_tree(tmp_path / "src")
    (src / "h1").write_text("hard")
    os.link(src / "h1", src / "h2")
    (src / ".dockerignore").write_text("# local ignores\nweb/node_modules\n")
    servicer = FileSyncServicer({"context": LocalDir.with_dockerignore(src)})
    channel = serve(servicer)
    md = [("dir-name", "context"), ("exclude-patterns", ".env"), ("exclude-patterns", "node_modules"),
          ("exclude-patterns", "!node_modules/pkg/index.js")]
    daemon = Daemon(channel, md).run()
    assert daemon.fin
    sent = [s.path for s in daemon.stats]
    assert ".env" not in sent and ".envrc" in sent
    assert "web/node_modules" not in sent and "web/app.js" in sent  # the LocalDir's .dockerignore
    assert "node_modules/pkg/index.js" in sent  # the daemon's exception
    dest = tmp_path / "dest"
    dest.mkdir()
    daemon.rebuild(dest)
    for p in sent:
        s, d = src / p, dest / p
        if s.is_symlink():
            assert os.readlink(d) == os.readlink(s)
        elif s.is_file():
            assert d.read_bytes() == s.read_bytes(), p
            assert stat.S_IMODE(d.stat().st_mode) == stat.S_IMODE(s.stat().st_mode)
    assert os.access(dest / "run.sh", os.X_OK)
    by_path = {s.path: s for s in daemon.stats}
    assert by_path["h2"].linkname == "h1" and by_path["h2"].size == 0
    assert (dest / "h2").stat().st_ino == (dest / "h1").stat().st_ino
    # progress counters
    t = servicer.transfers[-1]
    assert t.done and t.error is None
    assert t.entries == len(daemon.stats)
    regular = [i for i, s in enumerate(daemon.stats) if s.mode & 0xFFF80000 == 0 and not s.linkname]
    assert t.files == len(regular)
    assert t.bytes == sum(len(daemon.data[i]) for i in regular) == servicer.bytes_sent


def test_round_trip_encoded_metadata_and_includes(tmp_path, serve):
    src = tmp_path / "src"
    src.mkdir()
    (src / "café.txt").write_text("x")
    (src / "tea.txt").write_text("y")
    (src / "sub").mkdir()
    (src / "sub" / "keep").write_text("z")
    channel = serve(FileSyncServicer({"ctx": LocalDir(src)}))
    from urllib.parse import quote_plus

    md = [("dir-name", "ctx"), ("exclude-patterns", quote_plus("café.txt")), ("exclude-patterns-encoded", "1"),
          ("include-patterns", "*.txt"), ("include-patterns", "sub/keep")]
    daemon = Daemon(channel, md).run()
    assert [s.path for s in daemon.stats] == ["sub", "sub/keep", "tea.txt"]


def test_large_files_stream_in_chunks_and_interleave_with_stats(tmp_path, serve, monkeypatch):
    import time

    import buildkit.filesync as filesync

    src = tmp_path / "src"
    src.mkdir()
    (src / "0big").write_bytes(os.urandom(40 * CHUNK_SIZE))
    for i in range(1000):
        (src / f"f{i:04d}").write_text(str(i))
    served = threading.Event()
    real_walk = filesync.walk

    def slow_walk(*args, **kw):
        # a walk that stalls after two entries until the first file's data went out
        for n, entry in enumerate(real_walk(*args, **kw)):
            if n == 1:
                time.sleep(0.1)  # lets the first partial batch of STATs go
            if n == 2:
                served.wait(10)
            yield entry

    monkeypatch.setattr(filesync, "walk", slow_walk)
    servicer = FileSyncServicer({"ctx": LocalDir(src)})
    channel = serve(servicer)
    daemon = Daemon(channel, [("dir-name", "ctx")])
    original = daemon.chunks

    class Watch(list):
        def append(self, n):
            served.set()
            super().append(n)

    daemon.chunks = Watch(original)
    daemon.run()
    assert bytes(daemon.data[0]) == (src / "0big").read_bytes()
    assert max(daemon.chunks) == CHUNK_SIZE
    assert len(daemon.stats) == 1001
    # REQs were answered while the walk was still going
    assert daemon.stat_ids_at_first_data in (1, 2)  # 1 when a stall sent STAT 0 alone


def test_unknown_dir_is_not_found(tmp_path, serve):
    channel = serve(FileSyncServicer({"ctx": LocalDir(tmp_path)}))
    with pytest.raises(grpc.RpcError) as info:
        Daemon(channel, [("dir-name", "nope")]).run()
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_err_from_receiver_aborts(tmp_path, serve):
    (tmp_path / "f").write_text("x")
    channel = serve(FileSyncServicer({"ctx": LocalDir(tmp_path)}))
    out: queue.Queue = queue.Queue()
    out.put(P(type=fsutil_pb2.PACKET_ERR, data=b"disk full"))

    requests = iter(out.get, None)  # the queued packets, up to a None

    call = filesync_pb2_grpc.FileSyncStub(channel).DiffCopy(requests, metadata=[("dir-name", "ctx")], timeout=10)
    with pytest.raises(grpc.RpcError) as info:
        for _ in call:
            pass
    out.put(None)
    assert "disk full" in info.value.details()


def test_walk_error_sends_err(tmp_path, serve):
    channel = serve(FileSyncServicer({"ctx": LocalDir(tmp_path / "missing")}))
    got = []
    out: queue.Queue = queue.Queue()

    def requests():  # stays open, like the daemon's side
        while out.get() is not None:
            pass
        yield from ()

    with pytest.raises(grpc.RpcError) as info:
        call = filesync_pb2_grpc.FileSyncStub(channel).DiffCopy(requests(), metadata=[("dir-name", "ctx")],
                                                                timeout=10)
        for p in call:
            got.append(p)
    out.put(None)
    assert got and got[-1].type == fsutil_pb2.PACKET_ERR
    assert "missing" in info.value.details()


def test_add_servicer_to_server_works_too(tmp_path, sock_dir):
    (tmp_path / "f").write_text("hello")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    filesync_pb2_grpc.add_FileSyncServicer_to_server(FileSyncServicer({"ctx": LocalDir(tmp_path)}), server)
    server.add_insecure_port(f"unix:{sock_dir}/x.sock")
    server.start()
    try:
        daemon = Daemon(grpc.insecure_channel(f"unix:{sock_dir}/x.sock"), [("dir-name", "ctx")]).run()
        assert bytes(daemon.data[0]) == b"hello"
    finally:
        server.stop(None)


def test_decode_metadata():
    md = [("dir-name", "x"), ("exclude-patterns", "a%2Fb"), ("exclude-patterns", "c+d"),
          ("exclude-patterns-encoded", "1"), ("include-patterns", "a%2Fb")]
    assert decode_metadata(md) == {"dir-name": ["x"], "exclude-patterns": ["a/b", "c d"],
                                   "exclude-patterns-encoded": ["1"], "include-patterns": ["a%2Fb"]}


def test_concurrent_calls(tmp_path, serve):
    make_tree(tmp_path / "one")
    make_tree(tmp_path / "two")
    channel = serve(FileSyncServicer({"one": LocalDir(tmp_path / "one"), "two": LocalDir(tmp_path / "two")}))
    results = {}

    def go(name):
        results[name] = Daemon(channel, [("dir-name", name)]).run()

    threads = [threading.Thread(target=go, args=(n,)) for n in ("one", "two", "one")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(d.fin for d in results.values())
