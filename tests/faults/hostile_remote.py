"""A remote cache that misbehaves on purpose, on 127.0.0.1, in both protocols
mbuild speaks: the Bazel HTTP cache protocol and the REAPI v2 cache services
over gRPC. One :class:`Content` (action results and blobs) is served by
either; :class:`HostileRemote` starts a server for one protocol and answers
with the :class:`Fault` it is set to::

    content = Content()
    with HostileRemote("grpc", content) as remote:
        remote.fault = Fault("hang-mid-body", on={"cas"})
        ... a client talks to remote.url ...

Used by the fault suite (``test_hostile_remote.py``) and the client tests
(``tests/unit/test_remote_deadlines.py``). :class:`Content` is also a
:class:`~mbuild.cache.remote.RemoteCache` in its own right (``memory://``),
for tests that need a remote but no network.

A fault applies to the requests named in ``Fault.on``: ``ac`` (action result
reads), ``cas`` (blob reads) and ``other`` (everything else: capabilities,
FindMissing / HEAD, uploads). The kinds:

==================  ==========================================================
honest              answers as a cache should
corrupt             a blob with its size but every byte flipped; an action
                    result that does not parse
truncated           half a blob, then the end (HTTP: the whole length was
                    announced and the connection closes; gRPC: the batch entry
                    or the stream is short); an action result cut in half
                    (HTTP) or with half its output files (gRPC)
oversized           a blob and then more bytes without end (HTTP: no length
                    announced; gRPC: a longer batch entry, a stream that goes
                    on); an action result without end (HTTP) or of 80 MiB (gRPC)
slow                every byte the server sends passes a relay at ``rate``
                    bytes/s (1 B/s by default); ``on`` does not apply
hang                reads the request and never answers
hang-after-headers  sends the status and headers (gRPC: initial metadata),
                    then nothing
hang-mid-body       sends the headers and half the body, then nothing (gRPC: half
                    a ByteStream read; a unary answer cannot be split, so a
                    batch read hangs after its headers)
error               HTTP 500 / gRPC UNAVAILABLE
never-accepts       the address is a listener whose accept queue is full:
                    connecting never completes; ``on`` does not apply
==================  ==========================================================

``Fault.over`` narrows ``cas`` to blobs bigger than that many bytes (the
layers, after the record, manifest and config came through honestly).
``Fault.delay`` makes the server wait that long before answering a request
in ``on`` (a slow but honest server, with ``honest``). Hanging answers end
when the client gives up (or the server stops).
"""

from __future__ import annotations

import hashlib
import os
import select
import socket
import threading
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterable

import grpc

from mbuild.cache.remote import ActionResult, BlobRef
from mbuild.cache.remote.base import write_verified
from mbuild.cache.remote.proto import bytestream_pb2 as bs_pb2
from mbuild.cache.remote.proto import remote_execution_pb2 as re_pb2

KINDS = (
    "honest", "corrupt", "truncated", "oversized", "slow", "hang", "hang-after-headers", "hang-mid-body",
    "error", "never-accepts",
)
ALL = frozenset({"ac", "cas", "other"})
_PIECE = 64 << 10  # bytes per write of a streamed answer


@dataclass(frozen=True)
class Fault:
    """How to answer (see the module docstring)."""

    kind: str = "honest"
    on: frozenset = ALL  # which requests: "ac", "cas", "other"
    rate: float = 1.0  # bytes/s, for "slow"
    delay: float = 0.0  # seconds before answering a request in `on`
    over: int = 0  # "cas" means blobs over this many bytes only

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault {self.kind!r}; one of {', '.join(KINDS)}")
        object.__setattr__(self, "on", frozenset(self.on))
        if not self.on <= ALL:
            raise ValueError(f"fault applies to {sorted(self.on)}; choose from {sorted(ALL)}")

    def applies(self, request: str, stopping: threading.Event, size: int = 0) -> str:
        """The kind to answer a request of this sort (``ac``, ``cas``,
        ``other``; *size*: the biggest blob asked for) with, after waiting
        :attr:`delay` if it is in :attr:`on`."""
        if request not in self.on or (request == "cas" and size <= self.over and self.over):
            return "honest"
        if self.delay:
            stopping.wait(self.delay)
        return self.kind


