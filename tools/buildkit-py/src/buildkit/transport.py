"""gRPC channels to BuildKit daemons (addresses: :mod:`buildkit.address`).

``docker://`` reaches the BuildKit embedded in a Docker engine. The engine
answers ``POST /grpc`` with ``Upgrade: h2c`` by turning the HTTP connection
into a plain HTTP/2 gRPC connection to BuildKit. grpcio cannot dial through an
HTTP upgrade, so :class:`UpgradeRelay` listens on a private unix socket and,
for each connection grpcio opens, dials the engine (unix or TCP, with TLS),
does the upgrade and splices the two sockets. Written here because no Python
library does it. ``unix://`` and ``tcp://`` (optionally TLS) reach a
standalone buildkitd directly.

:func:`connect` fails within a bounded time (4 s by default) with an
:class:`~buildkit.errors.Unreachable` that names the address and the reason.

Splicing: plain sockets are copied by two threads, one per direction. A TLS
socket is never used from two threads at once (OpenSSL objects are not safe
for that), so a TLS splice runs on one asyncio loop instead, which drives the
TLS record layer from a single thread.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import threading
from typing import Mapping, Sequence

import grpc

from . import socketdirs
from .address import Address, parse_address
from .dockerhost import DockerHost
from .errors import Unreachable
from .tls import TLSConfig

CONNECT_TIMEOUT = 4.0  # the whole connect stays under 5 s
# BuildKit definitions and FileSync chunks stay well below this, but image
# configs and status batches can be large.
MAX_MESSAGE = 64 * 1024 * 1024
CHANNEL_OPTIONS = (
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.enable_http_proxy", 0),
)
_CHUNK = 262144

__all__ = ["Address", "Connection", "TLSConfig", "UpgradeRelay", "connect", "open_upgraded", "parse_address",
           "splice_upgraded"]


# --------------------------------------------------------------------------- docker upgrades


def _upgrade_request(route: str, headers: Mapping[str, Sequence[str]] | None) -> bytes:
    lines = [f"POST {route} HTTP/1.1", "Host: docker", "Connection: Upgrade", "Upgrade: h2c", "Content-Length: 0"]
    for key, values in (headers or {}).items():
        lines.extend(f"{key}: {v}" for v in values)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _check_upgrade_answer(head: bytes, route: str) -> None:
    status = head.split(b"\r\n", 1)[0].decode("latin-1")
    if " 101 " not in status + " ":
        raise OSError(f"engine answered {route} with {status!r}, not 101 Switching Protocols")


def open_upgraded(host: DockerHost | str, route: str, headers: Mapping[str, Sequence[str]] | None = None,
                  timeout: float = CONNECT_TIMEOUT) -> tuple[socket.socket, bytes]:
    """Dial the engine and upgrade ``POST route`` to h2c.

    Returns the socket and any bytes the engine sent after its ``101`` answer.
    ``host`` may be a socket path. Raises OSError (``ssl.SSLError`` included).
    """
    if isinstance(host, str):
        host = DockerHost("unix", path=host)
    s = host.dial(timeout)
    try:
        s.sendall(_upgrade_request(route, headers))
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                raise OSError(f"engine closed the connection during {route} upgrade")
            buf += chunk
            if len(buf) > 65536:
                raise OSError(f"engine sent an oversized answer to {route}")
        head, rest = buf.split(b"\r\n\r\n", 1)
        _check_upgrade_answer(head, route)
        s.settimeout(None)
        return s, rest
    except BaseException:
        s.close()
        raise


def _shutdown(sock: socket.socket, how: int) -> None:
    try:
        sock.shutdown(how)
    except OSError:
        pass


def splice(a: socket.socket, b: socket.socket, first: bytes = b"") -> None:
    """Copy bytes both ways between two plain sockets until either side closes."""

    def pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(_CHUNK)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _shutdown(dst, socket.SHUT_WR)
            _shutdown(src, socket.SHUT_RD)

    if first:
        try:
            a.sendall(first)
        except OSError:
            pass
    t = threading.Thread(target=pump, args=(b, a), daemon=True, name="splice")
    t.start()
    pump(a, b)
    t.join()
    a.close()
    b.close()


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, half_close: bool) -> None:
    try:
        while True:
            data = await reader.read(_CHUNK)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
        pass
    finally:
        try:
            if half_close and writer.can_write_eof():
                writer.write_eof()
            else:
                writer.close()
        except (OSError, RuntimeError):
            pass


async def _tls_splice(local: socket.socket, host: DockerHost, route: str,
                      headers: Mapping[str, Sequence[str]] | None, timeout: float, on_ready) -> None:
    ctx = host.tls.ssl_context()
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host.host, host.port, ssl=ctx,
                                    server_hostname=host.tls.server_name or host.host), timeout)
        writer.write(_upgrade_request(route, headers))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        _check_upgrade_answer(head[:-4], route)
    except BaseException as e:  # noqa: BLE001 - handed to the waiting thread
        on_ready(e if isinstance(e, (OSError, ssl.SSLError)) else OSError(str(e) or type(e).__name__))
        local.close()
        return
    on_ready(None)
    lreader, lwriter = await asyncio.open_connection(sock=local)
    await asyncio.gather(_copy(reader, lwriter, True), _copy(lreader, writer, False))
    for w in (writer, lwriter):
        w.close()


def splice_upgraded(local: socket.socket, host: DockerHost, route: str,
                    headers: Mapping[str, Sequence[str]] | None = None,
                    timeout: float = CONNECT_TIMEOUT) -> threading.Thread:
    """Upgrade ``POST route`` on the engine and splice it to ``local``, in a
    background thread; returns once the upgrade is done (the thread runs
    until either side closes). Raises OSError if the upgrade fails."""
    if host.tls is None:
        upstream, rest = open_upgraded(host, route, headers, timeout)
        t = threading.Thread(target=splice, args=(local, upstream, rest), daemon=True, name="splice")
        t.start()
        return t
    outcome: list[BaseException | None] = []
    done = threading.Event()

    def on_ready(error: BaseException | None) -> None:
        outcome.append(error)
        done.set()

    t = threading.Thread(target=lambda: asyncio.run(_tls_splice(local, host, route, headers, timeout, on_ready)),
                         daemon=True, name="tls-splice")
    t.start()
    done.wait()
    if outcome[0] is not None:
        raise outcome[0]
    return t


class UpgradeRelay:
    """A unix socket that turns each accepted connection into ``POST /grpc`` on the engine."""

    def __init__(self, host: DockerHost) -> None:
        self.host = host
        self._dir = socketdirs.make("relay")
        self.path = os.path.join(self._dir, "grpc.sock")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.path)
        self._listener.listen(16)
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name="grpc-relay").start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True, name="grpc-relay-conn").start()

    def _serve(self, conn: socket.socket) -> None:
        # Bytes the engine sends right after its 101 (its HTTP/2 SETTINGS)
        # belong to the gRPC client: the splice forwards them first.
        try:
            splice_upgraded(conn, self.host, "/grpc")
        except OSError:
            conn.close()

    def close(self) -> None:
        self._closed = True
        try:
            self._listener.close()
        finally:
            socketdirs.remove(self._dir)


# --------------------------------------------------------------------------- channels


class Connection:
    """An open gRPC channel to a BuildKit daemon, with whatever relay it needs."""

    def __init__(self, address: Address, channel: grpc.Channel, relay: UpgradeRelay | None = None) -> None:
        self.address = address
        self.channel = channel
        self._relay = relay

    def close(self) -> None:
        self.channel.close()
        if self._relay is not None:
            self._relay.close()

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _unreachable(address: Address, e: BaseException) -> Unreachable:
    if isinstance(e, ssl.SSLCertVerificationError):
        why = f"TLS: the server's certificate is not trusted ({e.verify_message or e.reason})"
        return Unreachable(address, why, "tls")
    if isinstance(e, ssl.SSLError):
        text = str(e.reason or e).lower().replace("_", " ")
        if "certificate" in text or "alert" in text:
            why = f"TLS: the server refused our client certificate ({e.reason or e})"
        else:
            why = f"TLS: {e.reason or e}"
        return Unreachable(address, why, "tls")
    if isinstance(e, FileNotFoundError):
        return Unreachable(address, "no socket there", "missing")
    if isinstance(e, ConnectionRefusedError):
        return Unreachable(address, "connection refused", "refused")
    if isinstance(e, (TimeoutError, socket.timeout)):
        return Unreachable(address, "no answer in time", "timeout")
    why = (e.strerror if isinstance(e, OSError) and e.strerror else str(e)) or type(e).__name__
    return Unreachable(address, why)


def connect(address: Address | str, timeout: float = CONNECT_TIMEOUT) -> Connection:
    """Open a channel and wait (at most ``timeout``) until the daemon answers."""
    if isinstance(address, str):
        address = parse_address(address)
    relay = None
    if address.scheme == "docker":
        # Fail fast with the engine's own words before grpcio starts retrying.
        try:
            s, _ = open_upgraded(address.docker, "/grpc", timeout=timeout)
            s.close()
        except (OSError, ValueError) as e:
            raise _unreachable(address, e) from None
        relay = UpgradeRelay(address.docker)
        channel = grpc.insecure_channel(f"unix:{relay.path}", options=CHANNEL_OPTIONS)
    elif address.scheme == "unix":
        if not os.path.exists(address.path):
            raise Unreachable(address, f"no socket at {address.path}", "missing")
        channel = grpc.insecure_channel(f"unix:{address.path}", options=CHANNEL_OPTIONS)
    else:
        target = f"{address.host}:{address.port}"
        try:  # a refused or unroutable address fails at once, not after the timeout
            socket.create_connection((address.host, address.port), timeout=timeout).close()
        except OSError as e:
            raise _unreachable(address, e) from None
        if address.tls is not None:
            options = CHANNEL_OPTIONS
            if address.tls.server_name:
                options = options + (("grpc.ssl_target_name_override", address.tls.server_name),)
            channel = grpc.secure_channel(target, address.tls.grpc_credentials(), options=options)
        else:
            channel = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
    except grpc.FutureTimeoutError:
        channel.close()
        if relay:
            relay.close()
        raise Unreachable(address, f"no answer within {timeout:g}s", "timeout") from None
    return Connection(address, channel, relay)
