"""Build secrets and SSH agents on the engine: declared on container_image
(`secrets`, `ssh`), supplied by `--secret`/`--ssh` as buildx does; a planted
secret is in no layer of the built image, not in the action store, the
progress output or --json; its value is not in the key, and --no-cache runs
the step again. The agent's keys are usable in a step, never copied."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest

from ..conftest import BASE_IMAGE
from .conftest import json_records, remove_images
from .workspaces import MBUILD, Workspace, git, write_tree

pytestmark = pytest.mark.engine

# A step talks to the agent over SSH_AUTH_SOCK with the agent protocol
# (REQUEST_IDENTITIES): the base image has python3, not ssh-add.
COUNT_KEYS = r"""python3 -c '
import os, socket, struct
s = socket.socket(socket.AF_UNIX); s.connect(os.environ["SSH_AUTH_SOCK"])
s.sendall(struct.pack(">IB", 1, 11)); n = struct.unpack(">I", s.recv(4))[0]; body = s.recv(n)
print(struct.unpack(">I", body[1:5])[0])' > /agent-keys"""


def layer_blobs(image: str) -> list[bytes]:
    """Every layer of ``image``, uncompressed (from ``docker save``)."""
    out = []
    with tempfile.TemporaryDirectory(prefix="mbuild-test-layers-") as tmp:
        archive = Path(tmp) / "image.tar"
        subprocess.run(["docker", "save", "-o", str(archive), image], check=True, capture_output=True)
        with tarfile.open(archive) as tar:
            for blob in json.load(tar.extractfile("manifest.json"))[0]["Layers"]:
                data = tar.extractfile(blob).read()
                out.append(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
    return out


@pytest.fixture
def secrets_ws(tmp_path, docker_sdk, run_id):
    import hashlib

    name = f"mbuild-test-secrets-{run_id}-{hashlib.sha256(str(tmp_path).encode()).hexdigest()[:8]}:1"
    root = tmp_path / "ws"
    write_tree(root, {
        "WORKSPACE.toml": f'name = "secrets"\n[images.base]\nref = "{BASE_IMAGE}"\n',
        ".npmrc-test": "file-secret-value-" + run_id + "\n",
        ".dockerignore": ".npmrc-test\n",
        "img/BUILD": f"""
            container_image(
                name = "app",
                base = "base",
                secrets = {{"token": "env:MBUILD_TEST_TOKEN", "npmrc": "file:.npmrc-test"}},
                commands = [
                    # The run id keeps BuildKit's own cache (keyed without the secret too) out of the test.
                    "echo {run_id} > /id && wc -c < /run/secrets/token > /token-size && cat /run/secrets/token",
                    "sha256sum < /run/secrets/npmrc > /npmrc-sum",
                ],
                image = "{name}",
            )
            container_image(name = "agent", base = "base", ssh = ["default"],
                            commands = [{COUNT_KEYS!r}], image = "{name.replace(':1', '-agent:1')}")
            """,
    })
    git(root, "init", "-q")
    ws = Workspace(root, tmp_path / "cache", {"app": name, "agent": name.replace(":1", "-agent:1")})
    yield ws
    remove_images(docker_sdk, ws.names.values())


def test_a_secret_reaches_its_step_and_nothing_else(secrets_ws, run_id):
    ws = secrets_ws
    planted = f"planted-secret-{run_id}-value"
    env = {"MBUILD_TEST_TOKEN": planted}
    result = ws.mbuild("build", "//img:app", "--json", "--progress", "plain", env=env)
    record = json_records(result.stdout)["//img:app"]
    image = ws.names["app"]
    out = subprocess.run(["docker", "run", "--rm", image, "cat", "/token-size", "/npmrc-sum"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == str(len(planted))  # the step read it
    file_value = (ws.root / ".npmrc-test").read_bytes()
    import hashlib

    assert out[1] == hashlib.sha256(file_value).hexdigest()
    for layer in layer_blobs(image):  # in no layer, by value or file
        assert planted.encode() not in layer and file_value.strip() not in layer
    assert planted not in result.stdout and planted not in result.stderr  # --json, progress (masked)
    assert "****" in result.stderr  # the step's `cat` was masked, not dropped
    for path in ws.cache.rglob("*"):  # nor in the action store
        if path.is_file():
            assert planted.encode() not in path.read_bytes(), path
    # The value is not in the key: another value is answered from the cache...
    again = ws.build_json("//img:app", env={"MBUILD_TEST_TOKEN": "another-value"})["//img:app"]
    assert again["source"] == "local-cache" and again["key"] == record["key"]
    # ...--secret overrides the declared source, and --no-cache runs the steps again.
    (ws.root / "token.txt").write_text("from-the-command-line")
    rerun = ws.mbuild("build", "//img:app", "--no-cache", "--secret", "id=token,src=token.txt", "--json",
                      "--progress", "json")
    assert json_records(rerun.stdout)["//img:app"]["source"] == "solve"
    ran = [json.loads(line) for line in rerun.stderr.splitlines() if line.startswith("{")]
    steps = [e for e in ran if e.get("event") == "VertexCompleted" and "run/secrets/token" in e.get("name", "")]
    assert steps and not any(e["cached"] for e in steps)
    size = subprocess.run(["docker", "run", "--rm", image, "cat", "/token-size"], capture_output=True,
                          text=True, check=True).stdout.strip()
    assert size == str(len("from-the-command-line"))


def test_a_missing_secret_source_is_one_line(secrets_ws):
    env = {k: v for k, v in os.environ.items() if k != "MBUILD_TEST_TOKEN"}
    proc = subprocess.run([*MBUILD, "--cache-dir", str(secrets_ws.cache), "build", "//img:app"],
                          cwd=secrets_ws.root, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "mbuild: error: img/BUILD:1: //img:app: secret 'token': the environment variable MBUILD_TEST_TOKEN is "
        "not set; set it, or give --secret")


def test_an_ssh_agent_is_usable_in_a_step(secrets_ws, tmp_path):
    agent = subprocess.run(["ssh-agent", "-s", "-a", str(tmp_path / "agent.sock")], capture_output=True,
                           text=True, check=True).stdout
    pid = int(agent.split("SSH_AGENT_PID=", 1)[1].split(";", 1)[0])
    try:
        key = tmp_path / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        env = {"SSH_AUTH_SOCK": str(tmp_path / "agent.sock")}
        subprocess.run(["ssh-add", "-q", str(key)], check=True, env={**os.environ, **env}, capture_output=True)
        secrets_ws.build_json("//img:agent", env=env)
        image = secrets_ws.names["agent"]
        count = subprocess.run(["docker", "run", "--rm", image, "cat", "/agent-keys"], capture_output=True,
                               text=True, check=True).stdout.strip()
        assert count == "1"
        private = key.read_bytes().split(b"\n")[1]
        assert all(private not in layer for layer in layer_blobs(image))
        # --ssh names another agent for the id: none given, the build says what to do.
        missing = secrets_ws.mbuild("build", "//img:agent", "--no-cache", "--ssh", "default=/nonexistent.sock",
                                    check=False)
        assert missing.returncode != 0 and "/nonexistent.sock" in missing.stderr.strip().splitlines()[-1]
    finally:
        os.kill(pid, 15)