def flipped(data: bytes) -> bytes:
    return bytes(b ^ 0xFF for b in data)


# ---------------------------------------------------------------- content


class Content:
    """Action results (serialized, by key) and blobs (by sha256), thread-safe;
    also an in-memory :class:`~mbuild.cache.remote.RemoteCache`."""

    name = "memory://"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.ac: dict[str, bytes] = {}
        self.cas: dict[str, bytes] = {}

    def put_bytes(self, data: bytes) -> BlobRef:
        ref = BlobRef.of_bytes(data)
        with self._lock:
            self.cas[ref.hash] = data
        return ref

    def blob(self, sha256: str) -> bytes | None:
        with self._lock:
            return self.cas.get(sha256)

    def result_bytes(self, key: str) -> bytes | None:
        with self._lock:
            return self.ac.get(key)

    def set_result(self, key: str, result: ActionResult | bytes) -> None:
        data = result if isinstance(result, bytes) else result.SerializeToString()
        with self._lock:
            self.ac[key] = data

    def state(self) -> tuple[dict[str, bytes], dict[str, bytes]]:
        """Copies of (action results, blobs), for :meth:`set_state`."""
        with self._lock:
            return dict(self.ac), dict(self.cas)

    def set_state(self, ac: dict[str, bytes], cas: dict[str, bytes]) -> None:
        """Hold exactly these action results and blobs (e.g. a :meth:`state`)."""
        with self._lock:
            self.ac, self.cas = dict(ac), dict(cas)

    # The RemoteCache interface, in memory.
    def get_action_result(self, key_hex: str) -> ActionResult | None:
        data = self.result_bytes(key_hex)
        return None if data is None else ActionResult.FromString(data)

    def put_action_result(self, key_hex: str, result: ActionResult) -> None:
        self.set_result(key_hex, result)

    def find_missing(self, blobs: Iterable[BlobRef]) -> set[BlobRef]:
        with self._lock:
            return {b for b in blobs if b.hash not in self.cas}

    def put_blob(self, blob: BlobRef, source: bytes | Path) -> None:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        assert BlobRef.of_bytes(data) == blob, f"{blob} given other bytes"
        self.put_bytes(data)

    def get_blob(self, blob: BlobRef, dest: Path) -> bool:
        data = self.blob(blob.hash)
        if data is None:
            return False
        write_verified(blob, data, Path(dest))
        return True

    def close(self) -> None:
        pass


# ---------------------------------------------------------------- HTTP


