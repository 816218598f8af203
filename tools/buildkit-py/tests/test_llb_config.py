"""The image config a State carries, and image_config() for the exporter."""

from __future__ import annotations

import json

import pytest

from buildkit import llb

BASE = {
    "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8", "PYTHON_VERSION=3.11.9"],
    "Cmd": ["python3"],
    "WorkingDir": "",
    "Entrypoint": None,
    "Labels": None,
    "Hostname": "",  # docker inspect's container fields are not image settings
    "Image": "sha256:" + "0" * 64,
    "StopSignal": "SIGTERM",
}


def test_env_replaces_in_place_and_appends():
    st = llb.image("python:3.11-slim", config=BASE)
    st = st.with_env("LANG", "en_US.UTF-8").with_env("APP", "1").with_env("PATH", "/venv/bin:/usr/bin")
    assert st.config.env == (
        "PATH=/venv/bin:/usr/bin", "LANG=en_US.UTF-8", "PYTHON_VERSION=3.11.9", "APP=1")
    assert st.get_env("APP") == "1" and st.get_env("NOPE") is None
    with pytest.raises(llb.LLBError):
        st.with_env("A=B", "x")


def test_workdir_resolves_relative_paths():
    st = llb.scratch()
    assert st.config.cwd == "/"
    st = st.with_workdir("app")
    assert st.config.workdir == "/app"
    st = st.with_workdir("src/../lib/")
    assert st.config.workdir == "/app/lib"
    st = st.with_workdir("/opt//x/.")
    assert st.config.workdir == "/opt/x"


def test_config_is_immutable_and_shared_across_ops():
    base = llb.image("alpine", config=BASE)
    other = base.with_user("nobody")
    assert base.config.user == "" and other.config.user == "nobody"
    after = other.run(["true"]).mkdir("/x")
    assert after.config == other.config  # ops carry the config forward
    with pytest.raises(AttributeError):
        base.config = None  # type: ignore[misc]


def test_image_config_document():
    st = (llb.image("python:3.11-slim", platform="linux/arm64", config=BASE)
          .with_workdir("/app").with_user("app").with_exposed_port(8000).with_exposed_port("53/UDP")
          .with_label("org.opencontainers.image.title", "demo").with_cmd(["python", "-m", "demo"]))
    doc = st.image_config()
    assert doc["architecture"] == "arm64" and doc["os"] == "linux"
    assert doc["rootfs"] == {"type": "layers", "diff_ids": []}
    cfg = doc["config"]
    assert cfg["Env"][0] == "PATH=/usr/local/bin:/usr/bin:/bin"
    assert cfg["WorkingDir"] == "/app" and cfg["User"] == "app"
    assert cfg["Cmd"] == ["python", "-m", "demo"]
    assert "Entrypoint" not in cfg
    assert cfg["ExposedPorts"] == {"53/udp": {}, "8000/tcp": {}}
    assert cfg["Labels"] == {"org.opencontainers.image.title": "demo"}
    assert cfg["StopSignal"] == "SIGTERM"
    assert "Hostname" not in cfg and "Image" not in cfg
    amd = st.image_config("linux/amd64")
    assert amd["architecture"] == "amd64"
    assert json.loads(st.image_config_json()) == doc


def test_entrypoint_resets_inherited_cmd_only():
    base = llb.image("python", config=BASE)
    assert base.config.cmd == ("python3",)
    assert base.with_entrypoint(["/app/run"]).config.cmd is None
    kept = base.with_cmd(["--serve"]).with_entrypoint(["/app/run"])
    assert kept.config.cmd == ("--serve",) and kept.config.entrypoint == ("/app/run",)
    assert base.with_entrypoint("exec app").config.entrypoint == ("/bin/sh", "-c", "exec app")


def test_full_image_json_and_docker_inspect_forms_are_accepted():
    inner = {"Env": ["A=1"], "User": "u"}
    for doc in ({"architecture": "amd64", "os": "linux", "config": inner}, {"Config": inner}, inner):
        cfg = llb.ImageConfig.from_oci(doc)
        assert cfg.env == ("A=1",) and cfg.user == "u"
    assert llb.ImageConfig.from_oci(None) == llb.ImageConfig()


def test_merge_and_diff_keep_the_base_config():
    base = llb.image("alpine", config={"Env": ["A=1"]})
    other = llb.image("busybox", config={"Env": ["B=2"]})
    assert llb.merge([base, other]).config.env == ("A=1",)
    assert llb.diff(base, other).config.env == ("A=1",)


@pytest.mark.parametrize("port", ["http", "0", "70000", "80/icmp", "10-5"])
def test_bad_ports(port):
    with pytest.raises(llb.LLBError):
        llb.scratch().with_exposed_port(port)
