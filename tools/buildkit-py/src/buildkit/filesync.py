"""FileSync: serving local directories to the daemon (``moby.filesync.v1.FileSync/DiffCopy``).

For each ``local://name`` source of a solve the daemon calls ``DiffCopy`` on
the session with metadata ``dir-name`` (and optionally ``include-patterns``,
``exclude-patterns``, ``followpaths``; ``<key>-encoded: 1`` marks values that
are URL-query-escaped). The client is the *sender*:

1. one ``STAT`` packet per entry, in fsutil walk order (:mod:`.fswalk`); the
   n-th STAT (from 0) has the implicit ID n; then an empty ``STAT``;
2. meanwhile, for every ``REQ{ID}`` from the daemon, the file's data as
   ``DATA{ID}`` chunks of 32 KiB and an empty ``DATA{ID}``;
3. the daemon's ``FIN`` is answered with ``FIN`` and the call ends. ``ERR``
   from either side aborts.

A walker thread and a reader thread (which hands REQs to a few file-sender
threads) feed one queue; the response iterator drains it, so STATs and DATA
interleave and memory stays bounded (files are streamed, never held whole).
"""

from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence
from urllib.parse import unquote_plus

import grpc

from .dockerignore import read_dockerignore
from .fswalk import Filter, is_regular, to_stat, walk
from .proto import filesync_pb2_grpc, fsutil_pb2

__all__ = [
    "LocalDir",
    "TransferProgress",
    "FileSyncServicer",
    "decode_metadata",
    "CHUNK_SIZE",
    "DIFFCOPY_METHOD",
]

SERVICE = "moby.filesync.v1.FileSync"
DIFFCOPY_METHOD = f"/{SERVICE}/DiffCopy"
CHUNK_SIZE = 32 * 1024

KEY_DIR_NAME = "dir-name"
KEY_INCLUDE = "include-patterns"
KEY_EXCLUDE = "exclude-patterns"
KEY_FOLLOW = "followpaths"

_P = fsutil_pb2.Packet
_STAT, _REQ, _DATA, _FIN, _ERR = (
    fsutil_pb2.PACKET_STAT, fsutil_pb2.PACKET_REQ, fsutil_pb2.PACKET_DATA, fsutil_pb2.PACKET_FIN, fsutil_pb2.PACKET_ERR)


def _tuple(v: Iterable[str] | str | None) -> tuple[str, ...]:
    if v is None:
        return ()
    if isinstance(v, str):
        return (v,)
    return tuple(v)


@dataclass(frozen=True)
class LocalDir:
    """A directory the session may send, with its own filter.

    ``exclude`` typically comes from the directory's ``.dockerignore``
    (:meth:`with_dockerignore`). It applies on top of whatever the daemon
    asks for: an entry is sent only if both the solve's patterns and these
    keep it.
    """

    path: Path
    include: Sequence[str] = ()
    exclude: Sequence[str] = ()
    follow_paths: Sequence[str] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        object.__setattr__(self, "include", _tuple(self.include))
        object.__setattr__(self, "exclude", _tuple(self.exclude))
        object.__setattr__(self, "follow_paths", _tuple(self.follow_paths))

    @classmethod
    def with_dockerignore(cls, path: str | os.PathLike[str], include: Sequence[str] = (),
                          exclude: Sequence[str] = (), follow_paths: Sequence[str] = (),
                          ignore_file: str = ".dockerignore") -> "LocalDir":
        """``path`` filtered by its ``.dockerignore`` (if any) plus ``exclude``."""
        p = Path(path)
        return cls(p, include, tuple(read_dockerignore(p / ignore_file)) + _tuple(exclude), follow_paths)

    @property
    def filter(self) -> Filter:
        return Filter(self.include, self.exclude, self.follow_paths)


@dataclass
class TransferProgress:
    """Counters of one DiffCopy call (updated live; read them for "transferring ctx: …")."""

    dir_name: str
    entries: int = 0  # STATs sent
    files: int = 0  # files whose data was sent in full
    bytes: int = 0  # file bytes sent
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    error: str | None = None

    @property
    def done(self) -> bool:
        return self.finished is not None


def decode_metadata(md: Iterable[tuple[str, str | bytes]] | None) -> dict[str, list[str]]:
    """gRPC invocation metadata as {key: [values]}, with ``<key>-encoded`` values unescaped."""
    raw: dict[str, list[str]] = {}
    for k, v in md or ():
        if isinstance(v, bytes):
            continue  # -bin keys; none of ours
        raw.setdefault(k.lower(), []).append(v)
    out: dict[str, list[str]] = {}
    for k, values in raw.items():
        flag = raw.get(k + "-encoded")
        if flag and flag[0].strip() in ("1", "t", "T", "true", "TRUE", "True"):
            out[k] = [_query_unescape(v) for v in values]
        else:
            out[k] = list(values)
    return out


