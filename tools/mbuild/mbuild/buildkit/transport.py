"""Addresses of BuildKit daemons, and gRPC channels to them.

Three kinds of address:

``docker://`` (default) or ``docker:///path/to/docker.sock``
    The BuildKit embedded in a Docker engine. The engine answers
    ``POST /grpc`` with ``Upgrade: h2c`` by turning the HTTP connection into a
    plain HTTP/2 gRPC connection to ``moby.buildkit.v1.Control``. grpcio cannot
    dial through an HTTP upgrade, so :class:`UpgradeRelay` listens on a private
    unix socket and, for each connection grpcio opens, dials the engine, does
    the upgrade and splices the two sockets. This is written here rather than
    taken from a library because no Python library does it.
``unix:///run/buildkit/buildkitd.sock``
    A standalone buildkitd.
``tcp://host:port``
    A remote buildkitd, optionally with TLS (:class:`TLSConfig`).

:func:`connect` fails within a bounded time (5 s by default) with a one-line
error that names the address and says what to do.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import grpc

from ..errors import BuildFailure, ConfigError

DEFAULT_DOCKER_SOCKET = "/var/run/docker.sock"
CONNECT_TIMEOUT = 4.0  # the whole connect stays under 5 s
# BuildKit definitions and FileSync chunks stay well below this, but image
# configs and status batches can be large; grpc-go servers accept up to 16 MiB
# from BuildKit clients.
MAX_MESSAGE = 64 * 1024 * 1024
CHANNEL_OPTIONS = (
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.enable_http_proxy", 0),
)


@dataclass(frozen=True)
class TLSConfig:
    """Client TLS for ``tcp://`` addresses. Paths are PEM files."""

    ca_cert: str | None = None
    cert: str | None = None
    key: str | None = None
    server_name: str | None = None


@dataclass(frozen=True)
class Address:
    """A parsed BuildKit address; ``str()`` gives it back in URL form."""

    scheme: str  # "docker" | "unix" | "tcp"
    path: str = ""  # socket path for docker:// and unix://
    host: str = ""
    port: int = 0
    tls: TLSConfig | None = None

    def __str__(self) -> str:
        if self.scheme == "tcp":
            return f"tcp://{self.host}:{self.port}"
        if self.scheme == "docker" and self.path == DEFAULT_DOCKER_SOCKET:
            return "docker://"
        return f"{self.scheme}://{self.path}"


def parse_address(text: str, tls: TLSConfig | None = None) -> Address:
    """Parse ``docker://``, ``docker:///sock``, ``unix:///sock`` or ``tcp://h:p``."""
    text = (text or "docker://").strip()
    parts = urlsplit(text)
    scheme = parts.scheme
    if scheme == "docker":
        path = parts.path or DEFAULT_DOCKER_SOCKET
        if parts.netloc:
            raise ConfigError(
                f"BuildKit address {text!r}: a docker address names a socket path, "
                "like docker:///var/run/docker.sock"
            )
        return Address("docker", path=path)
    if scheme == "unix":
        if not parts.path:
            raise ConfigError(f"BuildKit address {text!r}: use unix:///path/to/buildkitd.sock")
        return Address("unix", path=parts.path)
    if scheme == "tcp":
        try:
            host, port = parts.hostname, parts.port
        except ValueError:
            host, port = None, None
        if not host or not port:
            raise ConfigError(f"BuildKit address {text!r}: use tcp://HOST:PORT")
        return Address("tcp", host=host, port=port, tls=tls)
    raise ConfigError(
        f"BuildKit address {text!r}: unknown scheme; use docker://, "
        "docker:///path/to/docker.sock, unix:///path or tcp://host:port"
    )


def _hint(address: Address) -> str:
    if address.scheme == "docker":
        return "start the Docker engine (scripts/env-up) or set buildkit.address in WORKSPACE.toml"
    if address.scheme == "unix":
        return "start buildkitd on that socket or set buildkit.address in WORKSPACE.toml"
    return "check that buildkitd listens there and the network allows it, or set buildkit.address in WORKSPACE.toml"


def unreachable(address: Address, why: str) -> BuildFailure:
    return BuildFailure(f"cannot reach BuildKit at {address}: {why}; {_hint(address)}")


# --------------------------------------------------------------------------- docker upgrade


