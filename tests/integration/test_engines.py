"""Engines where users have them: a second engine started here on 127.0.0.1
with TLS (client and server certificates made in the test), reached through
DOCKER_HOST/DOCKER_TLS_VERIFY/DOCKER_CERT_PATH and through a docker context;
a standalone BuildKit address with no Docker API behind it; and the README's
main command on an engine that has never built anything.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from buildkit import Client, LocalDir, SolveRequest, TLSConfig, exporters, llb
from buildkit.dockerhost import DockerHost
from buildkit.transport import UpgradeRelay

from ..conftest import BASE_IMAGE, REPO
from .engines import free_port, make_certs, start_engine
from .workspaces import MBUILD, write_tree

pytestmark = pytest.mark.engine

# Nothing of the caller's engine choice may leak into a test that picks its own.
_ENGINE_ENV = ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_TLS", "DOCKER_CERT_PATH", "DOCKER_CONTEXT",
               "DOCKER_CONFIG", "MBUILD_BUILDKIT")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _ENGINE_ENV}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_engine(certs):
    """A private engine on a unix socket and on 127.0.0.1:PORT with --tlsverify."""
    folder = Path(tempfile.mkdtemp(prefix="mbt", dir="/tmp"))  # short: socket paths are limited
    engine = start_engine(folder, tls_port=free_port(), certs=certs)
    yield engine
    engine.remove()


def tls_env(engine, cert_dir: Path) -> dict[str, str]:
    return clean_env(DOCKER_HOST=engine.tcp_host, DOCKER_TLS_VERIFY="1", DOCKER_CERT_PATH=str(cert_dir))


def docker_on(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def small_ws(tmp_path, run_id):
    """A workspace with one image: a source file copied in and a command run."""
    name = f"mbuild-test-engines-{run_id}-{tmp_path.name[-12:]}".lower() + ":latest"
    write_tree(tmp_path / "ws", {
        "WORKSPACE.toml": f"""
            name = "engines"
            [images.base]
            ref = "{BASE_IMAGE}"
            """,
        "app/BUILD": f"""
            filegroup(name = "srcs", srcs = ["hello.txt"])
            container_image(
                name = "img",
                base = "base",
                workdir = "/w",
                srcs = [":srcs"],
                commands = ["cp app/hello.txt /w/copied.txt"],
                cmd = ["cat", "/w/copied.txt"],
                image = "{name}",
            )
            """,
        "app/hello.txt": "hello through the engine\n",
    })
    return tmp_path / "ws", name


def mbuild(ws: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*MBUILD, "--cache-dir", str(ws.parent / "cache"), *args], cwd=ws, env=env,
                          capture_output=True, text=True, timeout=600)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.startswith("mbuild: error:")]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_client_solves_over_tcp_with_tls_for_grpc_and_session(tls_engine, certs, tmp_path):
    """docker://HOST:PORT with TLS: /grpc carries the solve, /session the local
    source (FileSync) and the exported tarball (FileSend)."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "f.txt").write_text("over TLS\n")
    st = llb.image(BASE_IMAGE).copy(llb.local("context"), "/f.txt", "/f.txt") \
        .run(["sh", "-c", "cat /f.txt > /out.txt"]).root()
    out = llb.scratch().copy(st, "/out.txt", "/out.txt")
    with Client.open(f"docker://127.0.0.1:{tls_engine.tls_port}", tls=TLSConfig.from_dir(certs.client_dir)) as bk:
        assert bk.address.docker.tls is not None
        result = bk.solve(SolveRequest(definition=out, local_dirs={"context": LocalDir(ctx)},
                                       exports=(exporters.local_dir(tmp_path / "out"),)))
    assert (tmp_path / "out" / "out.txt").read_text() == "over TLS\n"
    assert result.steps


def test_mbuild_builds_on_docker_host_tcp_with_tls(tls_engine, certs, small_ws):
    ws, name = small_ws
    env = tls_env(tls_engine, certs.client_dir)
    proc = mbuild(ws, env, "build", "--json", "//app:img")
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads(proc.stdout.splitlines()[-1])
    assert record["image"] == name and record["manifest_digest"]
    # The image is in the TLS engine, run there; the Docker API calls went over TLS too.
    run = docker_on(env, "run", "--rm", name)
    assert run.stdout == "hello through the engine\n", run.stderr
    assert docker_on(env, "image", "inspect", "-f", "{{.Id}}", name).stdout.strip() == record["manifest_digest"]
    # A second build answers from the cache: the engine still has the image under that digest.
    again = mbuild(ws, env, "build", "--json", "//app:img")
    assert json.loads(again.stdout.splitlines()[-1])["source"] == "local-cache", again.stderr[-2000:]
    docker_on(env, "rmi", "-f", name)


def test_a_remote_hit_on_an_engine_without_a_local_containerd_is_loaded(tls_engine, certs, small_ws, run_id):
    """Over TCP the engine's containerd cannot be reached from here, so a remote
    hit goes in by `docker load` of the blobs, under the same manifest digest."""
    ws, name = small_ws
    env = tls_env(tls_engine, certs.client_dir)
    url = f"http://127.0.0.1:8089/mbuild-test-engines-{run_id}/"
    first = mbuild(ws, env, "build", "--json", "--remote", url, "--remote-upload", "//app:img")
    assert first.returncode == 0, first.stderr[-3000:]
    digest = json.loads(first.stdout.splitlines()[-1])["manifest_digest"]
    docker_on(env, "rmi", "-f", name)
    again = mbuild(ws, env, "--cache-dir", str(ws.parent / "empty-cache"), "build", "--json", "--remote", url,
                   "//app:img")
    record = json.loads(again.stdout.splitlines()[-1])
    assert record["source"] == "remote-cache", again.stderr[-3000:]
    assert docker_on(env, "image", "inspect", "-f", "{{.Id}}", name).stdout.strip() == digest
    assert docker_on(env, "run", "--rm", name).stdout == "hello through the engine\n"
    docker_on(env, "rmi", "-f", name)


