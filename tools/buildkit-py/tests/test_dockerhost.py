"""Finding the Docker engine as the docker CLI does: DOCKER_HOST, TLS from the
environment, docker contexts; and reading the docker config (credentials)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from buildkit import dockerconfig
from buildkit.address import parse_address
from buildkit.dockerhost import DEFAULT_SOCKET, from_environment, parse_docker_host
from buildkit.errors import InvalidAddress


def make_certs_dir(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_text("PEM")
    return folder


def test_default_is_the_docker_socket(tmp_path):
    host = from_environment({"DOCKER_CONFIG": str(tmp_path)})
    assert (host.scheme, host.path, host.origin) == ("unix", DEFAULT_SOCKET, "default")


def test_docker_host_unix_and_tcp(tmp_path):
    env = {"DOCKER_CONFIG": str(tmp_path)}
    host = from_environment({**env, "DOCKER_HOST": "unix:///tmp/d.sock"})
    assert (host.scheme, host.path, host.origin) == ("unix", "/tmp/d.sock", "DOCKER_HOST")
    host = from_environment({**env, "DOCKER_HOST": "tcp://10.0.0.5:2375"})
    assert (host.scheme, host.host, host.port, host.tls) == ("tcp", "10.0.0.5", 2375, None)


def test_tls_verify_reads_the_cert_path(tmp_path):
    certs = make_certs_dir(tmp_path / "certs", "ca.pem", "cert.pem", "key.pem")
    host = from_environment({"DOCKER_HOST": "tcp://h:2376", "DOCKER_TLS_VERIFY": "1",
                             "DOCKER_CERT_PATH": str(certs), "DOCKER_CONFIG": str(tmp_path)})
    assert host.tls is not None and host.tls.verify
    assert host.tls.ca_cert == str(certs / "ca.pem") and host.tls.key == str(certs / "key.pem")
    # Without DOCKER_CERT_PATH the CLI looks in the docker config folder.
    make_certs_dir(tmp_path, "ca.pem")
    host = from_environment({"DOCKER_HOST": "tcp://h:2376", "DOCKER_TLS_VERIFY": "1", "DOCKER_CONFIG": str(tmp_path)})
    assert host.tls.ca_cert == str(tmp_path / "ca.pem") and host.tls.cert is None


def test_docker_tls_without_verify(tmp_path):
    host = from_environment({"DOCKER_HOST": "tcp://h", "DOCKER_TLS": "1", "DOCKER_CONFIG": str(tmp_path)})
    assert host.tls is not None and not host.tls.verify and host.port == 2376


@pytest.mark.parametrize("files, expect", [((), "has no ca.pem"), (("ca.pem", "cert.pem"), "without key.pem")])
def test_incomplete_tls_material_is_a_usage_error(tmp_path, files, expect):
    certs = make_certs_dir(tmp_path / "c", *files)
    with pytest.raises(InvalidAddress, match=expect):
        from_environment({"DOCKER_HOST": "tcp://h:2376", "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(certs)})


@pytest.mark.parametrize("text", ["ssh://user@host", "npipe:////./pipe/docker_engine", "unix://", "tcp://"])
def test_unsupported_docker_hosts_are_refused_clearly(text):
    with pytest.raises(InvalidAddress) as info:
        parse_docker_host(text)
    assert text in str(info.value) and "\n" not in str(info.value)


def write_context(config: Path, name: str, host: str, tls: bool = False, skip_verify: bool = False) -> None:
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta = config / "contexts" / "meta" / digest
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps(
        {"Name": name, "Metadata": {}, "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": skip_verify}}}))
    if tls:
        make_certs_dir(config / "contexts" / "tls" / digest / "docker", "ca.pem", "cert.pem", "key.pem")


def test_current_context_from_config_and_from_docker_context(tmp_path):
    write_context(tmp_path, "remote", "tcp://10.1.1.1:2376", tls=True)
    write_context(tmp_path, "local2", "unix:///run/other.sock")
    (tmp_path / "config.json").write_text(json.dumps({"currentContext": "remote"}))
    host = from_environment({"DOCKER_CONFIG": str(tmp_path)})
    assert (host.scheme, host.host, host.port, host.origin) == ("tcp", "10.1.1.1", 2376, "context remote")
    assert host.tls is not None and host.tls.cert.endswith("docker/cert.pem")
    host = from_environment({"DOCKER_CONFIG": str(tmp_path), "DOCKER_CONTEXT": "local2"})
    assert (host.scheme, host.path) == ("unix", "/run/other.sock")
    # DOCKER_HOST wins over any context, as in the docker CLI.
    host = from_environment({"DOCKER_CONFIG": str(tmp_path), "DOCKER_CONTEXT": "local2",
                             "DOCKER_HOST": "unix:///x.sock"})
    assert host.path == "/x.sock" and host.origin == "DOCKER_HOST"


def test_an_unknown_context_is_a_usage_error(tmp_path):
    with pytest.raises(InvalidAddress, match="'gone' .* does not exist"):
        from_environment({"DOCKER_CONFIG": str(tmp_path), "DOCKER_CONTEXT": "gone"})


def test_docker_addresses(tmp_path):
    env = {"DOCKER_CONFIG": str(tmp_path)}
    a = parse_address("docker://", environ={**env, "DOCKER_HOST": "unix:///tmp/e.sock"})
    assert a.scheme == "docker" and a.docker.path == "/tmp/e.sock"
    assert str(a) == "docker:///tmp/e.sock (from DOCKER_HOST)"
    a = parse_address("docker:///var/run/other.sock", environ=env)
    assert a.docker.path == "/var/run/other.sock" and str(a) == "docker:///var/run/other.sock"
    a = parse_address("docker://127.0.0.1:2376", environ=env)
    assert (a.docker.scheme, a.docker.host, a.docker.port) == ("tcp", "127.0.0.1", 2376)
    with pytest.raises(InvalidAddress, match="unknown scheme"):
        parse_address("ftp://x", environ=env)


def test_credentials_from_auths_and_identity_tokens(tmp_path):
    config = {"auths": {
        "https://index.docker.io/v1/": {"auth": base64.b64encode(b"hubuser:hubpass").decode()},
        "registry.example:5000": {"identitytoken": "tok"},
        "https://other.example/v2/": {"username": "u", "password": "p"},
    }}
    assert dockerconfig.credentials("registry-1.docker.io", config) == ("hubuser", "hubpass")
    assert dockerconfig.credentials("docker.io", config) == ("hubuser", "hubpass")
    assert dockerconfig.credentials("registry.example:5000", config) == ("", "tok")
    assert dockerconfig.credentials("other.example", config) == ("u", "p")
    assert dockerconfig.credentials("unknown.example", config) == ("", "")


def test_credentials_from_a_helper(tmp_path, monkeypatch):
    helper = tmp_path / "docker-credential-fake"
    helper.write_text("#!/bin/sh\nread server\n"
                      "[ \"$server\" = reg.example ] || exit 1\n"
                      "echo '{\"ServerURL\":\"reg.example\",\"Username\":\"hu\",\"Secret\":\"hs\"}'\n")
    helper.chmod(helper.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    assert dockerconfig.credentials("reg.example", {"credHelpers": {"reg.example": "fake"}}) == ("hu", "hs")
    # credsStore answers for hosts without their own helper; a miss is anonymous.
    assert dockerconfig.credentials("reg.example", {"credsStore": "fake"}) == ("hu", "hs")
    assert dockerconfig.credentials("nope.example", {"credsStore": "fake"}) == ("", "")