def open_upgraded(socket_path: str, route: str, headers: dict[str, list[str]] | None = None,
                  timeout: float = CONNECT_TIMEOUT) -> tuple[socket.socket, bytes]:
    """Dial the engine and upgrade ``POST route`` to h2c.

    Returns the socket and any bytes the engine sent after its ``101`` answer.
    Raises OSError on failure.
    """
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(socket_path)
        lines = [f"POST {route} HTTP/1.1", "Host: docker", "Connection: Upgrade",
                 "Upgrade: h2c", "Content-Length: 0"]
        for key, values in (headers or {}).items():
            lines.extend(f"{key}: {v}" for v in values)
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                raise OSError(f"engine closed the connection during {route} upgrade")
            buf += chunk
            if len(buf) > 65536:
                raise OSError(f"engine sent an oversized answer to {route}")
        head, rest = buf.split(b"\r\n\r\n", 1)
        status = head.split(b"\r\n", 1)[0].decode("latin-1")
        if " 101 " not in status + " ":
            raise OSError(f"engine answered {route} with {status!r}, not 101 Switching Protocols")
        s.settimeout(None)
        return s, rest
    except BaseException:
        s.close()
        raise


def splice(a: socket.socket, b: socket.socket, first: bytes = b"") -> None:
    """Copy bytes both ways between two sockets until either side closes."""

    def pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(262144)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
                try:
                    sock.shutdown(how)
                except OSError:
                    pass

    if first:
        a.sendall(first)
    t = threading.Thread(target=pump, args=(b, a), daemon=True, name="splice")
    t.start()
    pump(a, b)
    t.join()
    a.close()
    b.close()


class UpgradeRelay:
    """A unix socket that turns each accepted connection into ``POST /grpc``."""

    def __init__(self, docker_socket: str) -> None:
        self.docker_socket = docker_socket
        self._dir = tempfile.mkdtemp(prefix="mbuild-relay-")
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
        try:
            upstream, rest = open_upgraded(self.docker_socket, "/grpc")
        except OSError:
            conn.close()
            return
        # Bytes the engine sent right after its 101 (its HTTP/2 SETTINGS)
        # belong to the gRPC client.
        splice(conn, upstream, first=rest)

    def close(self) -> None:
        self._closed = True
        try:
            self._listener.close()
        finally:
            for p in (self.path,):
                try:
                    os.unlink(p)
                except OSError:
                    pass
            try:
                os.rmdir(self._dir)
            except OSError:
                pass


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


def _read(path: str | None) -> bytes | None:
    return Path(path).read_bytes() if path else None


def connect(address: Address | str, timeout: float = CONNECT_TIMEOUT) -> Connection:
    """Open a channel and wait (at most ``timeout``) until the daemon answers."""
    if isinstance(address, str):
        address = parse_address(address)
    relay = None
    if address.scheme == "docker":
        # Fail fast with the engine's own words before grpcio starts retrying.
        try:
            s, _ = open_upgraded(address.path, "/grpc", timeout=timeout)
            s.close()
        except FileNotFoundError:
            raise unreachable(address, f"no socket at {address.path}") from None
        except OSError as e:
            raise unreachable(address, str(e) or type(e).__name__) from None
        relay = UpgradeRelay(address.path)
        channel = grpc.insecure_channel(f"unix:{relay.path}", options=CHANNEL_OPTIONS)
    elif address.scheme == "unix":
        if not os.path.exists(address.path):
            raise unreachable(address, f"no socket at {address.path}")
        channel = grpc.insecure_channel(f"unix:{address.path}", options=CHANNEL_OPTIONS)
    else:
        target = f"{address.host}:{address.port}"
        try:  # a refused or unroutable address fails at once, not after the timeout
            socket.create_connection((address.host, address.port), timeout=timeout).close()
        except OSError as e:
            raise unreachable(address, e.strerror or str(e) or type(e).__name__) from None
        if address.tls is not None:
            creds = grpc.ssl_channel_credentials(
                root_certificates=_read(address.tls.ca_cert),
                private_key=_read(address.tls.key),
                certificate_chain=_read(address.tls.cert),
            )
            options = CHANNEL_OPTIONS
            if address.tls.server_name:
                options = options + (("grpc.ssl_target_name_override", address.tls.server_name),)
            channel = grpc.secure_channel(target, creds, options=options)
        else:
            channel = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
    except grpc.FutureTimeoutError:
        channel.close()
        if relay:
            relay.close()
        raise unreachable(address, f"no answer within {timeout:g}s") from None
    return Connection(address, channel, relay)
