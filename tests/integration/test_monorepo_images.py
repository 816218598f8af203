"""The monorepo's images as mbuild builds them (``mbuild //infra:all``),
checked against each design decision of the seed's docs/docker.md: slim
bases, the Poetry venv, non-root users, ownership at copy time, no secrets in
images, frozen lockfiles, /health.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import pytest

from ..conftest import REPO
from .conftest import (
    CA_VARIABLES,
    COMPOSE,
    COMPOSE_FILE,
    NODE_IMAGE,
    NODE_RUNTIME,
    PYTHON_IMAGE,
    PYTHON_RUNTIME,
    build_json,
    describe,
    env_of,
    export_tree,
    image_layers,
    mbuild,
    run_in_image,
    sh_ok,
    wait_for_health,
)

pytestmark = pytest.mark.engine

SITE_PACKAGES = "/app/.venv/lib/python3.11/site-packages"
SECRET = "MBUILD_TEST_SECRET=this-must-never-reach-an-image-4f1c9a"
# What a virtualenv seeds into every venv; not the project's dependencies.
VENV_SEED_PACKAGES = {"pip", "setuptools", "wheel"}


def base_ref(name: str) -> str:
    """The ref of WORKSPACE.toml's [images.NAME]."""
    images = tomllib.loads((REPO / "WORKSPACE.toml").read_text())["images"]
    return images[name]["ref"]