class _HttpHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_HttpServer"

    def log_message(self, *args) -> None:
        pass

    def _request(self) -> tuple[str, str]:
        parts = self.path.rstrip("/").split("/")
        return (parts[-2], parts[-1]) if len(parts) >= 3 else ("", "")

    def _head(self, status: int, length: int | None, close: bool = False) -> None:
        self.send_response(status)
        if length is not None:
            self.send_header("Content-Length", str(length))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.flush()

    def _hang(self) -> None:
        self.server.hostile.hang_until_gone(self.connection)
        self.close_connection = True

    def _fault(self, request: str, size: int = 0) -> str:
        hostile = self.server.hostile
        return hostile.fault.applies(request, hostile.stopping, size)

    def _fault_first(self, fault: str, length: int, body: bool = True) -> bool:
        """Answer the faults every request sort shares; True if answered. A
        request whose answer has no *body* hangs mid-body after its headers."""
        if fault == "hang-mid-body" and not body:
            fault = "hang-after-headers"
        if fault == "error":
            self._head(500, 0)
        elif fault == "hang":
            self._hang()
        elif fault == "hang-after-headers":
            self._head(200, length)
            self._hang()
        else:
            return False
        return True

    def do_GET(self) -> None:
        kind, name = self._request()
        store = self.server.hostile.content
        data = store.result_bytes(name) if kind == "ac" else store.blob(name) if kind == "cas" else None
        fault = self._fault(kind if kind in ("ac", "cas") else "other", len(data or b""))
        if self._fault_first(fault, len(data or b"x" * 100)):
            return
        if data is None:
            self._head(404, 0)
            return
        if fault == "hang-mid-body":
            self._head(200, len(data))
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self._hang()
        elif fault == "corrupt":
            body = flipped(data) if kind == "cas" else b"\xff" * 16  # the same size / does not parse
            self._head(200, len(body))
            self.wfile.write(body)
        elif fault == "truncated" and kind == "cas":  # the whole length announced, half sent
            self._head(200, len(data), close=True)
            self.wfile.write(data[: len(data) // 2])
        elif fault == "truncated":  # a short entry, announced as such
            self._head(200, len(data) // 2)
            self.wfile.write(data[: len(data) // 2])
        elif fault == "oversized":
            self._head(200, None, close=True)
            self.wfile.write(data)
            self.server.hostile.send_until_gone(self.wfile.write)
        else:
            self._head(200, len(data))
            self.wfile.write(data)

    def do_HEAD(self) -> None:
        kind, name = self._request()
        data = self.server.hostile.content.blob(name) if kind == "cas" else None
        if self._fault_first(self._fault("other"), len(data or b""), body=False):
            return
        self._head(200 if data is not None else 404, len(data) if data is not None else 0)

    def do_PUT(self) -> None:
        kind, name = self._request()
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n)
        if len(body) != n:  # the client hung up mid-body: store nothing
            self.close_connection = True
            return
        if self._fault_first(self._fault("other"), 0, body=False):
            return
        store = self.server.hostile.content
        if kind == "ac":
            store.set_result(name, body)
        elif kind == "cas" and hashlib.sha256(body).hexdigest() == name:
            store.put_bytes(body)
        else:
            self._head(400, 0)
            return
        self._head(201, 0)


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    hostile: "HostileRemote"

    def handle_error(self, request, client_address) -> None:
        pass  # clients giving up mid-answer are the point


# ---------------------------------------------------------------- gRPC

_RE = "build.bazel.remote.execution.v2"


def _raw(message) -> bytes:
    """Responses may be given as bytes, sent as they are (a corrupt answer)."""
    return message if isinstance(message, bytes) else message.SerializeToString()


class _Reapi:
    """The REAPI cache services over :class:`Content`, with faults."""

    def __init__(self, hostile: "HostileRemote") -> None:
        self.hostile = hostile

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        def unary(fn, req):
            return grpc.unary_unary_rpc_method_handler(fn, request_deserializer=req.FromString, response_serializer=_raw)

        return [
            grpc.method_handlers_generic_handler(f"{_RE}.Capabilities", {
                "GetCapabilities": unary(self.GetCapabilities, re_pb2.GetCapabilitiesRequest)}),
            grpc.method_handlers_generic_handler(f"{_RE}.ActionCache", {
                "GetActionResult": unary(self.GetActionResult, re_pb2.GetActionResultRequest),
                "UpdateActionResult": unary(self.UpdateActionResult, re_pb2.UpdateActionResultRequest)}),
            grpc.method_handlers_generic_handler(f"{_RE}.ContentAddressableStorage", {
                "FindMissingBlobs": unary(self.FindMissingBlobs, re_pb2.FindMissingBlobsRequest),
                "BatchUpdateBlobs": unary(self.BatchUpdateBlobs, re_pb2.BatchUpdateBlobsRequest),
                "BatchReadBlobs": unary(self.BatchReadBlobs, re_pb2.BatchReadBlobsRequest)}),
            grpc.method_handlers_generic_handler("google.bytestream.ByteStream", {
                "Read": grpc.unary_stream_rpc_method_handler(
                    self.Read, request_deserializer=bs_pb2.ReadRequest.FromString, response_serializer=_raw),
                "Write": grpc.stream_unary_rpc_method_handler(
                    self.Write, request_deserializer=bs_pb2.WriteRequest.FromString, response_serializer=_raw)}),
        ]

    def _fault_first(self, request: str, context, stream: bool = False, size: int = 0) -> str:
        """Answer the faults every call shares (they end the call); else the
        fault to apply. A unary answer cannot be cut: it hangs mid-body
        after its headers; a *stream* of answers is cut by the caller."""
        fault = self.hostile.fault.applies(request, self.hostile.stopping, size)
        if fault == "hang-mid-body" and not stream:
            fault = "hang-after-headers"
        if fault == "error":
            context.abort(grpc.StatusCode.UNAVAILABLE, "hostile test server: unavailable")
        if fault == "hang":
            self.hostile.hang_while(context.is_active)
            context.abort(grpc.StatusCode.CANCELLED, "gone")
        if fault == "hang-after-headers":
            context.send_initial_metadata(())
            self.hostile.hang_while(context.is_active)
            context.abort(grpc.StatusCode.CANCELLED, "gone")
        return fault

    @property
    def content(self) -> Content:
        return self.hostile.content

    def GetCapabilities(self, request, context):
        self._fault_first("other", context)
        return re_pb2.ServerCapabilities(cache_capabilities=re_pb2.CacheCapabilities(
            digest_functions=[re_pb2.DigestFunction.SHA256],
            action_cache_update_capabilities=re_pb2.ActionCacheUpdateCapabilities(update_enabled=True),
            max_batch_total_size_bytes=4 << 20,
        ))

    def GetActionResult(self, request, context):
        fault = self._fault_first("ac", context)
        data = self.content.result_bytes(request.action_digest.hash)
        if data is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "no such action")
        if fault == "corrupt":
            return b"\xff" * 16  # does not parse
        result = re_pb2.ActionResult.FromString(data)
        if fault == "truncated":
            kept = list(result.output_files)[: len(result.output_files) // 2]
            del result.output_files[:]
            result.output_files.extend(kept)
        elif fault == "oversized":
            result.stdout_raw = b"x" * (80 << 20)
        return result

    def UpdateActionResult(self, request, context):
        self._fault_first("other", context)
        self.content.set_result(request.action_digest.hash, request.action_result)
        return request.action_result

    def FindMissingBlobs(self, request, context):
        self._fault_first("other", context)
        missing = [d for d in request.blob_digests if self.content.blob(d.hash) is None]
        return re_pb2.FindMissingBlobsResponse(missing_blob_digests=missing)

    def BatchUpdateBlobs(self, request, context):
        self._fault_first("other", context)
        resp = re_pb2.BatchUpdateBlobsResponse()
        for r in request.requests:
            ok = hashlib.sha256(r.data).hexdigest() == r.digest.hash
            if ok:
                self.content.put_bytes(r.data)
            resp.responses.add(digest=r.digest).status.code = 0 if ok else 3
        return resp

    def BatchReadBlobs(self, request, context):
        fault = self._fault_first("cas", context, size=max((d.size_bytes for d in request.digests), default=0))
        resp = re_pb2.BatchReadBlobsResponse()
        for d in request.digests:
            data = self.content.blob(d.hash)
            r = resp.responses.add(digest=d)
            if data is None:
                r.status.code = 5  # NOT_FOUND
            elif fault == "corrupt":
                r.data = flipped(data)
            elif fault == "truncated":
                r.data = data[: len(data) // 2]
            elif fault == "oversized":
                r.data = data + data
            else:
                r.data = data
        return resp

    def Read(self, request, context):
        _, sha, size = request.resource_name.rsplit("/", 2)
        fault = self._fault_first("cas", context, stream=True, size=int(size))
        data = self.content.blob(sha)
        if data is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "no such blob")
        if fault == "corrupt":
            data = flipped(data)
        elif fault in ("truncated", "hang-mid-body"):
            data = data[: len(data) // 2]
        for off in range(0, len(data), _PIECE):
            yield bs_pb2.ReadResponse(data=data[off: off + _PIECE])
        if fault == "hang-mid-body":
            self.hostile.hang_while(context.is_active)
        elif fault == "oversized":
            while context.is_active() and not self.hostile.stopping.is_set():
                yield bs_pb2.ReadResponse(data=os.urandom(_PIECE))

    def Write(self, request_iterator, context):
        self._fault_first("other", context)
        name, parts = None, []
        for req in request_iterator:
            name = name or req.resource_name
            parts.append(req.data)
        data = b"".join(parts)
        _, sha, size = name.rsplit("/", 2)
        if hashlib.sha256(data).hexdigest() != sha or len(data) != int(size):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "not the blob named")
        self.content.put_bytes(data)
        return bs_pb2.WriteResponse(committed_size=len(data))


# ---------------------------------------------------------------- wire-level faults


class SlowRelay:
    """Relays TCP connections to ``127.0.0.1:upstream``, passing what the
    server sends on at *rate* bytes/s (what the client sends goes at once)."""

    def __init__(self, upstream: int, rate: float, stopping: threading.Event) -> None:
        self.upstream, self.rate, self.stopping = upstream, rate, stopping
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, name="slow-relay", daemon=True).start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream))
            self._open += [client, server]
            threading.Thread(target=self._pipe, args=(client, server, None), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, self.rate), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, rate: float | None) -> None:
        try:
            while not self.stopping.is_set():
                data = src.recv(1 << 16)
                if not data:
                    break
                if rate is None:
                    dst.sendall(data)
                    continue
                for i in range(len(data)):
                    if self.stopping.wait(1 / rate):
                        return
                    dst.sendall(data[i: i + 1])
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()
        for s in self._open:
            s.close()