def _query_unescape(s: str) -> str:
    try:
        return unquote_plus(s, errors="strict")
    except UnicodeDecodeError:
        return ""  # Go drops values it cannot unescape


class FileSyncServicer(filesync_pb2_grpc.FileSyncServicer):
    """Serves ``dirs`` (``{name: LocalDir}``) for ``local://name`` sources.

    Register with :meth:`register` (or ``add_FileSyncServicer_to_server``)
    on a thread-pool server with enough workers (each open call holds one).
    ``on_progress`` is called (from worker threads) with the call's
    :class:`TransferProgress` after each file and when the call ends.
    """

    methods = (DIFFCOPY_METHOD,)

    def __init__(self, dirs: Mapping[str, LocalDir], *,
                 on_progress: Callable[[TransferProgress], None] | None = None,
                 chunk_size: int = CHUNK_SIZE, file_workers: int = 4, queue_size: int = 64) -> None:
        self._dirs = {k: (v if isinstance(v, LocalDir) else LocalDir(v)) for k, v in dirs.items()}
        self._on_progress = on_progress
        self._chunk = chunk_size
        self._workers = max(1, file_workers)
        self._queue_size = queue_size
        self._lock = threading.Lock()
        self.transfers: list[TransferProgress] = []

    # totals over all calls
    @property
    def bytes_sent(self) -> int:
        return sum(t.bytes for t in self.transfers)

    @property
    def files_sent(self) -> int:
        return sum(t.files for t in self.transfers)

    def register(self, server: grpc.Server) -> None:
        server.add_generic_rpc_handlers((self.generic_handler(),))

    def generic_handler(self) -> grpc.GenericRpcHandler:
        handler = grpc.stream_stream_rpc_method_handler(
            self.DiffCopy,
            request_deserializer=fsutil_pb2.Packet.FromString,
            response_serializer=fsutil_pb2.Packet.SerializeToString,
        )
        return grpc.method_handlers_generic_handler(SERVICE, {"DiffCopy": handler})

    def DiffCopy(self, request_iterator, context):  # noqa: N802 - gRPC method name
        opts = decode_metadata(context.invocation_metadata())
        name = (opts.get(KEY_DIR_NAME) or [""])[0]
        local = self._dirs.get(name)
        if local is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no access allowed to dir {name!r}")
        daemon = Filter(opts.get(KEY_INCLUDE, ()), opts.get(KEY_EXCLUDE, ()), opts.get(KEY_FOLLOW, ()))
        progress = TransferProgress(name)
        with self._lock:
            self.transfers.append(progress)
        sender = _Sender(local.path, [daemon, local.filter], request_iterator, context, progress,
                         self._report, self._chunk, self._workers, self._queue_size)
        return sender.run()

    def _report(self, progress: TransferProgress) -> None:
        if self._on_progress is not None:
            try:
                self._on_progress(progress)
            except Exception:  # noqa: BLE001 - a display hook must not break the transfer
                pass


class _Abort:
    __slots__ = ("code", "message")

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        self.code = code
        self.message = message


_END = object()
_STAT_BATCH = 256  # STATs per queue item
_STAT_BATCH_DELAY = 0.05  # seconds a partial batch may wait (slow file systems)


