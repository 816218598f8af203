"""The compose file ``mbuild //infra:compose`` writes: valid for ``docker
compose``, services pinned to the digests just built, optional env_file, and
``up`` runs both services (as uid 1000) answering /health."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from ..conftest import REPO
from .conftest import (
    COMPOSE,
    COMPOSE_FILE,
    NODE_RUNTIME,
    PYTHON_IMAGE,
    PYTHON_RUNTIME,
    build_json,
    wait_for_health,
)

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


def commit_all(root: Path, date: str) -> None:
    """Commit the work tree of ``root`` (a git repo made here) at a fixed date."""
    env = {**os.environ, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=root, env=env, check=True, capture_output=True)

    if not (root / ".git").exists():
        git("init", "-q")
    git("add", "-A", ".")
    git("-c", "user.name=mbuild-test", "-c", "user.email=test@mbuild.invalid",
        "commit", "-q", "--allow-empty", "-m", f"at {date}")


def test_compose_pins_the_digests_of_this_build_after_a_rebuild(workspace_copies, tmp_path_factory, docker_sdk):
    """An image rebuilt under the same action key can get a new digest (here:
    a new commit moves the default SOURCE_DATE_EPOCH, and the image had been
    removed); the compose file must pin what this build made, not a cached
    render naming an image that no longer exists."""
    copy = workspace_copies("rebuild")
    cache = tmp_path_factory.mktemp("rebuild-cache")
    ws_toml = copy.root / "WORKSPACE.toml"
    ws_toml.write_text(ws_toml.read_text() + f'\n[cache]\ndir = "{cache}"\n')
    commit_all(copy.root, "2020-01-01T00:00:00Z")
    first = build_json("//infra:all", cwd=copy.root)
    compose_file = copy.root / COMPOSE_FILE
    assert first.records[COMPOSE]["files"] == [COMPOSE_FILE]

    docker_sdk.images.remove(copy.image(PYTHON_IMAGE), force=True)
    commit_all(copy.root, "2021-01-01T00:00:00Z")
    second = build_json("//infra:all", cwd=copy.root)

    pinned = pinned_images(compose_file)
    for service, (label, _, _) in SERVICES.items():
        repo = second.image(label).rsplit(":", 1)[0]
        assert pinned[service] == f"{repo}@{second.digest(label)}", (
            f"{COMPOSE_FILE} pins {pinned[service]}, but this build made {second.digest(label)} "
            f"(first build: {first.digest(label)}; compose reported cached={second.records[COMPOSE]['cached']})")
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", second.digest(label))
        docker_sdk.images.get(pinned[service])  # the pinned reference resolves