class NeverAccepting:
    """A listener whose accept queue is full: a connection to it never completes."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self._fillers: list[socket.socket] = []
        while True:  # fill the queue until the kernel drops the next SYN
            s = socket.socket()
            s.settimeout(0.1)
            self._fillers.append(s)
            try:
                s.connect(("127.0.0.1", self.port))
            except TimeoutError:
                break

    def close(self) -> None:
        for s in self._fillers:
            s.close()
        self.sock.close()


# ---------------------------------------------------------------- the remote


@dataclass
class HostileRemote:
    """A server for *protocol* (``http`` or ``grpc``) over *content*, with
    the relays that give the wire-level faults; set :attr:`fault`, then
    point the client at :attr:`url`."""

    protocol: str
    content: Content = field(default_factory=Content)
    fault: Fault = field(default_factory=Fault)
    stopping: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> "HostileRemote":
        if self.protocol == "http":
            self._http = _HttpServer(("127.0.0.1", 0), _HttpHandler)
            self._http.hostile = self
            threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
            self.port = self._http.server_address[1]
        elif self.protocol == "grpc":
            big = 128 << 20
            self._grpc = grpc.server(
                futures.ThreadPoolExecutor(max_workers=32),
                handlers=_Reapi(self).handlers(),
                options=[("grpc.max_send_message_length", big), ("grpc.max_receive_message_length", big)],
            )
            self.port = self._grpc.add_insecure_port("127.0.0.1:0")
            self._grpc.start()
        else:
            raise ValueError(f"protocol {self.protocol!r}: http or grpc")
        self._relays: dict[float, SlowRelay] = {}
        self._never = NeverAccepting()
        return self

    @property
    def url(self) -> str:
        """Where a client goes to meet :attr:`fault`."""
        port = self.port
        if self.fault.kind == "slow":
            if self.fault.rate not in self._relays:
                self._relays[self.fault.rate] = SlowRelay(self.port, self.fault.rate, self.stopping)
            port = self._relays[self.fault.rate].port
        elif self.fault.kind == "never-accepts":
            port = self._never.port
        return f"{self.protocol}://127.0.0.1:{port}" + ("/" if self.protocol == "http" else "")

    def hang_while(self, active) -> None:
        """Wait while ``active()`` and the server runs."""
        while active() and not self.stopping.wait(0.02):
            pass

    def hang_until_gone(self, conn: socket.socket) -> None:
        """Say nothing until the client closes *conn* (or the server stops)."""
        while not self.stopping.is_set():
            ready, _, _ = select.select([conn], [], [], 0.05)
            if ready:
                try:
                    if not conn.recv(1 << 16):
                        return
                except OSError:
                    return

    def send_until_gone(self, write) -> None:
        """Keep sending bytes until the client stops reading."""
        try:
            while not self.stopping.is_set():
                write(os.urandom(_PIECE))
        except OSError:
            pass

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        if self.protocol == "http":
            self._http.shutdown()
            self._http.server_close()
        else:
            self._grpc.stop(grace=None)
        for relay in self._relays.values():
            relay.close()
        self._never.close()


__all__ = ["ALL", "KINDS", "Content", "Fault", "HostileRemote", "NeverAccepting", "SlowRelay", "flipped"]