class _Sender:
    """One DiffCopy call: walker, request reader and file senders feeding one queue."""

    def __init__(self, root: Path, filters: list[Filter], requests, context, progress: TransferProgress,
                 report: Callable[[TransferProgress], None], chunk: int, workers: int, queue_size: int) -> None:
        self._root = os.fspath(root)
        self._filters = filters
        self._requests = requests
        self._context = context
        self._progress = progress
        self._report = report
        self._chunk = chunk
        self._nworkers = workers
        self._out: queue.Queue = queue.Queue(maxsize=queue_size)
        self._reqs: queue.Queue = queue.Queue()
        self._files: dict[int, str] = {}  # ID -> relative path of regular files
        self._stop = threading.Event()
        self._failed = threading.Event()
        self._walk_stop = threading.Event()
        self._count_lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    # ---------------------------------------------------------------- output

    def _put(self, item) -> bool:
        """Queue an outgoing item; False once the call is over."""
        while not self._stop.is_set():
            try:
                self._out.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _fail(self, message: str, code: grpc.StatusCode = grpc.StatusCode.UNKNOWN, send_err: bool = True) -> None:
        with self._count_lock:
            if self._failed.is_set():
                return
            self._failed.set()
        self._progress.error = message
        if send_err:
            self._put(_P(type=_ERR, data=message.encode("utf-8", "replace")))
        self._put(_Abort(code, message))
        self._stop_workers()

    def _stop_workers(self) -> None:
        for _ in range(self._nworkers):
            self._reqs.put(None)

    def run(self) -> Iterator[fsutil_pb2.Packet]:
        self._context.add_callback(self._cancel)
        self._start(self._walk, "walk")
        for i in range(self._nworkers):
            self._start(self._send_files, f"send-{i}")
        self._start(self._read, "read")  # last: it may join the others
        try:
            while True:
                try:
                    item = self._out.get(timeout=0.5)
                except queue.Empty:
                    if self._stop.is_set():
                        return  # cancelled: the call ends instead of waiting forever
                    continue
                if item is _END:
                    return
                if type(item) is list:
                    yield from item
                    continue
                if isinstance(item, _Abort):
                    self._context.abort(item.code, item.message)
                yield item
        finally:
            self._stop.set()
            self._stop_workers()
            if self._progress.finished is None:
                self._progress.finished = time.monotonic()
                self._report(self._progress)

    def _start(self, target, name: str) -> None:
        t = threading.Thread(target=target, name=f"filesync-{name}", daemon=True)
        self._threads.append(t)
        t.start()

    def _cancel(self) -> None:
        self._stop.set()
        self._stop_workers()


    # ---------------------------------------------------------------- walker

    def _walk(self) -> None:
        try:
            files = self._files
            put = self._put
            stop = self._walk_stop
            clock = time.monotonic
            n = 0
            # STATs go out in batches: one queue hand-off per batch, not per entry.
            batch: list = []
            first = 0.0
            for entry in walk(self._root, filters=self._filters):
                if stop.is_set():
                    return
                st = to_stat(entry)
                if is_regular(st.mode) and not st.linkname:
                    files[n] = entry.path
                if not batch:
                    first = clock()
                batch.append(_P(type=_STAT, stat=st))
                n += 1
                if len(batch) >= _STAT_BATCH or clock() - first > _STAT_BATCH_DELAY:
                    self._progress.entries = n
                    if not put(batch):
                        return
                    batch = []
            if not stop.is_set():
                batch.append(_P(type=_STAT))
                self._progress.entries = n
                put(batch)
        except Exception as e:  # noqa: BLE001 - reported to the daemon
            self._fail(f"failed to walk {self._root}: {e}")

    # ---------------------------------------------------------------- reader

    def _read(self) -> None:
        try:
            for p in self._requests:
                if p.type == _REQ:
                    self._reqs.put(p.ID)
                elif p.type == _FIN:
                    self._finish()
                    return
                elif p.type == _ERR:
                    self._fail(f"error from receiver: {p.data.decode('utf-8', 'replace')}", send_err=False)
                    return
                else:
                    self._fail(f"unexpected packet type {p.type} from receiver")
                    return
            # The daemon closed its side without FIN: finish what was asked, then end.
            self._finish(reply_fin=False)
        except grpc.RpcError:
            self._cancel()
        except Exception as e:  # noqa: BLE001
            self._fail(f"failed to read from receiver: {e}")

    def _finish(self, reply_fin: bool = True) -> None:
        """All requested data goes out before the closing FIN.

        After FIN the receiver has all it wants (normally the walk is over
        anyway); if it just closed its side, the walk is finished first.
        """
        if reply_fin:
            self._walk_stop.set()
        for t in self._threads:
            if t.name == "filesync-walk":
                t.join()
        self._stop_workers()
        for t in self._threads:
            if t.name.startswith("filesync-send"):
                t.join()
        if self._failed.is_set():
            return
        if reply_fin:
            self._put(_P(type=_FIN))
        self._put(_END)

    # ---------------------------------------------------------- file senders

    def _send_files(self) -> None:
        put = self._put
        chunk = self._chunk
        while True:
            file_id = self._reqs.get()
            if file_id is None or self._stop.is_set():
                return
            rel = self._files.get(file_id)
            if rel is None:
                self._fail(f"invalid file request {file_id}")
                return
            try:
                # O_NOFOLLOW: a file swapped for a symlink since the walk is not followed out
                fd = os.open(os.path.join(self._root, rel), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                with open(fd, "rb", buffering=0) as f:
                    data = f.read(chunk)
                    while True:
                        # A short read is the end: the last chunk and the empty
                        # DATA then go out as one queue item (most files are small).
                        nxt = f.read(chunk) if len(data) == chunk else b""
                        if not nxt:
                            last = [_P(type=_DATA, ID=file_id)]
                            if data:
                                last.insert(0, _P(type=_DATA, ID=file_id, data=data))
                            if not put(last):
                                return
                            break
                        if not put(_P(type=_DATA, ID=file_id, data=data)):
                            return
                        with self._count_lock:
                            self._progress.bytes += len(data)
                        data = nxt
            except OSError as e:
                self._fail(f"failed to read {rel}: {e}")
                return
            with self._count_lock:
                self._progress.bytes += len(data)
                self._progress.files += 1
            self._report(self._progress)
