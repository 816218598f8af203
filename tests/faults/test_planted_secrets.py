"""Planted secrets reach nothing a build makes or shows. A workspace holds
``.env`` and ``.env.local`` (excluded by its ``.dockerignore``, and matched
by a glob of the whole root package that an image copies), a build secret
read from an ignored file, one read from the environment and one given by
``--secret`` from a file outside the workspace, and a CA bundle
(``ca_bundle``) outside it that fetching steps mount. Each holds a token of
the run's own. The steps read every secret; one failing step even prints
two (mbuild masks them).

No planted token, nor the sha256 of a planted file or of a token, nor a
token in base64, may appear

* in any layer, config or manifest of the built images (``docker save``,
  layers decompressed);
* in any log: stdout and stderr of every build (plain and json progress),
  of the failing build and of ``explain``;
* in any cache record: every file of the local store (records, blobs, the
  stat cache) and every action result and blob uploaded to a remote (the
  hostile test server, honest);
* in any ``--json`` output.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import secrets
import subprocess
import tarfile
import tempfile
import textwrap
from pathlib import Path

import pytest

from ..integration.conftest import json_records
from ..integration.workspaces import git, make_workspace, remove_workspace_images, write_tree
from .hostile_remote import Content, HostileRemote
from .ledger import SECRET_LEAKS

pytestmark = pytest.mark.engine

SECRETIVE, FAILING = "//images:secretive", "//images:failing"
ENV_VAR = "MBUILD_TEST_PLANTED_TOKEN"


def token(name: str) -> bytes:
    return f"mbuild-planted-{name}-{secrets.token_hex(12)}".encode()


def needles(planted: dict[str, bytes], files: dict[str, bytes]) -> dict[bytes, str]:
    """What must not be found -> what it is."""
    found = {}
    for name, value in planted.items():
        found[value] = f"the {name} token"
        found[hashlib.sha256(value).hexdigest().encode()] = f"the sha256 of the {name} token"
        for shift in range(3):  # inside a longer text, a token starts at any offset of base64's 3-byte groups
            encoded = base64.b64encode(b"\0" * shift + value)
            found[encoded[4 if shift else 0:-4]] = f"the {name} token in base64 (at offset {shift} mod 3)"
    for name, data in files.items():
        found[hashlib.sha256(data).hexdigest().encode()] = f"the sha256 of {name}"
    return found


def scan(blob: bytes, where: str, looked_for: dict[bytes, str]) -> list[str]:
    return [f"{what} in {where}" for needle, what in looked_for.items() if needle in blob]


def unpacked(data: bytes) -> bytes:
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def image_blobs(image: str) -> dict[str, bytes]:
    """Every file of ``docker save IMAGE`` (layers decompressed), by name."""
    with tempfile.TemporaryDirectory(prefix="mbuild-test-save-") as tmp:
        archive = Path(tmp) / "image.tar"
        subprocess.run(["docker", "save", "-o", str(archive), image], check=True, capture_output=True)
        with tarfile.open(archive) as tar:
            return {m.name: unpacked(tar.extractfile(m).read()) for m in tar if m.isfile()}


@pytest.fixture
def planted(tmp_path, run_id, docker_sdk):
    outside = tmp_path / "outside"
    outside.mkdir()
    tokens = {name: token(name) for name in (".env", ".env.local", "file secret", "env secret", "--secret",
                                             "CA bundle")}
    files = {
        ".env": b"API_KEY=" + tokens[".env"] + b"\n",
        ".env.local": b"DB_PASSWORD=" + tokens[".env.local"] + b"\n",
        "secrets/api_token": tokens["file secret"] + b"\n",
    }
    ws = make_workspace(tmp_path / "ws", tmp_path / "cache", f"{run_id}-secrets")
    names = {"secretive": ws.names["app"].replace("-app-", "-secretive-"),
             "failing": ws.names["app"].replace("-app-", "-failing-")}
    ws.names.update(names)
    (outside / "cli_token").write_bytes(tokens["--secret"] + b"\n")
    (outside / "ca.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\n" + tokens["CA bundle"] +
                                     b"\n-----END CERTIFICATE-----\n")
    for rel, data in files.items():
        (ws.root / rel).parent.mkdir(parents=True, exist_ok=True)
        (ws.root / rel).write_bytes(data)
    (ws.root / ".dockerignore").write_text(".env\n.env.*\nsecrets/\n")
    workspace_toml = ws.root / "WORKSPACE.toml"
    workspace_toml.write_text(workspace_toml.read_text().replace(
        'rules = [', f'ca_bundle = "{outside / "ca.pem"}"\nrules = ['))
    uses = ["wc -c < /run/secrets/api_token > /w/api-size", "wc -c < /run/secrets/cli_token > /w/cli-size",
            'test -s "$SSL_CERT_FILE" && wc -c < "$SSL_CERT_FILE" > /w/ca-size']
    write_tree(ws.root, {
        "BUILD": """
            filegroup(name = "everything", srcs = glob(["**"]), visibility = ["//visibility:public"])
            """,
        "images/BUILD": (ws.root / "images" / "BUILD").read_text() + textwrap.dedent(f"""
            SECRETS = {{"api_token": "file:secrets/api_token", "cli_token": "env:{ENV_VAR}"}}
            container_image(
                name = "secretive",
                base = "base",
                workdir = "/w",
                srcs = ["//:everything", "//lib"],
                network = True,
                secrets = SECRETS,
                commands = {json.dumps(uses)},
                image = "{names['secretive']}",
            )
            container_image(
                name = "failing",
                base = "base",
                secrets = SECRETS,
                commands = ["cat /run/secrets/api_token /run/secrets/cli_token; exit 3"],
                image = "{names['failing']}",
            )
            """),
    })
    (ws.root / ".gitignore").write_text(".env\n.env.*\nsecrets/\nmbuild-out/\n")
    git(ws.root, "add", "-A")
    git(ws.root, "commit", "-qm", "planted secrets")
    yield ws, tokens, files
    remove_workspace_images(docker_sdk, ws)


def test_planted_secrets_are_in_no_layer_log_cache_record_or_json(planted, fault_ledger):
    ws, tokens, files = planted
    looked_for = needles(tokens, files)
    env = {ENV_VAR: tokens["env secret"].decode()}
    shown: dict[str, str] = {}  # what each command printed, stdout and stderr
    content = Content()
    with HostileRemote("http", content) as remote:
        runs = {
            "build (plain progress, --json)": ("build", "--json", "--progress", "plain", "--remote", remote.url,
                                               "--remote-upload", SECRETIVE),
            "build with --secret (json progress, --json, --no-cache)": (
                "build", "--json", "--progress", "json", "--no-cache", "--secret",
                f"id=cli_token,src={ws.root.parent / 'outside' / 'cli_token'}", SECRETIVE),
            "explain": ("explain", SECRETIVE),
        }
        for what, args in runs.items():
            proc = ws.mbuild(*args, env=env)
            shown[f"{what}: stdout"], shown[f"{what}: stderr"] = proc.stdout, proc.stderr
        failing = ws.mbuild("build", "--progress", "plain", FAILING, env=env, check=False)
        shown["the failing build: stdout"], shown["the failing build: stderr"] = failing.stdout, failing.stderr
        uploaded = content.state()
    assert failing.returncode == 1, failing.stderr[-3000:]
    assert "****" in failing.stderr, "the failing step's output (the secrets, masked) is not shown"
    record = json_records(shown["build (plain progress, --json): stdout"])[SECRETIVE]
    assert record["source"] == "solve" and record["manifest_digest"]

    found: list[str] = []
    for where, text in shown.items():
        found += scan(text.encode(), where, looked_for)
    for name, data in image_blobs(ws.names["secretive"]).items():
        found += scan(data, f"the image's {name}", looked_for)
    for path in sorted(p for p in ws.cache.rglob("*") if p.is_file()):
        found += scan(path.read_bytes(), f"the local store's {path.relative_to(ws.cache)}", looked_for)
    ac, cas = uploaded
    assert ac and cas, "nothing was uploaded"
    for key, data in ac.items():
        found += scan(data, f"the remote's action result {key[:12]}", looked_for)
    for sha, data in cas.items():
        found += scan(unpacked(data), f"the remote's blob {sha[:12]}", looked_for)
    fault_ledger.count(SECRET_LEAKS, len(found))
    assert found == []
