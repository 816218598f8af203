"""The compose file ``mbuild //infra:compose`` writes: valid for ``docker
compose``, services pinned to the digests just built, optional env_file, and
``up`` runs both services (as uid 1000) answering /health."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from ..conftest import REPO
from .conftest import COMPOSE_FILE, NODE_RUNTIME, PYTHON_RUNTIME, wait_for_health

pytestmark = pytest.mark.engine

# service -> (label, container_name, port) as infra/BUILD declares them
SERVICES = {
    "python": (PYTHON_RUNTIME, "ai-mono-python", 8000),
    "node": (NODE_RUNTIME, "ai-mono-node", 3000),
}


def compose(file: Path, *args: str, project: str | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    cmd = ["docker", "compose", "-f", str(file)]
    if project:
        cmd += ["-p", project]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout)


def compose_config(file: Path) -> dict:
    result = compose(file, "config", "--format", "json")
    assert result.returncode == 0, f"docker compose config failed:\n{result.stderr}"
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def compose_file(monorepo_build) -> Path:
    path = REPO / COMPOSE_FILE
    assert path.is_file(), f"{COMPOSE_FILE} was not written"
    return path


def test_config_is_valid_and_pins_the_built_digests(compose_file, monorepo_build):
    services = compose_config(compose_file)["services"]
    assert set(services) == set(SERVICES)
    for service, (label, container_name, port) in SERVICES.items():
        spec = services[service]
        repo = monorepo_build.image(label).rsplit(":", 1)[0]
        assert spec["image"] == f"{repo}@{monorepo_build.digest(label)}"
        assert spec["container_name"] == container_name
        assert [(p["target"], str(p["published"])) for p in spec["ports"]] == [(port, str(port))]
        assert "build" not in spec, "the generated file must run the built images, not rebuild them"


def test_env_file_is_optional_and_is_the_workspace_env(compose_file, tmp_path):
    text = compose_file.read_text()
    assert text.count("required: false") == len(SERVICES), text
    # A copy at the same place under a fake workspace root: the env_file path
    # resolves to that root's .env, and a missing .env is no error.
    placed = tmp_path / COMPOSE_FILE
    placed.parent.mkdir(parents=True)
    shutil.copy(compose_file, placed)
    without = compose_config(placed)["services"]
    assert all(not spec.get("environment") for spec in without.values()), without
    (tmp_path / ".env").write_text("MBUILD_TEST_FROM_ENV_FILE=yes\n")
    with_env = compose_config(placed)["services"]
    for service in SERVICES:
        assert with_env[service].get("environment") == {"MBUILD_TEST_FROM_ENV_FILE": "yes"}, with_env[service]


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def existing_container(name: str) -> str:
    return subprocess.run(["docker", "ps", "-a", "--filter", f"name=^/{name}$", "--format", "{{.ID}} {{.Status}}"],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_up_runs_both_services_as_uid_1000(compose_file, monorepo_build, run_id, docker_sdk):
    # container_name and the host ports are fixed by the file: never take them
    # from a developer's running stack.
    for service, (_, container_name, port) in SERVICES.items():
        found = existing_container(container_name)
        if found:
            pytest.fail(f"a container named {container_name} already exists ({found}); "
                        f"stop it (e.g. docker compose -f {COMPOSE_FILE} down) and rerun")
        if not port_is_free(port):
            pytest.fail(f"host port {port} (service {service}) is in use; free it and rerun")
    project = f"mbuild-test-{run_id}"
    try:
        up = compose(compose_file, "up", "-d", "--pull", "never", project=project)
        assert up.returncode == 0, f"docker compose up failed:\n{up.stderr}"
        for service, (label, container_name, port) in SERVICES.items():
            body = wait_for_health(f"http://127.0.0.1:{port}/health", container=container_name)
            assert body["status"] == "ok", body
            uid = subprocess.run(["docker", "exec", container_name, "id", "-u"], capture_output=True, text=True)
            assert uid.stdout.strip() == "1000", uid
            container = docker_sdk.containers.get(container_name)
            assert container.image.id == docker_sdk.images.get(monorepo_build.image(label)).id
    finally:
        compose(compose_file, "down", "--remove-orphans", "--timeout", "5", project=project)


def pinned_images(compose_file: Path) -> dict[str, str]:
    """{service: image} as the generated file pins them."""
    return {service: spec["image"] for service, spec in compose_config(compose_file)["services"].items()}


def test_compose_pins_the_digests_of_this_build_after_a_rebuild(ws, docker_sdk):
    """An image rebuilt under the same action key can get a new digest (a step
    whose output is not byte-reproducible, run again: here --no-cache and
    random bytes); the compose file must then pin what this build made, not
    a cached render naming an image that is gone."""
    image = ws.names["app"].replace("-app-", "-nonce-")
    ws.names["nonce"] = image  # removed with the workspace's images
    (ws.root / "nonce").mkdir()
    (ws.root / "nonce" / "BUILD").write_text(
        f'container_image(name = "img", base = "base", commands = ["head -c 16 /dev/urandom > /nonce"], '
        f'image = "{image}")\n'
        f'compose(name = "compose", images = [":img"])\n')
    compose_file = ws.root / "mbuild-out" / "nonce" / "docker-compose.yml"
    first = ws.build_json("//nonce:compose")
    assert first["//nonce:compose"]["files"] == ["mbuild-out/nonce/docker-compose.yml"]
    again = ws.build_json("--no-cache", "//nonce:img")["//nonce:img"]
    assert again["key"] == first["//nonce:img"]["key"]
    assert again["manifest_digest"] != first["//nonce:img"]["manifest_digest"]
    second = ws.build_json("//nonce:compose")
    assert second["//nonce:img"]["source"] == "local-cache"
    pinned = pinned_images(compose_file)["img"]
    assert pinned == f"{image.rsplit(':', 1)[0]}@{again['manifest_digest']}", (
        f"the compose file pins {pinned}, but the image now is {again['manifest_digest']} "
        f"(compose: {second['//nonce:compose']['source']})")
    docker_sdk.images.get(pinned)  # the pinned reference resolves
