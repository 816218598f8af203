"""A Bazel HTTP cache client (``http://`` / ``https://``), stdlib only.

The protocol Bazel's ``--remote_cache=http…`` speaks, which plain WebDAV
servers (nginx, Apache), bazel-remote and most CI caches serve:

* ``GET``/``PUT <base>/ac/<key>``: the action result for action key *key*,
  the body a serialized REAPI ``ActionResult`` message;
* ``GET``/``PUT <base>/cas/<sha256>``: a blob, raw bytes;
* a missing entry answers 404. ``HEAD <base>/cas/<sha256>`` tells whether a
  blob is there (and its length, which must be the blob's size).

Uploads are streamed from disk with a ``Content-Length`` and their bytes are
hashed as they go: if a file turns out not to be the blob named, the
connection is dropped before the last byte, so the server never completes
the PUT. Downloads are streamed into a temporary file, verified, then
renamed into place. Connections are kept alive and pooled (thread-safe).

Deadlines (see :mod:`.base`): each operation has one deadline, shared by
its requests (a FindMissing is a HEAD per blob, several at a time; a batch
of blobs is one request after another). The stdlib client has no deadline of
its own, only a timeout per socket call, so the sockets here are
:class:`BoundedSocket` / :class:`BoundedSSLSocket`: before every send and
receive they set their timeout to what is left of the operation's deadline.
A server dripping a byte at a time cannot stretch a call, since each byte's
wait is cut to the time left; name resolution runs in a thread waited for
within the connect bound.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from types import MappingProxyType
from typing import Callable, Iterable, Iterator, Mapping
from urllib.parse import quote

from google.protobuf.message import DecodeError

from .base import (
    CHUNK,
    BlobRef,
    BlobSink,
    CorruptBlob,
    Deadline,
    Limits,
    RemoteAddress,
    RemoteError,
    RemoteTimeout,
    TlsConfig,
    basic_auth_header,
    verified_chunks,
)
from .proto import remote_execution_pb2 as re_pb2

MAX_ACTION_RESULT_SIZE = 64 << 20  # an AC entry bigger than this is not an ActionResult we wrote
FIND_MISSING_PARALLELISM = 8
_POOL_SIZE = 8
_OK_PUT = (200, 201, 204)


def resolve_bounded(host: str, port: int, timeout: float) -> list[tuple]:
    """``getaddrinfo`` that gives up after *timeout* seconds (the stdlib call
    cannot be interrupted, so a slow resolver is waited for in a thread)."""
    try:
        ipaddress.ip_address(host)
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except ValueError:
        pass
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["ok"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as e:
            box["err"] = e

    t = threading.Thread(target=run, name=f"mbuild-resolve-{host}", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise RemoteTimeout(f"cannot resolve {host} within {timeout:g} s")
    if "err" in box:
        raise RemoteError(f"cannot resolve {host} ({box['err']})")
    return box["ok"]  # type: ignore[return-value]


class _Bounded:
    """Socket methods that first cut the socket's timeout to what is left of
    :attr:`deadline`, the deadline of the operation using the socket now
    (set for each request; ``None`` leaves the timeout as it is)."""

    deadline: Deadline | None = None

    def _bound(self) -> None:
        if self.deadline is not None:
            self.settimeout(self.deadline.left())  # type: ignore[attr-defined]

    def recv(self, *args, **kwargs):
        self._bound()
        return super().recv(*args, **kwargs)  # type: ignore[misc]

    def recv_into(self, *args, **kwargs):
        self._bound()
        return super().recv_into(*args, **kwargs)  # type: ignore[misc]

    def send(self, *args, **kwargs):
        self._bound()
        return super().send(*args, **kwargs)  # type: ignore[misc]

    def sendall(self, *args, **kwargs):
        self._bound()
        return super().sendall(*args, **kwargs)  # type: ignore[misc]


class BoundedSocket(_Bounded, socket.socket):
    """A TCP socket whose every wait ends by its operation's deadline."""


class BoundedSSLSocket(_Bounded, ssl.SSLSocket):
    """The TLS socket ``SSLContext.wrap_socket`` makes here (its
    ``sslsocket_class``): every read and write ends by the deadline. The
    handshake is one call bounded by the timeout it starts with."""


