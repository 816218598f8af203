"""A compose file with a service that is not built here, brought up beside a
built one.

The external service is a local stand-in for redis (nothing can be pulled
here): ``mbuild-test/redis-standin-<run>:7``, made by ``docker build`` from
the base image in this module's fixture, a Python TCP server that answers
every request with ``+PONG`` after a warm-up of WARMUP seconds, with a
``ping.py`` the healthcheck runs. The workspace names it under
``[images.redis]`` as it would name ``redis:7``; mbuild resolves it through
BuildKit, pins it in the compose file and ``mbuild lock`` pins it in
WORKSPACE.toml.

The built service asks the cache once when it starts, without retrying, and
then answers /health: it only comes up because ``depends_on: condition:
service_healthy`` held it back until the stand-in's healthcheck passed. Its
environment, its own env file and a read-only workspace folder show in
/health. Nothing is published on a fixed host port (``publish = ["8080"]``
takes a free one) and the compose project is the run's own, so this runs
beside other tests and a developer's stack.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import textwrap
import time
from datetime import datetime

import pytest

from ..conftest import BASE_IMAGE, REPO
from .conftest import wait_for_health
from .test_compose import compose, compose_config
from .workspaces import Workspace, write_tree

pytestmark = pytest.mark.engine

WARMUP = 3  # seconds the stand-in waits before it listens

STANDIN_SERVER = """
    \"\"\"A redis-like stand-in: after a warm-up, answers every request with +PONG.\"\"\"
    import socket, sys, time

    time.sleep(float(sys.argv[1]))
    with open("/data/standin-started", "w") as f:
        f.write(str(time.time()))
    server = socket.create_server(("0.0.0.0", 6379))
    while True:
        conn, _ = server.accept()
        with conn:
            conn.settimeout(5)
            try:
                while conn.recv(1024):
                    conn.sendall(b"+PONG\\r\\n")
            except OSError:
                pass
    """

STANDIN_PING = """
    import socket, sys

    with socket.create_connection(("127.0.0.1", 6379), timeout=2) as c:
        c.sendall(b"PING\\r\\n")
        sys.exit(0 if c.recv(16) == b"+PONG\\r\\n" else 1)
    """

STANDIN_DOCKERFILE = f"""
    FROM {BASE_IMAGE}
    COPY server.py ping.py /
    RUN mkdir /data
    EXPOSE 6379
    CMD ["python3", "/server.py", "{WARMUP}"]
    """

APP = """
    \"\"\"Asks the cache once, at start (no retry: compose waited until it was
    healthy), then answers /health.\"\"\"
    import http.server, json, os, socket

    with socket.create_connection((os.environ["CACHE_HOST"], 6379), timeout=5) as c:
        c.sendall(b"PING\\r\\n")
        cache = c.recv(64).decode().strip()
    with open("/srv/static/motd.txt") as f:
        motd = f.read().strip()
    body = json.dumps({"status": "ok", "cache": cache, "greeting": os.environ.get("GREETING", ""),
                       "motd": motd}).encode()


    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)


    http.server.HTTPServer(("0.0.0.0", 8080), Health).serve_forever()
    """

STACK_BUILD = """
    compose_service(
        name = "cache",
        image = "redis",
        healthcheck = {"test": "python3 /ping.py", "interval": "1s", "timeout": "2s", "retries": "60"},
        volumes = ["cache-data:/data"],
    )

    compose_service(
        name = "app",
        build = "//app:image",
        environment = {"CACHE_HOST": "cache"},
        env_file = "app/app.env",
        volumes = ["app/static:/srv/static:ro"],
        depends_on = {"cache": "service_healthy"},
        publish = ["8080"],
    )

    compose(name = "compose", services = [":app", ":cache"])
    """


@pytest.fixture(scope="module")
def standin(tmp_path_factory, run_id, docker_sdk):
    """The redis stand-in image, as a registry image would be: not built by mbuild."""
    name = f"mbuild-test/redis-standin-{run_id}:7"
    context = tmp_path_factory.mktemp("standin")
    write_tree(context, {"server.py": STANDIN_SERVER, "ping.py": STANDIN_PING, "Dockerfile": STANDIN_DOCKERFILE})
    made = subprocess.run(["docker", "build", "-q", "-t", name, str(context)], capture_output=True, text=True,
                          timeout=300)
    assert made.returncode == 0, f"docker build of the stand-in failed:\n{made.stderr}"
    yield name
    for c in docker_sdk.containers.list(all=True, filters={"ancestor": name}):
        c.remove(force=True)
    subprocess.run(["docker", "image", "rm", "-f", name], capture_output=True)


@pytest.fixture
def stack(tmp_path, run_id, standin, docker_sdk):
    """A workspace with a built app and the external cache, and its own compose project."""
    suffix = f"{run_id}-{hashlib.sha256(str(tmp_path).encode()).hexdigest()[:8]}"
    app_image = f"mbuild-test-stack-app-{suffix}:latest"
    root = tmp_path / "ws"
    write_tree(root, {
        "WORKSPACE.toml": f"""
            name = "stackws"
            rules = ["rules/compose.py"]
            [images.base]
            ref = "{BASE_IMAGE}"
            [images.redis]
            ref = "{standin}"
            """,
        "rules/compose.py": (REPO / "rules" / "compose.py").read_text(),
        "app/app.py": APP,
        "app/app.env": "GREETING=hello from app.env\n",
        "app/static/motd.txt": "served read-only from the workspace\n",
        "app/BUILD": f"""
            filegroup(name = "srcs", srcs = ["app.py"])
            container_image(
                name = "image",
                base = "base",
                workdir = "/srv",
                srcs = [":srcs"],
                cmd = ["python3", "/srv/app/app.py"],
                ports = ["8080"],
                image = "{app_image}",
                visibility = ["//visibility:public"],
            )
            """,
        "stack/BUILD": STACK_BUILD,
    })
    ws = Workspace(root, tmp_path / "cache", {"app": app_image})
    project = f"mbuild-test-stack-{suffix}"
    yield ws, project
    compose_file = root / "mbuild-out" / "stack" / "docker-compose.yml"
    if compose_file.exists():
        compose(compose_file, "down", "--volumes", "--remove-orphans", "--timeout", "5", project=project)
    try:
        docker_sdk.images.remove(app_image, force=True)
    except Exception:  # noqa: BLE001 - never built, or already gone
        pass


def image_id(name: str) -> str:
    """The digest the engine knows ``name`` by (with the containerd image store: its manifest's)."""
    return subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", name], capture_output=True,
                          text=True, check=True).stdout.strip()


