"""What users expect of an image build, without an engine: container_image's
env seen by its commands, declared secrets and SSH agents as mounts (their
values in no key), `dockerfile` targets' FROM lines and keys, platforms in
every key, --output/--push parsing, secret masking, and the upload of local
hits with one FindMissing per build."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mbuild.api import v1 as mb
from mbuild.api.testing import RuleHarness
from mbuild.cache.keys import KeyInputs
from mbuild.cache.remote import BlobRef
from mbuild.cache.store import ActionRecord, LocalStore
from mbuild.errors import ConfigError
from mbuild.execution.build import familiar_name, job_keys
from mbuild.execution.image_outputs import has_registry, parse_output
from mbuild.execution.remote import RemoteActions, published_marker
from mbuild.execution.secrets import MASK, Redactor
from mbuild.rules.dockerfile import from_images
from mbuild.workflow import parse_platforms

WORKSPACE = 'name = "t"\n[images.base]\nref = "debian:12"\n'


def harness(tmp_path: Path, build: str, files: dict[str, str] | None = None, **kw) -> RuleHarness:
    return RuleHarness.write(tmp_path, {"WORKSPACE.toml": WORKSPACE, "p/BUILD": build, **(files or {})}, **kw)


# ---------------------------------------------------------------- container_image


def test_container_image_env_is_visible_to_its_commands(tmp_path):
    h = harness(tmp_path, 'container_image(name = "i", base = "base", env = {"GREETING": "hi"}, '
                          'commands = ["echo $GREETING > /g"], image = "i:1")\n')
    (run,) = [s for s in h.analyze("//p:i")["//p:i"].steps if "exec" in s]
    assert "GREETING=hi" in run["env"]
    assert "GREETING=hi" in h.analyze("//p:i")["//p:i"].image_config["Env"]


def test_secrets_and_ssh_are_mounts_and_their_values_no_input(tmp_path, monkeypatch):
    build = ('container_image(name = "i", base = "base", secrets = {"token": "env:MBUILD_T", "npmrc": '
             '"file:.npmrc"}, ssh = ["default"], commands = ["true"], image = "i:1")\n')
    monkeypatch.setenv("MBUILD_T", "first value")
    first = harness(tmp_path, build).analyze("//p:i")["//p:i"]
    (run,) = [s for s in first.steps if "exec" in s]
    mounts = {(m["type"], m["dest"]) for m in run["mounts"]}
    assert {("secret", "/run/secrets/token"), ("secret", "/run/secrets/npmrc"),
            ("ssh", "/run/buildkit/ssh_agent.0")} <= mounts
    assert "SSH_AUTH_SOCK=/run/buildkit/ssh_agent.0" in run["env"]
    assert first.key_inputs["attrs"]["secrets"] == {"npmrc": "file:.npmrc", "token": "env:MBUILD_T"}
    monkeypatch.setenv("MBUILD_T", "another value")
    assert harness(tmp_path, build).analyze("//p:i")["//p:i"].key == first.key  # a value is not part of the key


@pytest.mark.parametrize("secrets", ['{"token": "MBUILD_T"}', '{"a b": "env:X"}', '{"t": "url:x"}'])
def test_a_bad_secret_declaration_is_an_error_at_the_build_line(tmp_path, secrets):
    h = harness(tmp_path, f'container_image(name = "i", base = "base", secrets = {secrets}, commands = ["true"])\n')
    with pytest.raises(ConfigError, match=r"p/BUILD:1: //p:i: attribute 'secrets'"):
        h.analyze("//p:i")


def test_every_key_carries_its_platform(tmp_path):
    build = 'container_image(name = "i", base = "base", commands = ["uname -m"], image = "i:1")\n'
    amd = harness(tmp_path, build).analyze("//p:i")["//p:i"]
    arm = harness(tmp_path, build, platform="linux/arm64").analyze("//p:i")["//p:i"]
    assert (amd.key_inputs["platform"], arm.key_inputs["platform"]) == ("linux/amd64", "linux/arm64")
    assert amd.key != arm.key
    assert arm.stage.image_config()["architecture"] == "arm64"
    per_platform = {"linux/amd64": {amd.label: KeyInputs(amd.key_inputs)},
                    "linux/arm64": {arm.label: KeyInputs(arm.key_inputs)}}
    both = job_keys(per_platform, {amd.label: ("linux/amd64", "linux/arm64")}, "linux/amd64")[amd.label]
    assert both.doc["variants"] == {"linux/amd64": amd.key, "linux/arm64": arm.key}
    assert job_keys(per_platform, {amd.label: ("linux/arm64",)}, "linux/amd64")[amd.label].key == arm.key


def test_platforms_are_parsed_and_normalised():
    assert parse_platforms("linux/amd64, linux/arm64/v8,linux/amd64") == ("linux/amd64", "linux/arm64")
    with pytest.raises(ConfigError, match="--platform: 'linux'"):
        parse_platforms("linux")


# ---------------------------------------------------------------- dockerfile


def test_from_lines_name_images_with_global_args_expanded():
    text = """
        # syntax comment
        ARG BASE=python:3.11
        ARG SLIM
        FROM ${BASE} AS deps
        ARG IGNORED=x
        FROM deps AS builder
        FROM --platform=$BUILDPLATFORM node:22 AS tools
        FROM ${SLIM:-python:3.11-slim} \\
            AS runtime
        FROM scratch
        """
    fail = ValueError
    assert from_images(text, {}, fail) == {"python:3.11": "", "node:22": "build", "python:3.11-slim": ""}
    assert from_images(text, {"BASE": "debian:12", "SLIM": "alpine:3"}, fail) == \
        {"debian:12": "", "node:22": "build", "alpine:3": ""}
    with pytest.raises(ValueError, match="line 1: FROM \\$NOPE expands to nothing"):
        from_images("FROM $NOPE\n", {}, fail)


def test_a_dockerfile_key_covers_the_context_after_its_dockerignore(tmp_path):
    files = {"p/Dockerfile": "ARG V=1\nFROM debian:12\nCOPY a.txt /\n", "p/a.txt": "a\n",
             "p/.dockerignore": "ignored.txt\n", "p/ignored.txt": "x\n"}
    build = 'dockerfile(name = "d", build_args = {"V": "2"}, image = "d:1")\n'
    h = harness(tmp_path, build, files)
    first = h.analyze("//p:d")["//p:d"]
    assert set(first.key_inputs["sources"]) == {"p/BUILD", "p/Dockerfile", "p/.dockerignore", "p/a.txt"}
    assert first.key_inputs["bases"] == {"FROM debian:12": "debian:12"}  # the digest, once BuildKit resolved it
    assert first[mb.Image].name == "d:1"
    (tmp_path / "p/ignored.txt").write_text("changed\n")
    assert h.analyze("//p:d")["//p:d"].key == first.key
    (tmp_path / "p/a.txt").write_text("changed\n")
    assert h.analyze("//p:d")["//p:d"].key != first.key
    h2 = harness(tmp_path, build.replace('"2"', '"3"'))
    assert h2.analyze("//p:d")["//p:d"].key_inputs["attrs"]["build_args"] == {"V": "3"}


def test_a_context_outside_the_workspace_is_refused(tmp_path):
    h = harness(tmp_path, 'dockerfile(name = "d", context = "../..")\n', {"p/Dockerfile": "FROM debian:12\n"})
    with pytest.raises(ConfigError, match="p/BUILD:1: //p:d: attribute 'context'"):
        h.analyze("//p:d")


def test_named_contexts_use_the_frontends_familiar_names():
    assert familiar_name("python:3.11") == "python:3.11"
    assert familiar_name("docker.io/library/debian:latest") == "debian"
    assert familiar_name("127.0.0.1:5000/team/app:1") == "127.0.0.1:5000/team/app:1"


# ---------------------------------------------------------------- outputs, secrets


def test_output_specs_follow_buildx(tmp_path):
    out = parse_output("type=oci,dest=out/{target}.tar", tmp_path)
    assert (out.type, str(out.path("infra-app"))) == ("oci", f"{tmp_path}/out/infra-app.tar")
    assert parse_output("type=docker,dest=img.tar", tmp_path).dest == str(tmp_path / "img.tar")
    for bad in ("type=local,dest=x", "type=oci", "dest=x", "type=oci,dest=x,compression=zstd"):
        with pytest.raises(ConfigError, match=f"--output '{bad}'"):
            parse_output(bad, tmp_path)


def test_only_names_with_a_registry_are_pushed_by_push():
    assert has_registry("127.0.0.1:5000/app:1") and has_registry("registry.example.com/a/b")
    assert has_registry("localhost/app")
    assert not has_registry("app:1") and not has_registry("team/app:1")


def test_secret_values_are_masked_in_what_is_shown():
    from buildkit.errors import SolveError
    from buildkit.progress import VertexLog

    redact = Redactor([b"s3cr3t-token\n", b"line one\nab\n"])
    assert redact.text("token=s3cr3t-token; line one") == f"token={MASK}; {MASK}"
    assert redact.text("ab stays") == "ab stays"  # too short to mask
    ev = redact.event(VertexLog(digest="sha256:x", number=1, stream=1, line="got s3cr3t-token"))
    assert ev.line == f"got {MASK}"
    err = redact.error(SolveError("step", "failed: s3cr3t-token", "echo s3cr3t-token", 1, ["s3cr3t-token"]))
    assert "s3cr3t" not in err.report()


# ---------------------------------------------------------------- upload of local hits


class CountingRemote:
    """An in-memory remote that counts its calls."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.results: dict[str, object] = {}
        self.calls: list[str] = []

    def find_missing(self, refs):
        self.calls.append("find_missing")
        return {r for r in refs if r.hash not in self.blobs}

    def put_blobs(self, items):
        self.calls.append("put_blobs")
        for ref, source in items:
            self.blobs[ref.hash] = source.read_bytes() if isinstance(source, Path) else source

    def put_blob(self, ref, data):
        self.calls.append("put_blob")
        self.blobs[ref.hash] = data

    def put_action_result(self, key, result):
        self.calls.append("put_action_result")
        self.results[key] = result

    def get_action_result(self, key):
        self.calls.append("get_action_result")
        return self.results.get(key)