def open_socket(host: str, port: int, deadline: Deadline) -> BoundedSocket:
    """Resolve and connect within *deadline*, trying each address in turn; the
    socket is left with the time that is left as its timeout."""
    last: Exception | None = None
    for family, type_, proto, _, sockaddr in resolve_bounded(host, port, deadline.left()):
        if deadline.remaining() <= 0:
            break
        sock = BoundedSocket(family, type_, proto)
        try:
            sock.settimeout(deadline.left())
            sock.connect(sockaddr)
            sock.settimeout(deadline.left())
        except (OSError, RemoteTimeout) as e:
            sock.close()
            last = e
            continue
        return sock
    if last is None or isinstance(last, (TimeoutError, RemoteTimeout)):
        raise RemoteTimeout(f"cannot connect within {round(deadline.seconds, 1):g} s")
    raise last


def os_error(e: BaseException, deadline: Deadline) -> RemoteError:
    """A :class:`RemoteError` with a short reason for a transport failure."""
    if isinstance(e, RemoteError):
        return e
    if isinstance(e, TimeoutError):
        return deadline.exceeded()
    if isinstance(e, ConnectionRefusedError):
        return RemoteError("connection refused")
    if isinstance(e, http.client.RemoteDisconnected):
        return RemoteError("the server closed the connection without answering")
    if isinstance(e, (ConnectionResetError, BrokenPipeError)):
        return RemoteError("the server dropped the connection")
    if isinstance(e, ssl.SSLCertVerificationError):
        return RemoteError(f"TLS failure: the server's certificate is not trusted ({e.verify_message}); check the CA certificate")
    if isinstance(e, ssl.SSLError):
        return RemoteError(f"TLS failure: {e.reason or e}")
    if isinstance(e, http.client.HTTPException):
        return RemoteError(f"bad HTTP answer ({type(e).__name__}: {e})")
    return RemoteError(f"{type(e).__name__}: {e}")


class _Reply:
    """A response being read; its socket holds the reads to the deadline."""

    def __init__(self, resp: http.client.HTTPResponse, deadline: Deadline):
        self.resp = resp
        self.status = resp.status
        self._deadline = deadline

    def header(self, name: str) -> str | None:
        return self.resp.getheader(name)

    def content_length(self) -> int | None:
        v = self.header("Content-Length")
        try:
            return int(v) if v is not None else None
        except ValueError:
            return None

    def chunks(self) -> Iterator[bytes]:
        while True:
            try:
                data = self.resp.read(CHUNK)
            except (OSError, http.client.HTTPException) as e:
                raise os_error(e, self._deadline) from None
            if not data:
                return
            yield data

    def read_all(self, limit: int) -> bytes:
        parts: list[bytes] = []
        n = 0
        for data in self.chunks():
            n += len(data)
            if n > limit:
                raise RemoteError(f"answer larger than {limit} bytes")
            parts.append(data)
        return b"".join(parts)