def started_at(container: dict) -> float:
    text = container["State"]["StartedAt"]  # RFC 3339 with nanoseconds
    whole, _, frac = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(whole + "+00:00").timestamp() + float("0." + (frac or "0"))


def inspect(name: str) -> dict:
    return json.loads(subprocess.run(["docker", "inspect", name], capture_output=True, text=True,
                                     check=True).stdout)[0]


def test_external_service_is_pinned_validated_locked_and_brought_up_beside_a_built_one(stack, standin):
    ws, project = stack
    records = ws.build_json("//stack:compose")
    compose_file = ws.root / "mbuild-out" / "stack" / "docker-compose.yml"
    assert records["//stack:compose"]["files"] == ["mbuild-out/stack/docker-compose.yml"]

    # docker compose config: the file is valid; the external image is pinned
    # to the digest the engine has it by, the built one to this build's
    services = compose_config(compose_file)["services"]
    standin_digest = image_id(standin)
    assert services["cache"]["image"] == f"{standin.rsplit(':', 1)[0]}@{standin_digest}"
    app_digest = records["//app:image"]["manifest_digest"]
    assert services["app"]["image"] == f"{ws.names['app'].rsplit(':', 1)[0]}@{app_digest}"
    assert f"  # {standin}\n" in compose_file.read_text()  # the tag it was pinned from
    assert services["app"]["depends_on"]["cache"]["condition"] == "service_healthy"
    assert services["cache"]["healthcheck"]["test"] == ["CMD-SHELL", "python3 /ping.py"]
    assert services["app"]["environment"] == {"CACHE_HOST": "cache", "GREETING": "hello from app.env"}
    assert "environment" not in services["cache"]  # the workspace has no .env: optional, and absent
    (mount,) = services["app"]["volumes"]
    assert (mount["type"], mount["source"], mount["read_only"]) == ("bind", str(ws.root / "app" / "static"), True)

    # mbuild lock pins the external image in WORKSPACE.toml like a base; the
    # pinned build writes the same file, answered from the cache
    text = compose_file.read_text()
    ws.mbuild("lock")
    assert f'digest = "{standin_digest}"' in (ws.root / "WORKSPACE.toml").read_text()
    again = ws.build_json("//stack:compose")
    assert again["//stack:compose"]["source"] == "local-cache"
    assert compose_file.read_text() == text

    # up: compose holds the app back until the cache's healthcheck passes
    up = compose(compose_file, "up", "-d", "--pull", "never", project=project, timeout=300)
    assert up.returncode == 0, f"docker compose up failed:\n{up.stderr}"
    port = compose(compose_file, "port", "app", "8080", project=project)
    assert port.returncode == 0, port.stderr
    app_container, cache_container = f"{project}-app-1", f"{project}-cache-1"
    body = wait_for_health(f"http://127.0.0.1:{port.stdout.strip().rsplit(':', 1)[1]}/health",
                           container=app_container)
    assert body == {"status": "ok", "cache": "+PONG", "greeting": "hello from app.env",
                    "motd": "served read-only from the workspace"}
    app, cache = inspect(app_container), inspect(cache_container)
    assert app["State"]["Status"] == "running" and app["RestartCount"] == 0
    assert cache["State"]["Health"]["Status"] == "healthy"
    waited = started_at(app) - started_at(cache)
    assert waited >= WARMUP, f"the app started {waited:.1f}s after the cache, before it could be healthy"
    assert cache["Image"] == standin_digest
    volumes = [(m["Type"], m.get("Name"), m["Destination"]) for m in cache["Mounts"]]
    assert ("volume", f"{project}_cache-data", "/data") in volumes


def test_without_the_healthcheck_wait_the_app_starts_too_early(stack):
    """The control: the same stack with `service_started` starts the app while
    the cache still warms up, and the app fails; so the test above proves
    what service_healthy does."""
    ws, project = stack
    build_file = ws.root / "stack" / "BUILD"
    build_file.write_text(build_file.read_text().replace('"service_healthy"', '"service_started"'))
    ws.build_json("//stack:compose")
    compose_file = ws.root / "mbuild-out" / "stack" / "docker-compose.yml"
    up = compose(compose_file, "up", "-d", "--pull", "never", project=project, timeout=300)
    assert up.returncode == 0, f"docker compose up failed:\n{up.stderr}"
    app_container = f"{project}-app-1"
    deadline = time.monotonic() + 60
    while inspect(app_container)["State"]["Status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.25)
    state = inspect(app_container)["State"]
    assert state["Status"] == "exited" and state["ExitCode"] != 0, state
    logs = subprocess.run(["docker", "logs", app_container], capture_output=True, text=True)
    # the one connection, made while the stand-in still sleeps, failed
    assert "in create_connection" in logs.stderr and logs.stderr.rstrip().splitlines()[-1].startswith(
        ("ConnectionRefusedError", "socket.gaierror", "TimeoutError")), textwrap.shorten(logs.stderr, 400)
