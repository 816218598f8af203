"""A BuildKit session: the services the client serves back to the daemon.

During a solve the daemon calls *into* the client: to read local directories
(FileSync), to hand back exported files (FileSend), to ask for registry
credentials (Auth) and secrets (Secrets). BuildKit carries this over one byte
stream, ``Control.Session``, on which the roles flip: the daemon is the
HTTP/2 client and we are the gRPC server.

grpcio cannot serve on a socket it did not accept, so the session runs a
private grpcio server on a unix socket and connects a plain socket to it.
With a Docker engine that socket is spliced to the engine's ``POST /session``
HTTP upgrade: two kernel sockets, nothing buffered in between, so memory
stays flat however fast files are sent. With a standalone buildkitd the bytes
are pumped through the ``Control.Session`` gRPC stream instead.

The daemon health-checks the session (every 1-5 s depending on version; a
missed check closes the session), so health is always served, and the server
has enough threads that long FileSync calls never starve it.
"""

from __future__ import annotations

import os
import secrets as _random
import socket
import threading
from concurrent import futures
from typing import Iterator, Protocol, Sequence

import grpc

from .proto import control_pb2, control_pb2_grpc
from . import socketdirs
from .transport import MAX_MESSAGE, Connection, splice_upgraded

HEALTH_CHECK = "/grpc.health.v1.Health/Check"
_SERVING = b"\x08\x01"  # grpc.health.v1.HealthCheckResponse{status: SERVING}


class SessionService(Protocol):
    """Something a session serves: it names its methods and registers them."""

    methods: Sequence[str]  # full gRPC method names, e.g. /moby.filesync.v1.FileSync/DiffCopy

    def register(self, server: grpc.Server) -> None: ...


def _health_handler() -> grpc.GenericRpcHandler:
    check = grpc.unary_unary_rpc_method_handler(lambda request, context: _SERVING)
    return grpc.method_handlers_generic_handler("grpc.health.v1.Health", {"Check": check})


def new_session_id() -> str:
    """A random session id in BuildKit's style (25 lowercase alphanumerics)."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(_random.choice(alphabet) for _ in range(25))


class Session:
    """An attached session. Use as a context manager around a solve."""

    def __init__(self, connection: Connection, services: Sequence[SessionService] = (),
                 shared_key: str = "", name: str = "buildkit-py", grpc_stream: bool = False) -> None:
        self.id = new_session_id()
        self._connection = connection
        self._services = list(services)
        self._shared_key = shared_key or self.id
        self._name = name
        self._grpc_stream = grpc_stream  # use Control.Session even on a Docker engine
        self._dir = socketdirs.make("session")
        self._server: grpc.Server | None = None
        self._sock: socket.socket | None = None
        self._call = None
        self._pump: threading.Thread | None = None

    @property
    def methods(self) -> list[str]:
        out = [HEALTH_CHECK]
        for svc in self._services:
            out.extend(svc.methods)
        return out

    def start(self) -> "Session":
        path = os.path.join(self._dir, "session.sock")
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="session"),
            options=[("grpc.max_send_message_length", MAX_MESSAGE),
                     ("grpc.max_receive_message_length", MAX_MESSAGE),
                     # A local source's include patterns arrive as call metadata,
                     # one per file: well past gRPC's default 16 KiB of headers.
                     ("grpc.max_metadata_size", 64 * 1024 * 1024)],
        )
        server.add_generic_rpc_handlers((_health_handler(),))
        for svc in self._services:
            svc.register(server)
        server.add_insecure_port(f"unix:{path}")
        server.start()
        self._server = server
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        self._sock = sock
        metadata = [
            ("x-docker-expose-session-uuid", self.id),
            ("x-docker-expose-session-name", self._name),
            ("x-docker-expose-session-sharedkey", self._shared_key),
        ] + [("x-docker-expose-session-grpc-method", m) for m in self.methods]
        address = self._connection.address
        if address.scheme == "docker" and not self._grpc_stream:
            headers: dict[str, list[str]] = {}
            for key, value in metadata:
                name = "-".join(part.capitalize() for part in key.split("-"))
                headers.setdefault(name, []).append(value)
            self._pump = splice_upgraded(sock, address.docker, "/session", headers)
        else:
            stub = control_pb2_grpc.ControlStub(self._connection.channel)
            self._call = stub.Session(self._outgoing(sock), metadata=metadata)
            self._pump = threading.Thread(target=self._incoming, args=(sock,), daemon=True,
                                          name="session-pump")
            self._pump.start()
        return self

    def _outgoing(self, sock: socket.socket) -> Iterator[control_pb2.BytesMessage]:
        while True:
            try:
                data = sock.recv(262144)
            except OSError:
                return
            if not data:
                return
            yield control_pb2.BytesMessage(data=data)

    def _incoming(self, sock: socket.socket) -> None:
        try:
            for msg in self._call:
                sock.sendall(msg.data)
        except (grpc.RpcError, OSError):
            pass
        finally:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self) -> None:
        """End the request stream (the daemon then drops the session) and stop serving."""
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._pump is not None:
            self._pump.join(timeout=5)
            if self._pump.is_alive() and self._call is not None:
                self._call.cancel()
                self._pump.join(timeout=2)
        if self._sock is not None:
            self._sock.close()
        if self._server is not None:
            self._server.stop(grace=1).wait(2)
        socketdirs.remove(self._dir)

    def __enter__(self) -> "Session":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