def normalise_dist(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def locked_main_packages() -> dict[str, str]:
    """{normalised name: version} of poetry.lock's packages in the main group."""
    lock = tomllib.loads((REPO / "poetry.lock").read_text())
    return {normalise_dist(p["name"]): p["version"] for p in lock["package"] if "main" in p.get("groups", [])}


def api_sources() -> set[str]:
    """The app's Python sources as they are in the work tree, at their image paths."""
    return {f"/app/{p.relative_to(REPO)}" for p in (REPO / "apps/api/api").rglob("*.py")
            if "__pycache__" not in p.parts}


# ---------------------------------------------------------------------------
# the images under test


@dataclass
class Image:
    """A built image: its name, config, layers and (lazily) its file tree."""

    name: str
    docker_sdk: object

    @cached_property
    def attrs(self) -> dict:
        return self.docker_sdk.images.get(self.name).attrs

    @property
    def config(self) -> dict:
        return self.attrs["Config"]

    @property
    def layers(self) -> list[str]:
        return self.attrs["RootFS"]["Layers"]

    @cached_property
    def tree(self):
        return export_tree(self.name)

    def sh(self, script: str, user: str | None = None) -> str:
        return sh_ok(self.name, script, user=user)

    def fails(self, script: str) -> bool:
        return run_in_image(self.name, script).returncode != 0

    def under(self, prefix: str) -> dict:
        return {p: e for p, e in self.tree.items() if p == prefix or p.startswith(prefix + "/")}


@pytest.fixture(scope="module")
def built(monorepo_build, docker_sdk) -> dict[str, Image]:
    return {
        "python": Image(monorepo_build.image(PYTHON_RUNTIME), docker_sdk),
        "node": Image(monorepo_build.image(NODE_RUNTIME), docker_sdk),
        "python_slim_base": Image(base_ref("python_slim"), docker_sdk),
        "python_full_base": Image(base_ref("python"), docker_sdk),
        "node_base": Image(base_ref("node"), docker_sdk),
    }


def test_infra_all_builds_every_target(monorepo_build, docker_sdk):
    records = monorepo_build.records
    assert set(records) == {PYTHON_RUNTIME, NODE_RUNTIME, COMPOSE}, records
    assert records[PYTHON_RUNTIME]["kind"] == "python_image"
    assert records[NODE_RUNTIME]["kind"] == "node_image"
    assert records[COMPOSE]["kind"] == "compose"
    assert records[PYTHON_RUNTIME]["image"] == PYTHON_IMAGE
    assert records[NODE_RUNTIME]["image"] == NODE_IMAGE
    for label in (PYTHON_RUNTIME, NODE_RUNTIME):
        record = records[label]
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", record["manifest_digest"]), record
        assert record["files"] == []
        assert isinstance(record["cached"], bool)
        # The digest names the loaded image: compose pins services by it.
        repo = record["image"].rsplit(":", 1)[0]
        by_digest = docker_sdk.images.get(f"{repo}@{record['manifest_digest']}")
        assert by_digest.id == docker_sdk.images.get(record["image"]).id
    assert records[COMPOSE]["image"] is None and records[COMPOSE]["manifest_digest"] is None
    assert records[COMPOSE]["files"] == [COMPOSE_FILE]
    assert (REPO / COMPOSE_FILE).is_file()


# ---------------------------------------------------------------------------
# one check per seed decision


def python_runtime_is_based_on_slim(images):
    py, slim, full = images["python"], images["python_slim_base"], images["python_full_base"]
    assert py.layers[: len(slim.layers)] == slim.layers, "the runtime does not start from the slim base's layers"
    assert py.layers[: len(full.layers)] != full.layers, "the runtime starts from the full python image"
    assert py.fails("command -v gcc || command -v cc"), "a C compiler is in the runtime image"


def python_venv_in_app_runs(images):
    py = images["python"]
    assert py.tree["/app/.venv"].type == "dir"
    assert py.sh('/app/.venv/bin/python -c "import sys; print(sys.prefix)"').strip() == "/app/.venv"
    assert py.sh("command -v python").strip() == "/app/.venv/bin/python", "the venv is not first on PATH"


def python_venv_imports_locked_dependencies(images):
    version = images["python"].sh('python -c "import py_core, packaging; print(packaging.__version__)"').strip()
    assert version == locked_main_packages()["packaging"]


def python_py_core_is_a_regular_package(images):
    py = images["python"]
    where = py.sh('python -c "import py_core; print(py_core.__file__)"').strip()
    assert where == f"{SITE_PACKAGES}/py_core/__init__.py"
    direct_url = py.sh(f"cat {SITE_PACKAGES}/py_core-*.dist-info/direct_url.json")
    assert not json.loads(direct_url).get("dir_info", {}).get("editable", False), direct_url
    pth = py.sh(f"cat {SITE_PACKAGES}/*.pth")
    assert "/app/libs" not in pth and "py_core" not in pth, f"an editable install's .pth: {pth}"
    assert "/app/libs" not in py.tree, "libs/ reached the runtime image"


def python_only_main_dependencies(images):
    py = images["python"]
    installed = {}
    for path in py.tree:
        m = re.fullmatch(re.escape(SITE_PACKAGES) + r"/([^/]+)-([^/-]+)\.dist-info", path)
        if m and normalise_dist(m.group(1)) not in VENV_SEED_PACKAGES:
            installed[normalise_dist(m.group(1))] = m.group(2)
    assert installed == locked_main_packages()
    assert py.fails('python -c "import pytest"'), "pytest (dev group) is installed"


def python_runtime_holds_only_venv_and_app_source(images):
    app = images["python"].under("/app")
    top = {p for p in app if p.count("/") == 2}
    assert top == {"/app/.venv", "/app/apps"}, top
    sources = {p for p, e in app.items() if p.startswith("/app/apps/") and e.type == "file"}
    assert sources == api_sources()
    outside_venv = [p for p in app if not p.startswith("/app/.venv")]
    assert not [p for p in outside_venv if p.rsplit("/", 1)[-1] in ("pyproject.toml", "poetry.lock", "README.md")]


def python_runs_as_appuser_1000(images):
    py = images["python"]
    assert py.config["User"] == "appuser"
    assert py.sh("id -u; id -g; id -un").split() == ["1000", "1000", "appuser"]
    passwd = py.sh("getent passwd appuser").strip().split(":")
    assert passwd[2:4] == ["1000", "1000"] and passwd[6] == "/usr/sbin/nologin", passwd


def python_workdir_is_app(images):
    py = images["python"]
    assert py.config["WorkingDir"] == "/app"
    assert py.sh("pwd").strip() == "/app"


def python_config_env_cmd_port(images):
    config = images["python"].config
    env = env_of(config)
    assert env["PATH"].startswith("/app/.venv/bin:")
    assert env["PYTHONPATH"] == "/app/apps/api"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1" and env["PYTHONUNBUFFERED"] == "1"
    assert config["Cmd"] == ["python", "-m", "api"]
    assert set(config["ExposedPorts"]) == {"8000/tcp"}


def node_runtime_is_based_on_slim(images):
    node, base = images["node"], images["node_base"]
    assert node.layers[: len(base.layers)] == base.layers


def node_runtime_holds_only_built_output(images):
    node = images["node"]
    files = {p for p, e in node.under("/app").items() if e.type != "dir"}
    dist = {p for p in files if p.startswith("/app/apps/web/dist/")}
    assert "/app/apps/web/dist/main.js" in dist
    assert files == {"/app/apps/web/package.json"} | dist, files - dist
    assert not [p for p in node.tree if "/node_modules" in p and p.startswith("/app")]
    assert not [p for p in files if p.endswith(".ts") and not p.endswith(".d.ts")], "TypeScript sources shipped"
    assert node.fails("command -v pnpm"), "pnpm is in the runtime image"


def node_files_owned_by_node_at_copy_time(images):
    node = images["node"]
    app = node.under("/app/apps")
    assert app, "nothing under /app/apps"
    wrong = {p: (e.uid, e.gid) for p, e in app.items() if (e.uid, e.gid) != (1000, 1000)}
    assert not wrong, f"not owned by node:node (1000:1000): {wrong}"
    assert node.sh("stat -c '%u:%g' $(find /app/apps)").split() == ["1000:1000"] * len(app)
    # Owned from the start: every layer that writes a path under /app/apps
    # writes it owned by node, and each file is written by exactly one layer
    # (no later chown layer rewriting them). Directories show up again in each
    # layer that adds to them, as layer diffs do.
    writes: dict[str, list[tuple[int, int]]] = {}
    for layer in image_layers(node.name):
        for path, info in layer.items():
            if path.startswith("/app/apps"):
                writes.setdefault(path, []).append((info.uid, info.gid))
    assert set(writes) == set(app)
    other_owner = {p: w for p, w in writes.items() if set(w) != {(1000, 1000)}}
    assert not other_owner, f"layers writing these paths with another owner: {other_owner}"
    rewritten = {p: w for p, w in writes.items() if app[p].type != "dir" and len(w) != 1}
    assert not rewritten, f"files written by several layers (a chown after the copy?): {rewritten}"


def node_runs_as_builtin_node_user(images):
    node, base = images["node"], images["node_base"]
    assert node.config["User"] == "node"
    assert node.sh("id -u; id -g; id -un").split() == ["1000", "1000", "node"]
    # The base's user, not a new one: /etc/passwd and /etc/group are the base's.
    for path in ("/etc/passwd", "/etc/group"):
        assert node.tree[path].sha256 == base.tree[path].sha256, f"{path} differs from the base image's"


def node_env_workdir_cmd_port(images):
    node = images["node"]
    assert env_of(node.config)["NODE_ENV"] == "production"
    assert node.config["WorkingDir"] == "/app"
    assert node.config["Cmd"] == ["node", "apps/web/dist/main.js"]
    assert set(node.config["ExposedPorts"]) == {"3000/tcp"}
    assert node.sh("node --version").startswith("v22.")


def no_dotenv_in_runtimes(images):
    for key in ("python", "node"):
        found = [p for p in images[key].tree if p.rsplit("/", 1)[-1] == ".env"]
        assert not found, f"{images[key].name} holds {found}"


def no_ca_variables_in_configs(images):
    for key in ("python", "node"):
        env = env_of(images[key].config)
        assert not set(CA_VARIABLES) & set(env), f"{images[key].name} config Env: {env}"


SEED_DECISIONS: list[tuple[str, Callable]] = [
    ("python-slim-base-no-compiler", python_runtime_is_based_on_slim),
    ("python-venv-in-app", python_venv_in_app_runs),
    ("python-venv-imports-locked-deps", python_venv_imports_locked_dependencies),
    ("python-py-core-non-editable", python_py_core_is_a_regular_package),
    ("python-no-dev-deps", python_only_main_dependencies),
    ("python-only-venv-and-app-source", python_runtime_holds_only_venv_and_app_source),
    ("python-appuser-uid-1000", python_runs_as_appuser_1000),
    ("python-workdir-app", python_workdir_is_app),
    ("python-env-cmd-port", python_config_env_cmd_port),
    ("node-slim-base", node_runtime_is_based_on_slim),
    ("node-only-built-output", node_runtime_holds_only_built_output),
    ("node-chown-at-copy", node_files_owned_by_node_at_copy_time),
    ("node-builtin-user-1000", node_runs_as_builtin_node_user),
    ("node-production-env-cmd-port", node_env_workdir_cmd_port),
    ("no-dotenv-in-images", no_dotenv_in_runtimes),
    ("no-ca-bundle-variables", no_ca_variables_in_configs),
]


@pytest.mark.parametrize("check", [c for _, c in SEED_DECISIONS], ids=[i for i, _ in SEED_DECISIONS])
def test_seed_decision(check, built):
    check(built)


# ---------------------------------------------------------------------------
# the services answer


@pytest.mark.parametrize(("label", "port", "service"), [(PYTHON_RUNTIME, 8000, "api"), (NODE_RUNTIME, 3000, "web")],
                         ids=["python", "node"])
def test_runtime_serves_health(monorepo_build, containers, label, port, service):
    name, host_port = containers.run(monorepo_build.image(label), port, service)
    body = wait_for_health(f"http://127.0.0.1:{host_port}/health", container=name)
    assert body["status"] == "ok"
    assert body["service"] == service


# ---------------------------------------------------------------------------
# copies of the workspace: secrets, pinned pnpm, frozen lockfile

# Extra targets for the copy: the builder stage's /app as an image (to look
# for leaked files) and a probe of the pnpm the deps stage activates.
PROBES = """
node_image(
    name = "builder_tree",
    base = "node",
    builder = ":node_builder",
    outputs = ["."],
    image = "builder-tree:latest",
)

node_build(
    name = "pnpm_probe",
    deps = ":node_deps",
    srcs = ["//:node_config"],
    command = ["sh", "-c", "pnpm --version > pnpm-version"],
)

node_image(
    name = "pnpm_probe_image",
    base = "node",
    builder = ":pnpm_probe",
    outputs = ["pnpm-version"],
    image = "pnpm-probe:latest",
)
"""

# A .env at the root (the one .dockerignore names) and in every package.
DOTENV_PLACES = [".env", "apps/api/.env", "apps/api/api/.env", "apps/web/.env", "apps/web/src/.env",
                 "libs/py-core/.env", "infra/.env"]


@pytest.fixture(scope="module")
def secret_copy(workspace_copies):
    """A workspace copy with .env files holding a secret, built with probe targets."""
    copy = workspace_copies("secret", extra_build=PROBES)
    for rel in DOTENV_PLACES:
        (copy.root / rel).write_text(SECRET + "\n")
    run = build_json("//infra:all", "//infra:builder_tree", "//infra:pnpm_probe_image", cwd=copy.root)
    return copy, run


def test_dotenv_secret_never_reaches_an_image(secret_copy):
    copy, run = secret_copy
    images = [run.image(PYTHON_RUNTIME), run.image(NODE_RUNTIME), run.image("//infra:builder_tree")]
    assert images[0] == copy.image(PYTHON_IMAGE) and images[1] == copy.image(NODE_IMAGE)
    for image in images:
        tree = export_tree(image, marker=SECRET.encode())
        dotenvs = [p for p in tree if p.rsplit("/", 1)[-1] == ".env"]
        leaked = [p for p, e in tree.items() if e.contains_marker]
        assert not dotenvs and not leaked, f"{image}: .env files {dotenvs}, files with the secret {leaked}"
    # The builder stage took the named sources only (seed: no `COPY . .`).
    builder_app = {p for p in export_tree(images[2]) if p.startswith("/app/") and "/node_modules" not in p}
    assert "/app/apps/web/src/main.ts" in builder_app
    assert not [p for p in builder_app if p.startswith(("/app/apps/api", "/app/libs", "/app/infra"))]


def test_node_deps_stage_activates_pinned_pnpm(secret_copy):
    _, run = secret_copy
    image = run.image("//infra:pnpm_probe_image")
    assert sh_ok(image, "cat /app/pnpm-version").strip() == "10.28.1"


def test_outdated_pnpm_lockfile_fails_the_build(workspace_copies, docker_sdk):
    copy = workspace_copies("frozen")
    manifest = copy.root / "apps/web/package.json"
    data = json.loads(manifest.read_text())
    data.setdefault("dependencies", {})["left-pad"] = "1.3.0"  # pnpm-lock.yaml left as it is
    manifest.write_text(json.dumps(data, indent=2) + "\n")
    result = mbuild(NODE_RUNTIME, "--progress", "plain", cwd=copy.root)
    output = result.stdout + result.stderr
    assert result.returncode == 1, describe(result)
    assert "ERR_PNPM_OUTDATED_LOCKFILE" in output or "frozen-lockfile" in output, describe(result)
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("mbuild: error:")]
    assert len(error_lines) == 1 and "//infra:node_deps" in error_lines[0], describe(result)
    assert "Traceback" not in output
    assert not docker_sdk.images.list(name=copy.image(NODE_IMAGE).rsplit(":", 1)[0]), "an image was loaded anyway"