class HttpCache:
    """A Bazel HTTP cache client; see the module docstring."""

    def __init__(
        self,
        addr: RemoteAddress,
        *,
        headers: Mapping[str, str] = MappingProxyType({}),
        tls: TlsConfig | None = None,
        limits: Limits = Limits(),
    ) -> None:
        self.name = addr.display()
        self.addr = addr
        self.limits = limits
        self.timeout = limits.timeout
        self.connect_timeout = limits.connect_timeout
        hdrs: dict[str, str] = {"User-Agent": "mbuild"}
        if addr.username is not None and not any(k.lower() == "authorization" for k in headers):
            hdrs["Authorization"] = basic_auth_header(addr.username, addr.password)
        hdrs.update(headers)
        self._headers = hdrs
        self._ssl: ssl.SSLContext | None = None
        if addr.secure:
            ctx = ssl.create_default_context(cafile=str(tls.ca_cert) if tls and tls.ca_cert else None)
            if tls and tls.client_cert:
                ctx.load_cert_chain(str(tls.client_cert), str(tls.client_key))
            ctx.sslsocket_class = BoundedSSLSocket
            self._ssl = ctx
        self._pool: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._closed = False

    # ------------------------------------------------------------ plumbing

    def url_path(self, kind: str, key: str) -> str:
        """The request path for entry *key* of *kind* (``ac`` or ``cas``)."""
        return quote(self.addr.path, safe="/") + f"{kind}/{key}"

    def _new_conn(self) -> http.client.HTTPConnection:
        """A connection (not yet connected) whose socket will be a
        :class:`BoundedSocket`, reached within the connect bound of the
        deadline in its ``deadline`` attribute (set by each request)."""
        if self._ssl is not None:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                self.addr.host, self.addr.port, context=self._ssl
            )
        else:
            conn = http.client.HTTPConnection(self.addr.host, self.addr.port)

        def reach(address, *_):
            deadline = getattr(conn, "deadline", None) or self.limits.deadline()
            return open_socket(*address, deadline.within(self.connect_timeout))

        conn._create_connection = reach  # type: ignore[attr-defined]
        return conn

    def _take(self, *, fresh: bool = False) -> tuple[http.client.HTTPConnection, bool]:
        """A pooled connection (``reused`` True) or, when the pool is empty
        or ``fresh`` is asked for, a new one."""
        if not fresh:
            with self._lock:
                if self._pool:
                    return self._pool.pop(), True
        return self._new_conn(), False

    def _give_back(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if not self._closed and len(self._pool) < _POOL_SIZE:
                self._pool.append(conn)
                return
        conn.close()

    @contextmanager
    def _exchange(
        self,
        method: str,
        path: str,
        deadline: Deadline,
        *,
        body: Callable[[], Iterator[bytes]] | None = None,
        length: int | None = None,
        headers: Mapping[str, str] = MappingProxyType({}),
    ) -> Iterator[_Reply]:
        """Send one request and yield its reply. The caller reads the body
        (or not: then the connection is not reused). Transport errors become
        :class:`RemoteError`; a kept-alive connection the server has since
        closed is retried once on a fresh one."""
        for attempt in (0, 1):
            # The retry never takes from the pool: the other idle connections
            # there are likely as stale as the one that just failed.
            conn, reused = self._take(fresh=attempt == 1)
            try:
                reply = self._send(conn, method, path, deadline, body, length, headers)
            except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected) as e:
                conn.close()
                if reused and attempt == 0:
                    continue  # a kept-alive connection the server closed meanwhile: once more
                raise os_error(e, deadline) from None
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                raise os_error(e, deadline) from None
            except BaseException:  # SourceMismatch, RemoteTimeout: the request is cut short
                conn.close()
                raise
            reusable = False
            try:
                yield reply
                reusable = reply.resp.isclosed() and not reply.resp.will_close
            finally:
                if reusable:
                    self._give_back(conn)
                else:
                    conn.close()
            return

    def _send(self, conn, method, path, deadline: Deadline, body, length, headers) -> _Reply:
        deadline.left()
        conn.deadline = deadline  # for connecting (and the TLS handshake), see _new_conn
        if conn.sock is None:
            conn.connect()
        conn.sock.deadline = deadline  # every wait from here on ends by it
        conn.putrequest(method, path, skip_accept_encoding=True)
        for k, v in {**self._headers, **headers}.items():
            conn.putheader(k, v)
        if length is not None:
            conn.putheader("Content-Length", str(length))
        conn.endheaders()
        if body is not None:
            for data in body():
                conn.send(data)
        return _Reply(conn.getresponse(), deadline)

    def _status_error(self, method: str, kind: str, reply: _Reply) -> RemoteError:
        st = reply.status
        hint = ""
        if st in (401, 403):
            hint = "; check the credentials"
        return RemoteError(f"HTTP {st} {reply.resp.reason} for {method} /{kind}/…{hint}")

    # ------------------------------------------------------------ action cache

    def get_action_result(self, key_hex: str) -> re_pb2.ActionResult | None:
        deadline = self.limits.deadline()
        with self._exchange("GET", self.url_path("ac", key_hex), deadline) as reply:
            if reply.status == 404:
                reply.read_all(1 << 16)
                return None
            if reply.status != 200:
                raise self._status_error("GET", "ac", reply)
            data = reply.read_all(MAX_ACTION_RESULT_SIZE)
        try:
            return re_pb2.ActionResult.FromString(data)
        except DecodeError:
            raise CorruptBlob(f"the action result for key {key_hex[:12]}… does not parse") from None

    def put_action_result(self, key_hex: str, result: re_pb2.ActionResult) -> None:
        data = result.SerializeToString()
        with self._exchange(
            "PUT",
            self.url_path("ac", key_hex),
            self.limits.deadline(),
            body=lambda: iter((data,)),
            length=len(data),
            headers={"Content-Type": "application/octet-stream"},
        ) as reply:
            reply.read_all(1 << 16)
            if reply.status not in _OK_PUT:
                raise self._status_error("PUT", "ac", reply)

    # ------------------------------------------------------------ CAS

    def _has(self, blob: BlobRef, deadline: Deadline) -> bool:
        with self._exchange("HEAD", self.url_path("cas", blob.hash), deadline) as reply:
            reply.read_all(0)
            if reply.status == 404:
                return False
            if reply.status != 200:
                raise self._status_error("HEAD", "cas", reply)
            n = reply.content_length()
            # A stored length that is not the blob's size is a broken entry:
            # report it missing so that it is uploaded again.
            return n is None or n == blob.size

    def find_missing(self, blobs: Iterable[BlobRef]) -> set[BlobRef]:
        wanted = list(dict.fromkeys(blobs))
        deadline = self.limits.deadline()  # for all the HEADs together
        if len(wanted) <= 1:
            return {b for b in wanted if not self._has(b, deadline)}
        with ThreadPoolExecutor(max_workers=min(FIND_MISSING_PARALLELISM, len(wanted))) as ex:
            present = list(ex.map(lambda b: self._has(b, deadline), wanted))
        return {b for b, p in zip(wanted, present) if not p}

    def _put(self, blob: BlobRef, source: bytes | Path, deadline: Deadline) -> None:
        def body() -> Iterator[bytes]:
            return (data for data, _ in verified_chunks(blob, source))

        with self._exchange(
            "PUT",
            self.url_path("cas", blob.hash),
            deadline,
            body=body,
            length=blob.size,
            headers={"Content-Type": "application/octet-stream"},
        ) as reply:
            reply.read_all(1 << 16)
            if reply.status not in _OK_PUT:
                raise self._status_error("PUT", "cas", reply)

    def put_blob(self, blob: BlobRef, source: bytes | Path) -> None:
        self._put(blob, source, self.limits.deadline(blob.size))

    def put_blobs(self, items: Iterable[tuple[BlobRef, bytes | Path]]) -> None:
        """Upload several blobs, one request after another, within one deadline."""
        sources = dict(items)
        deadline = self.limits.deadline(sum(b.size for b in sources))
        for blob, source in sources.items():
            self._put(blob, source, deadline)

    def _get(self, blob: BlobRef, dest: Path, deadline: Deadline) -> bool:
        with self._exchange("GET", self.url_path("cas", blob.hash), deadline) as reply:
            if reply.status == 404:
                reply.read_all(1 << 16)
                return False
            if reply.status != 200:
                raise self._status_error("GET", "cas", reply)
            n = reply.content_length()
            if n is not None and n != blob.size:
                raise CorruptBlob(f"blob {blob.hash[:12]}…/{blob.size} is stored with {n} bytes", blob)
            with BlobSink(blob, Path(dest)) as sink:
                for data in reply.chunks():
                    sink.write(data)
                sink.commit()
        return True

    def get_blob(self, blob: BlobRef, dest: Path) -> bool:
        return self._get(blob, dest, self.limits.deadline(blob.size))

    def get_blobs(self, items: Iterable[tuple[BlobRef, Path]]) -> dict[BlobRef, bool]:
        """Download several blobs, one request after another, within one
        deadline; each value says whether that blob was found (and written)."""
        items = list(items)
        deadline = self.limits.deadline(sum(b.size for b in dict(items)))
        found: dict[BlobRef, bool] = {}
        corrupt: CorruptBlob | None = None
        for blob, dest in items:
            try:
                found[blob] = self._get(blob, dest, deadline)
            except CorruptBlob as e:
                found[blob] = False
                corrupt = corrupt or e
        if corrupt is not None:
            raise CorruptBlob(corrupt.reason, corrupt.blob, found=found)
        return found

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, []
        for conn in pool:
            conn.close()

    def __repr__(self) -> str:
        return f"HttpCache({self.name!r})"


__all__ = ["BoundedSSLSocket", "BoundedSocket", "HttpCache", "open_socket", "resolve_bounded"]
