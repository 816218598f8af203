"""FileSend: receiving exports from the daemon (``moby.filesync.v1.FileSend/DiffCopy``).

The daemon calls ``DiffCopy`` once per streamed exporter, with metadata
``buildkit-attachable-exporter-id`` = the exporter's index in the solve
request (absent on 0.8-era daemons: index 0).

* ``tar``, ``oci``, ``docker``: the request stream is ``BytesMessage{data}``
  chunks of the tarball; we write them to a temporary file next to the
  target and rename it into place once the stream ends cleanly. No responses.
* ``local``: the same method carries fsutil ``Packet`` s, with FileSync's
  roles reversed: the daemon sends STATs (then an empty STAT), we answer
  ``REQ{ID}`` for each regular file, it sends ``DATA{ID}`` chunks and an empty
  ``DATA{ID}``; when everything has arrived we send ``FIN`` and it replies
  ``FIN``. The tree is merged into the destination directory.

Because the message type depends on the exporter, the method is registered
with no (de)serializer: requests arrive as raw bytes and responses are
serialized here.
"""

from __future__ import annotations

import os
import shutil
import stat as _st
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator, Mapping

import grpc

from .fswalk import (
    MODE_CHAR_DEVICE,
    MODE_DEVICE,
    MODE_DIR,
    MODE_NAMED_PIPE,
    MODE_SETGID,
    MODE_SETUID,
    MODE_STICKY,
    MODE_SYMLINK,
    MODE_TYPE,
)
from .proto import filesync_pb2, fsutil_pb2

__all__ = ["FileSendServicer", "ExportTarget", "FILE_EXPORTERS", "DIFFCOPY_METHOD"]

SERVICE = "moby.filesync.v1.FileSend"
DIFFCOPY_METHOD = f"/{SERVICE}/DiffCopy"
KEY_EXPORTER_ID = "buildkit-attachable-exporter-id"

FILE_EXPORTERS = frozenset({"tar", "oci", "docker"})
DIR_EXPORTERS = frozenset({"local"})

ExportTarget = tuple  # (exporter type, output path or None)

_P = fsutil_pb2.Packet
_STAT, _REQ, _DATA, _FIN, _ERR = (
    fsutil_pb2.PACKET_STAT, fsutil_pb2.PACKET_REQ, fsutil_pb2.PACKET_DATA, fsutil_pb2.PACKET_FIN, fsutil_pb2.PACKET_ERR)


def _umask() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


class FileSendServicer:
    """Writes streamed exports to their outputs.

    ``targets`` maps the exporter index to ``(type, path)``: for ``tar``,
    ``oci`` and ``docker`` the file to write, for ``local`` the directory to
    fill. A ``None`` path discards the stream.
    """

    methods = (DIFFCOPY_METHOD,)

    def __init__(self, targets: Mapping[int, tuple[str, str | os.PathLike[str] | None]]) -> None:
        self._targets: dict[int, tuple[str, Path | None]] = {}
        for index, (typ, path) in targets.items():
            if typ not in FILE_EXPORTERS and typ not in DIR_EXPORTERS:
                raise ValueError(f"exporter {typ!r} does not stream to the client")
            self._targets[int(index)] = (typ, Path(path) if path is not None else None)
        self._lock = threading.Lock()
        self.bytes_received: dict[int, int] = {}
        self.completed: dict[int, Path | None] = {}

    def register(self, server: grpc.Server) -> None:
        server.add_generic_rpc_handlers((self.generic_handler(),))

    def generic_handler(self) -> grpc.GenericRpcHandler:
        # No deserializer/serializer: raw bytes both ways, parsed per exporter type.
        handler = grpc.stream_stream_rpc_method_handler(self.DiffCopy)
        return grpc.method_handlers_generic_handler(SERVICE, {"DiffCopy": handler})

    def _choose(self, context) -> int | None:
        index = 0
        for k, v in context.invocation_metadata() or ():
            if k.lower() == KEY_EXPORTER_ID and isinstance(v, str):
                try:
                    index = int(v)
                except ValueError:
                    index = 0
                break
        else:
            # 0.8-era daemons send no index; with a single target there is no doubt.
            if index not in self._targets and len(self._targets) == 1:
                return next(iter(self._targets))
        return index if index in self._targets else None

    def DiffCopy(self, request_iterator, context):  # noqa: N802 - gRPC method name
        index = self._choose(context)
        if index is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "exporter not found")
        typ, path = self._targets[index]
        if typ in DIR_EXPORTERS:
            if path is None:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, "local exporter without a directory")
            return _TreeReceiver(path, request_iterator, context, self, index).run()
        self._receive_file(index, path, request_iterator, context)
        return iter(())

    def _count(self, index: int, n: int) -> None:
        with self._lock:
            self.bytes_received[index] = self.bytes_received.get(index, 0) + n

    def _receive_file(self, index: int, path: Path | None, requests, context) -> None:
        parse = filesync_pb2.BytesMessage.FromString
        if path is None:
            for raw in requests:
                self._count(index, len(parse(raw).data))
            self.completed[index] = None
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        try:
            total = 0
            tail = b""
            with os.fdopen(fd, "wb") as f:
                for raw in requests:
                    data = parse(raw).data
                    f.write(data)
                    total += len(data)
                    tail = (tail + data)[-_TAR_EOF_LEN:] if len(data) < _TAR_EOF_LEN else data[-_TAR_EOF_LEN:]
                    self._count(index, len(data))
                f.flush()
                # Every exporter here writes a tar stream, which Go ends with two zero blocks.
                complete_tar = total % 512 == 0 and tail == _TAR_EOF
                if not _ended_cleanly(context, _CANCEL_GRACE if complete_tar else _CANCEL_GRACE_LONG):
                    raise _Cancelled()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, path)
        except BaseException as e:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            if isinstance(e, (grpc.RpcError, _Cancelled)):
                return  # the daemon cancelled; nothing to answer
            if isinstance(e, OSError):
                context.abort(grpc.StatusCode.INTERNAL, f"failed to write {path}: {e}")
            raise
        self.completed[index] = path


