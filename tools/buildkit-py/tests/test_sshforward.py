"""SSH agent forwarding without an engine: buildx's --ssh syntax, socket
checks, and the read-only relay of the agent protocol over the session."""

from __future__ import annotations

import socket
import struct
import threading

import grpc
import pytest

from buildkit.proto import sshforward_pb2, sshforward_pb2_grpc
from buildkit.sshforward import (AGENT_FAILURE, SSH_ID_KEY, SSHAgent, SSHError, SSHForwardService, agent_frames,
                                 parse_ssh_specs)


def msg(kind: int, body: bytes = b"") -> bytes:
    return struct.pack(">IB", 1 + len(body), kind) + body


class FakeAgent:
    """A unix-socket agent that answers list (11 -> 12, no keys) and sign
    (13 -> 14), and records every request type it receives."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.seen: list[int] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            while True:
                head = conn.recv(4, socket.MSG_WAITALL)
                if len(head) < 4:
                    return
                body = conn.recv(struct.unpack(">I", head)[0], socket.MSG_WAITALL)
                self.seen.append(body[0])
                conn.sendall(msg(12, b"\0\0\0\0") if body[0] == 11 else msg(14, b"signed:" + body[1:]))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def agent(sock_dir):
    a = FakeAgent(str(sock_dir / "agent.sock"))
    yield a
    a.close()


@pytest.mark.parametrize("spec, want", [
    ("default", SSHAgent("default")),
    ("github", SSHAgent("github")),
    ("github=/run/agent.sock", SSHAgent("github", "/run/agent.sock")),
    ("default=", SSHAgent("default")),
])
def test_buildx_ssh_specs_parse(spec, want):
    assert SSHAgent.parse(spec) == want


def test_bad_ssh_specs_and_agents_are_one_line_errors(tmp_path, agent):
    with pytest.raises(SSHError, match="has no id"):
        SSHAgent.parse("=/x")
    with pytest.raises(SSHError, match="one agent socket per id"):
        SSHAgent.parse("k=/a,/b")
    with pytest.raises(SSHError, match="given twice"):
        parse_ssh_specs(["default", "default=/x"])
    with pytest.raises(SSHError, match="SSH_AUTH_SOCK is not set"):
        SSHAgent().socket_path({})
    with pytest.raises(SSHError, match="no agent socket at"):
        SSHAgent("k", str(tmp_path / "nothing")).socket_path({})
    key = tmp_path / "id_ed25519"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    with pytest.raises(SSHError) as info:
        SSHAgent("k", str(key)).socket_path({})
    assert "is not an agent socket" in str(info.value) and f"ssh-add {key}" in str(info.value)
    assert "\n" not in str(info.value)
    assert SSHAgent().socket_path({"SSH_AUTH_SOCK": agent.path}) == agent.path


def test_agent_frames_are_reassembled_from_any_cut():
    stream = msg(11) + msg(13, b"x" * 300) + msg(11)
    for cut in (1, 3, 4, 5, 7, 100):
        chunks = [stream[i:i + cut] for i in range(0, len(stream), cut)]
        assert list(agent_frames(chunks)) == [msg(11), msg(13, b"x" * 300), msg(11)]
    with pytest.raises(SSHError, match="ended inside a message"):
        list(agent_frames([msg(13, b"abc")[:-1]]))
    with pytest.raises(SSHError, match="not the SSH agent protocol"):
        list(agent_frames([struct.pack(">I", 1 << 30)]))


def forward(stub, requests: list[bytes], agent_id: str | None = None) -> list[bytes]:
    md = ((SSH_ID_KEY, agent_id),) if agent_id else ()
    call = stub.ForwardAgent(iter([sshforward_pb2.BytesMessage(data=r) for r in requests]), metadata=md)
    return [m.data for m in call]


def test_only_listing_and_signing_reach_the_agent(serve, agent):
    stub = sshforward_pb2_grpc.SSHStub(serve(SSHForwardService({"deploy": SSHAgent("deploy", agent.path)})))
    stub.CheckAgent(sshforward_pb2.CheckAgentRequest(ID="deploy"))
    add_key, remove_all, lock, extension = msg(17, b"key"), msg(19), msg(22, b"pw"), msg(27, b"ext")
    stream = msg(11) + add_key + msg(13, b"blob") + remove_all + lock + extension
    answers = forward(stub, [stream[:3], stream[3:10], stream[10:]], agent_id="deploy")
    assert answers == [msg(12, b"\0\0\0\0"), AGENT_FAILURE, msg(14, b"signed:blob"), AGENT_FAILURE,
                       AGENT_FAILURE, AGENT_FAILURE]
    assert agent.seen == [11, 13]


def test_an_agent_that_is_not_forwarded_is_not_found(serve, agent):
    stub = sshforward_pb2_grpc.SSHStub(serve(SSHForwardService({"default": SSHAgent("default", agent.path)})))
    stub.CheckAgent(sshforward_pb2.CheckAgentRequest())  # empty id: "default"
    assert forward(stub, [msg(11)]) == [msg(12, b"\0\0\0\0")]
    for call in (lambda: stub.CheckAgent(sshforward_pb2.CheckAgentRequest(ID="other")),
                 lambda: forward(stub, [msg(11)], agent_id="other")):
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        assert "no SSH agent 'other' is forwarded by the client (forwarded: default)" in info.value.details()
