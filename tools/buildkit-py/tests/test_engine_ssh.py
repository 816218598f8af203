"""SSH agent forwarding against the engine: a step with an SSH mount lists
and uses the key of a real ssh-agent started here, cannot change the agent,
and a step asking for an agent that is not forwarded fails saying so."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import textwrap

import pytest

from buildkit import exporters, llb
from buildkit.client import SolveRequest
from buildkit.errors import SolveError
from buildkit.sshforward import parse_ssh_specs

from bk_testenv import BASE_IMAGE

pytestmark = pytest.mark.engine

# The base image has python3 but no ssh client: this speaks the agent protocol.
PROBE = textwrap.dedent("""\
    import os, socket, struct
    def call(payload):
        s = socket.socket(socket.AF_UNIX)
        s.connect(os.environ["SSH_AUTH_SOCK"])
        s.sendall(struct.pack(">I", len(payload)) + payload)
        n = struct.unpack(">I", s.recv(4, socket.MSG_WAITALL))[0]
        data = s.recv(n, socket.MSG_WAITALL)
        s.close()
        return data
    def string(b, i):
        n = struct.unpack(">I", b[i:i + 4])[0]
        return b[i + 4:i + 4 + n], i + 4 + n
    def s(b):
        return struct.pack(">I", len(b)) + b
    answer = call(bytes([11]))  # list identities
    assert answer[0] == 12, answer[:1]
    i = 5
    for _ in range(struct.unpack(">I", answer[1:5])[0]):
        blob, i = string(answer, i)
        comment, i = string(answer, i)
        print("key", string(blob, 0)[0].decode(), comment.decode())
        print("sign", call(bytes([13]) + s(blob) + s(b"data to sign") + struct.pack(">I", 0))[0])
    print("remove-all", call(bytes([19]))[0])
""")


@pytest.fixture
def ssh_agent(tmp_path, run_id):
    """A real ssh-agent holding a fresh ed25519 key; yields (socket, comment)."""
    for tool in ("ssh-agent", "ssh-add", "ssh-keygen"):
        assert shutil.which(tool), f"{tool} is missing: apt-get install -y openssh-client"
    sock = str(tmp_path / "agent.sock")
    started = subprocess.run(["ssh-agent", "-s", "-a", sock], capture_output=True, text=True, check=True)
    pid = int(re.search(r"SSH_AGENT_PID=(\d+)", started.stdout).group(1))
    comment = f"buildkit-test-key-{run_id}"
    try:
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(tmp_path / "key")],
                       check=True)
        subprocess.run(["ssh-add", "-q", str(tmp_path / "key")], env={**os.environ, "SSH_AUTH_SOCK": sock},
                       check=True, capture_output=True)
        yield sock, comment
    finally:
        os.kill(pid, 15)


def probe_state(base_config: dict, mount: llb.Mount) -> llb.State:
    st = llb.image(BASE_IMAGE, config=base_config).mkfile("/probe.py", PROBE).run(
        "python3 /probe.py > /agent.txt", mounts=[mount], ignore_cache=True, name="use the forwarded agent").root()
    return llb.scratch().copy(st, "/agent.txt", "/")


def test_a_step_reads_and_uses_the_key_of_a_forwarded_agent(buildkit, base_image_config, ssh_agent, tmp_path,
                                                           monkeypatch):
    sock, comment = ssh_agent
    monkeypatch.setenv("SSH_AUTH_SOCK", sock)  # --ssh default
    out = tmp_path / "out"
    buildkit.solve(SolveRequest(definition=probe_state(base_config=base_image_config, mount=llb.ssh()),
                                exports=(exporters.local_dir(out),), ssh=parse_ssh_specs(["default"])))
    assert (out / "agent.txt").read_text().splitlines() == [
        f"key ssh-ed25519 {comment}",
        "sign 14",  # SSH_AGENT_SIGN_RESPONSE
        "remove-all 5",  # SSH_AGENT_FAILURE: the relay is read-only
    ]
    listed = subprocess.run(["ssh-add", "-l"], env={**os.environ, "SSH_AUTH_SOCK": sock}, capture_output=True,
                            text=True)
    assert comment in listed.stdout  # still in the agent


def test_an_agent_id_by_path_and_one_that_is_not_forwarded(buildkit, base_image_config, ssh_agent, tmp_path,
                                                          monkeypatch):
    sock, comment = ssh_agent
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    out = tmp_path / "out"
    mount = llb.ssh("/run/deploy.sock", id="deploy")
    buildkit.solve(SolveRequest(definition=probe_state(base_image_config, mount), exports=(exporters.local_dir(out),),
                                ssh=parse_ssh_specs([f"deploy={sock}"])))
    assert (out / "agent.txt").read_text().splitlines()[0] == f"key ssh-ed25519 {comment}"
    with pytest.raises(SolveError) as info:
        buildkit.solve(SolveRequest(definition=probe_state(base_image_config, mount),
                                    ssh=parse_ssh_specs([f"other={sock}"])))
    assert "no SSH agent 'deploy' is forwarded by the client (forwarded: other)" in str(info.value)