class _Cancelled(Exception):
    pass


_CANCEL_GRACE = 0.25  # seconds, for a stream that ends like a tar archive
_CANCEL_GRACE_LONG = 2.0  # for one that does not
_TAR_EOF_LEN = 1024
_TAR_EOF = bytes(_TAR_EOF_LEN)


def _ended_cleanly(context, grace: float) -> bool:
    """Whether the request stream ended by a half-close rather than a cancel.

    grpcio's request iterator also just stops when the client cancels
    (RST_STREAM); the cancellation reaches the call state a moment later.
    A half-closing daemon is waiting for our status meanwhile, so a short
    wait costs little and keeps a truncated tarball from being renamed
    into place.
    """
    deadline = time.monotonic() + grace
    while True:
        if not context.is_active():
            return False
        if time.monotonic() >= deadline:
            return True
        time.sleep(0.01)


def _unix_perm(go_mode: int) -> int:
    perm = go_mode & 0o777
    if go_mode & MODE_SETUID:
        perm |= _st.S_ISUID
    if go_mode & MODE_SETGID:
        perm |= _st.S_ISGID
    if go_mode & MODE_STICKY:
        perm |= _st.S_ISVTX
    return perm


class _ProtocolError(Exception):
    pass


class _TreeReceiver:
    """The receiving side of fsutil's protocol, writing into ``dest`` (merge mode)."""

    def __init__(self, dest: Path, requests, context, owner: FileSendServicer, index: int) -> None:
        self._dest_arg = dest
        self._requests = requests
        self._context = context
        self._owner = owner
        self._index = index
        self._safe_dirs: set[str] = set()

    def run(self) -> Iterator[bytes]:
        try:
            yield from self._run()
        except _ProtocolError as e:
            self._context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except OSError as e:
            self._context.abort(grpc.StatusCode.INTERNAL, f"failed to write local export: {e}")
        finally:
            for f in getattr(self, "_open", {}).values():
                f.close()

    def _run(self) -> Iterator[bytes]:
        os.makedirs(self._dest_arg, exist_ok=True)
        self._dest = os.path.realpath(self._dest_arg)
        self._safe_dirs.add(self._dest)
        self._open: dict[int, object] = {}
        files: dict[int, tuple[str, fsutil_pb2.Stat]] = {}
        pending: set[int] = set()
        dirs: list[tuple[str, fsutil_pb2.Stat]] = []
        hardlinks: list[tuple[str, str]] = []
        n = 0
        walk_done = fin_sent = False

        for raw in self._requests:
            p = _P.FromString(raw)
            t = p.type
            if t == _STAT:
                if walk_done:
                    raise _ProtocolError("STAT after the end of the walk")
                if not p.HasField("stat"):
                    walk_done = True
                else:
                    file_id, n = n, n + 1
                    st = p.stat
                    target = self._target(st.path)
                    kind = st.mode & MODE_TYPE
                    if kind & MODE_DIR:
                        self._make_dir(target)
                        dirs.append((target, st))
                    elif kind & MODE_SYMLINK:
                        self._clear(target)
                        os.symlink(st.linkname, target)
                        os.utime(target, ns=(st.modTime, st.modTime), follow_symlinks=False)
                    elif kind == 0:
                        if st.linkname:
                            hardlinks.append((target, self._target(st.linkname)))
                        elif st.size == 0:
                            self._clear(target)
                            self._close_file(target, st, open(target, "xb"))
                        else:
                            files[file_id] = (target, st)
                            pending.add(file_id)
                            yield _P(type=_REQ, ID=file_id).SerializeToString()
                    elif kind & MODE_NAMED_PIPE:
                        self._clear(target)
                        os.mkfifo(target, _unix_perm(st.mode))
                    elif kind & MODE_DEVICE:
                        self._clear(target)
                        fmt = _st.S_IFCHR if kind & MODE_CHAR_DEVICE else _st.S_IFBLK
                        try:
                            os.mknod(target, fmt | _unix_perm(st.mode), os.makedev(st.devmajor, st.devminor))
                        except PermissionError:
                            pass  # devices need privileges; skipped rather than failing the export
                    # sockets and irregular files: nothing to create
            elif t == _DATA:
                entry = files.get(p.ID)
                if entry is None or p.ID not in pending:
                    raise _ProtocolError(f"unexpected data for file {p.ID}")
                f = self._open.get(p.ID)
                if f is None:
                    self._clear(entry[0])
                    f = self._open[p.ID] = open(entry[0], "xb")
                if p.data:
                    f.write(p.data)
                    self._owner._count(self._index, len(p.data))
                else:
                    del self._open[p.ID]
                    self._close_file(entry[0], entry[1], f)
                    pending.discard(p.ID)
            elif t == _FIN:
                if not fin_sent:
                    raise _ProtocolError("FIN from the sender before the transfer was complete")
                self._owner.completed[self._index] = self._dest_arg
                return  # the sender's answer to our FIN: done
            elif t == _ERR:
                raise _ProtocolError(f"error from sender: {p.data.decode('utf-8', 'replace')}")
            else:
                raise _ProtocolError(f"unexpected packet type {t} from sender")

            if walk_done and not pending and not fin_sent:
                self._finalize(dirs, hardlinks)
                fin_sent = True
                yield _P(type=_FIN).SerializeToString()

        if not fin_sent:
            raise _ProtocolError("the sender closed the stream before the transfer was complete")
        self._owner.completed[self._index] = self._dest_arg

    # ------------------------------------------------------------- helpers

    def _target(self, rel: str) -> str:
        parts = rel.split("/")
        if not rel or rel.startswith("/") or any(x in ("", ".", "..") for x in parts):
            raise _ProtocolError(f"invalid path {rel!r}")
        target = os.path.join(self._dest, *parts)
        parent = os.path.dirname(target)
        if parent not in self._safe_dirs:
            real = os.path.realpath(parent)
            if real != parent:
                raise _ProtocolError(f"refusing to write {rel!r} through a symlink")
            self._safe_dirs.add(parent)
        return target

    def _clear(self, target: str) -> None:
        """Remove whatever is at ``target`` (merge mode replaces entries)."""
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            return
        if _st.S_ISDIR(st.st_mode):
            shutil.rmtree(target)
            self._safe_dirs = {d for d in self._safe_dirs if d != target and not d.startswith(target + os.sep)}
        else:
            os.unlink(target)

    def _make_dir(self, target: str) -> None:
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            st = None
        if st is not None and not _st.S_ISDIR(st.st_mode):
            os.unlink(target)
            st = None
        if st is None:
            os.mkdir(target, 0o700)
        else:
            os.chmod(target, _st.S_IMODE(st.st_mode) | 0o700)  # writable until finalized
        self._safe_dirs.add(target)

    @staticmethod
    def _close_file(target: str, st: fsutil_pb2.Stat, f) -> None:
        f.close()
        os.chmod(target, _unix_perm(st.mode))
        os.utime(target, ns=(st.modTime, st.modTime))

    def _finalize(self, dirs: list[tuple[str, fsutil_pb2.Stat]], hardlinks: list[tuple[str, str]]) -> None:
        for target, source in hardlinks:
            self._clear(target)
            os.link(source, target, follow_symlinks=False)
        for target, st in reversed(dirs):  # children before parents, so mtimes stick
            os.chmod(target, _unix_perm(st.mode))
            os.utime(target, ns=(st.modTime, st.modTime))