def _file_record(store: LocalStore, n: int) -> ActionRecord:
    sha = store.put_blob_bytes(f"file {n}\n".encode())
    return ActionRecord(key=f"{n:064x}", label=f"//p:t{n}", kind="k", files={f"out/{n}.txt": sha},
                        inputs={"n": n})


def test_local_hits_the_remote_lacks_are_uploaded_with_one_find_missing(tmp_path):
    store = LocalStore(tmp_path / "store")
    records = [_file_record(store, n) for n in range(5)]
    remote = CountingRemote()
    actions = RemoteActions(remote, store, upload=True)
    assert actions.publish_hits(records[:1]) == 1  # the remote has the first one already
    remote.calls.clear()
    assert actions.publish_hits(records) == 4
    assert remote.calls.count("find_missing") == 1
    assert remote.calls.count("get_action_result") == 1  # the first one's, whose blobs are all there
    assert set(remote.results) == {r.key for r in records}
    assert remote.calls.index("put_action_result") < remote.calls.index("put_blob", remote.calls.index(
        "put_action_result"))  # a marker only after its result
    remote.calls.clear()
    assert actions.publish_hits(records) == 0  # all published now: one FindMissing, a lookup each, no upload
    assert sorted(remote.calls) == ["find_missing", *["get_action_result"] * 5]
    marker = published_marker(records[0].key)
    assert json.loads(marker) == {"mbuild-published": records[0].key}


def test_a_remote_that_lost_its_action_cache_but_kept_its_blobs_is_filled_again(tmp_path):
    """BuildGrid's action cache lives in memory over a disk CAS: after a
    restart the markers and blobs are there and the results are not."""
    store = LocalStore(tmp_path / "store")
    records = [_file_record(store, n) for n in range(3)]
    remote = CountingRemote()
    actions = RemoteActions(remote, store, upload=True)
    assert actions.publish_hits(records) == 3
    remote.results.clear()  # the restart
    remote.calls.clear()
    assert actions.publish_hits(records) == 3
    assert set(remote.results) == {r.key for r in records}
    assert "put_blobs" not in remote.calls  # the blobs were there: only the results are sent again