def test_a_wrong_certificate_is_one_line_exit_1(tls_engine, certs, small_ws, tmp_path):
    ws, _ = small_ws
    rogue = make_certs(tmp_path / "rogue", "rogue")  # a CA the engine does not trust, and vice versa
    proc = mbuild(ws, tls_env(tls_engine, rogue.client_dir), "build", "//app:img")
    assert proc.returncode == 1, proc.stderr
    line = one_line_error(proc)
    assert f"127.0.0.1:{tls_engine.tls_port}" in line and "DOCKER_HOST" in line
    assert "server's certificate is not trusted" in line and "DOCKER_CERT_PATH" in line
    # The engine's CA, but a client certificate it did not sign: the engine refuses us.
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    shutil.copy(certs.client_dir / "ca.pem", mixed / "ca.pem")
    for name in ("cert.pem", "key.pem"):
        shutil.copy(rogue.client_dir / name, mixed / name)
    proc = mbuild(ws, tls_env(tls_engine, mixed), "build", "//app:img")
    assert proc.returncode == 1, proc.stderr
    assert "refused our client certificate" in one_line_error(proc)
    # No certificates at all where DOCKER_CERT_PATH points: a usage error.
    proc = mbuild(ws, tls_env(tls_engine, tmp_path / "nowhere"), "build", "//app:img")
    assert proc.returncode == 2 and "has no ca.pem" in one_line_error(proc)


def test_docker_host_unix_and_the_current_docker_context_are_honoured(tls_engine, small_ws, tmp_path):
    ws, name = small_ws
    # DOCKER_HOST=unix://…: the private engine, not the default socket.
    env = clean_env(DOCKER_HOST=tls_engine.host)
    proc = mbuild(ws, env, "build", "--json", "//app:img")
    assert proc.returncode == 0, proc.stderr[-3000:]
    digest = json.loads(proc.stdout.splitlines()[-1])["manifest_digest"]
    assert docker_on(env, "image", "inspect", "-f", "{{.Id}}", name).stdout.strip() == digest
    assert docker_on(clean_env(), "image", "inspect", name).returncode != 0, "built on the default engine"
    docker_on(env, "rmi", "-f", name)
    # `docker context use`: the same engine, named by the docker config's current context.
    config = tmp_path / "docker-config"
    ctx_env = clean_env(DOCKER_CONFIG=str(config))
    for args in (("context", "create", "mbuild-test-ctx", "--docker", f"host={tls_engine.host}"),
                 ("context", "use", "mbuild-test-ctx")):
        made = docker_on(ctx_env, *args)
        assert made.returncode == 0, made.stderr
    proc = mbuild(ws, ctx_env, "--cache-dir", str(tmp_path / "other-cache"), "build", "--json", "//app:img")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert docker_on(env, "image", "inspect", name).returncode == 0
    assert docker_on(clean_env(), "image", "inspect", name).returncode != 0, "built on the default engine"
    docker_on(env, "rmi", "-f", name)
    # A context that does not exist is a usage error naming it.
    bad = mbuild(ws, clean_env(DOCKER_CONFIG=str(config), DOCKER_CONTEXT="no-such-ctx"), "build", "//app:img")
    assert bad.returncode == 2 and "no-such-ctx" in one_line_error(bad)


def test_a_standalone_buildkit_address_needs_no_docker_api(tls_engine, small_ws):
    """unix:// BuildKit (here the engine's own BuildKit, exposed on a plain gRPC
    socket as a buildkitd would be): base images are resolved through BuildKit,
    and no Docker engine API is reachable at all."""
    ws, name = small_ws
    relay = UpgradeRelay(DockerHost("unix", path=str(tls_engine.sock)))
    try:
        env = clean_env(DOCKER_HOST="unix:///nonexistent/docker.sock")
        proc = mbuild(ws, env, "--buildkit", f"unix://{relay.path}", "build", "--json", "//app:img")
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert json.loads(proc.stdout.splitlines()[-1])["manifest_digest"]
        explain = mbuild(ws, env, "--buildkit", f"unix://{relay.path}", "explain", "//app:img")
        assert explain.returncode == 0 and '"bases"' in explain.stdout, explain.stderr
    finally:
        relay.close()
        docker_on(clean_env(DOCKER_HOST=tls_engine.host), "rmi", "-f", name)


def test_main_job_on_an_engine_that_never_built_anything(tmp_path):
    """The README's main command on a new engine: base images imported as on a
    bare machine, empty caches; the image runs as uid 1000."""
    folder = Path(tempfile.mkdtemp(prefix="mbm", dir="/tmp"))
    engine = start_engine(folder, images=("python:3.11", "python:3.11-slim"))
    try:
        env = clean_env(DOCKER_HOST=engine.host, XDG_CACHE_HOME=str(tmp_path / "xdg"))
        proc = subprocess.run([*MBUILD, "--cache-dir", str(tmp_path / "cache"), "//infra:python_runtime"],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
        assert proc.returncode == 0, proc.stderr[-4000:]
        out = docker_on(env, "run", "--rm", "--entrypoint", "id", "ai-mono-python:latest", "-u")
        assert out.stdout.strip() == "1000", out.stderr
    finally:
        engine.remove()
        shutil.rmtree(folder, ignore_errors=True)
