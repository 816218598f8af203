"""SSH agent forwarding: the session's ``moby.sshforward.v1.SSH`` service.

A step that mounts an SSH socket (``llb.ssh()``, or ``RUN --mount=type=ssh``
in a Dockerfile) gets a socket in its container; every connection a process
makes to it reaches this client as a ``ForwardAgent`` stream, which is relayed
to a running SSH agent here. The private keys never leave the agent: the
step can list them and ask for signatures, nothing else.

::

    agents = parse_ssh_specs(["default"])                 # $SSH_AUTH_SOCK
    agents = parse_ssh_specs(["github=/run/user/1000/gh-agent.sock"])
    SolveRequest(definition=st, ssh=agents)

The relay is read-only, as BuildKit's own client makes it: of the agent
protocol's requests only "list identities" and "sign" reach the agent;
adding, removing or locking keys and extensions are answered with
``SSH_AGENT_FAILURE``. Only agent sockets are forwarded; a key file is
refused with a hint to ``ssh-add`` it to an agent.
"""

from __future__ import annotations

import os
import socket
import stat
import struct
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping

import grpc

from .errors import BuildKitError
from .proto import sshforward_pb2, sshforward_pb2_grpc
from .specs import by_id

DEFAULT_ID = "default"
SSH_ID_KEY = "buildkit.ssh.id"  # ForwardAgent metadata: which agent the stream is for
SERVICE = "moby.sshforward.v1.SSH"
SPEC_SYNTAX = "default | ID | ID=/path/to/agent.sock"

# Agent protocol (draft-miller-ssh-agent): uint32 length, then the type byte.
REQUEST_IDENTITIES = 11
SIGN_REQUEST = 13
FORWARDED_REQUESTS = frozenset({REQUEST_IDENTITIES, SIGN_REQUEST})
AGENT_FAILURE = struct.pack(">IB", 1, 5)
MAX_AGENT_MESSAGE = 256 * 1024  # OpenSSH's own limit


class SSHError(BuildKitError, ValueError):
    """An SSH spec that cannot be parsed, or an agent that cannot be used."""


@dataclass(frozen=True)
class SSHAgent:
    """An SSH agent a build may use under ``id``.

    ``socket`` is the agent's unix socket; None means ``$SSH_AUTH_SOCK`` when
    the solve starts (buildx's ``--ssh default``).
    """

    id: str = DEFAULT_ID
    socket: str | None = None

    @classmethod
    def parse(cls, spec: str) -> "SSHAgent":
        """One ``--ssh`` value: ``default``, ``ID`` or ``ID=/path/to/agent.sock``."""
        sid, eq, paths = spec.strip().partition("=")
        if not sid:
            raise SSHError(f"ssh {spec!r} has no id; use {SPEC_SYNTAX}")
        if not eq or not paths:
            return cls(sid)
        if "," in paths:
            raise SSHError(f"ssh {spec!r}: give one agent socket per id (key files: ssh-add them to an agent)")
        return cls(sid, paths)

    def socket_path(self, environ: Mapping[str, str] = os.environ) -> str:
        """The agent socket to dial, checked now; raises :class:`SSHError` saying what to do."""
        path = self.socket
        if path is None:
            path = environ.get("SSH_AUTH_SOCK", "")
            if not path:
                raise SSHError(f"ssh {self.id!r}: SSH_AUTH_SOCK is not set; start an agent "
                               "(eval \"$(ssh-agent)\" && ssh-add) or give ID=/path/to/agent.sock")
        path = os.path.expanduser(path)
        try:
            mode = os.stat(path).st_mode
        except OSError as e:
            raise SSHError(f"ssh {self.id!r}: no agent socket at {path}: {e.strerror}") from None
        if not stat.S_ISSOCK(mode):
            raise SSHError(f"ssh {self.id!r}: {path} is not an agent socket; only agents are forwarded: "
                           f"load a key with `ssh-add {path}` and give the agent's socket")
        return path


def parse_ssh_specs(specs: Iterable[str]) -> dict[str, SSHAgent]:
    """``--ssh`` values to the ``SolveRequest.ssh`` mapping (by id); an id
    given twice is an :class:`SSHError`."""
    return by_id((SSHAgent.parse(spec) for spec in specs), "ssh agent", SSHError)


def agent_frames(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Whole agent protocol messages (length prefix included) from a byte
    stream cut anywhere. Raises :class:`SSHError` on a message over 256 KiB
    or a stream that ends inside one."""
    buf = b""
    for chunk in chunks:
        buf += chunk
        while len(buf) >= 4:
            (length,) = struct.unpack(">I", buf[:4])
            if length == 0 or length > MAX_AGENT_MESSAGE:
                raise SSHError(f"agent message of {length} bytes: not the SSH agent protocol")
            if len(buf) < 4 + length:
                break
            yield buf[:4 + length]
            buf = buf[4 + length:]
    if buf:
        raise SSHError("the agent connection ended inside a message")


def _read_exactly(conn: socket.socket, n: int) -> bytes | None:
    parts, got = [], 0
    while got < n:
        data = conn.recv(n - got)
        if not data:
            return None
        parts.append(data)
        got += len(data)
    return b"".join(parts)


def relay(frames: Iterable[bytes], conn: socket.socket) -> Iterator[bytes]:
    """Answer each request in ``frames``: forwarded to the agent on ``conn``
    when it only reads (list, sign), else refused with ``SSH_AGENT_FAILURE``.
    The agent protocol is strictly one answer per request, in order."""
    for frame in frames:
        if frame[4] not in FORWARDED_REQUESTS:
            yield AGENT_FAILURE
            continue
        conn.sendall(frame)
        head = _read_exactly(conn, 4)
        if head is None:
            return
        (length,) = struct.unpack(">I", head)
        if length == 0 or length > MAX_AGENT_MESSAGE:
            raise SSHError(f"the agent answered a message of {length} bytes")
        body = _read_exactly(conn, length)
        if body is None:
            return
        yield head + body


def _shutdown(conn: socket.socket) -> None:
    try:
        conn.shutdown(socket.SHUT_RDWR)  # wakes a recv blocked in the relay
    except OSError:
        pass


class SSHForwardService(sshforward_pb2_grpc.SSHServicer):
    """Serves ``agents`` (by id) to the daemon; their sockets are checked up front."""

    methods = (f"/{SERVICE}/CheckAgent", f"/{SERVICE}/ForwardAgent")

    def __init__(self, agents: Mapping[str, SSHAgent], environ: Mapping[str, str] = os.environ) -> None:
        self._sockets: dict[str, str] = {}
        for key, agent in agents.items():
            if key != agent.id:
                raise SSHError(f"ssh agent {agent.id!r} is filed under the id {key!r}; use the same id")
            self._sockets[key] = agent.socket_path(environ)

    def _missing(self, agent_id: str) -> str:
        have = ", ".join(sorted(self._sockets)) or "none"
        return f"no SSH agent {agent_id!r} is forwarded by the client (forwarded: {have})"

    def CheckAgent(self, request, context):  # noqa: N802 - gRPC method name
        agent_id = request.ID or DEFAULT_ID
        if agent_id not in self._sockets:
            context.abort(grpc.StatusCode.NOT_FOUND, self._missing(agent_id))
        return sshforward_pb2.CheckAgentResponse()

    def ForwardAgent(self, request_iterator, context):  # noqa: N802 - gRPC method name
        agent_id = next((v for k, v in context.invocation_metadata() if k == SSH_ID_KEY and v), DEFAULT_ID)
        path = self._sockets.get(agent_id)
        if path is None:
            context.abort(grpc.StatusCode.NOT_FOUND, self._missing(agent_id))
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(path)
        except OSError as e:
            conn.close()
            context.abort(grpc.StatusCode.UNAVAILABLE, f"cannot connect to SSH agent {agent_id!r} at {path}: "
                          f"{e.strerror}")
        context.add_callback(lambda: _shutdown(conn))
        try:
            for answer in relay(agent_frames(m.data for m in request_iterator), conn):
                yield sshforward_pb2.BytesMessage(data=answer)
        except SSHError as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except OSError as e:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"SSH agent {agent_id!r} at {path}: {e.strerror or e}")
        finally:
            conn.close()

    def register(self, server: grpc.Server) -> None:
        sshforward_pb2_grpc.add_SSHServicer_to_server(self, server)
