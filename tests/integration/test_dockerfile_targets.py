"""The seed's Dockerfiles as `dockerfile` targets: built through BuildKit's
Dockerfile frontend by mbuild, they hold the same files and config as
`docker buildx build` of the same files (the oracle's comparison, from
test_dockerfile_oracle), and an unchanged target is answered from the
cache, locally and from a remote cache on a machine that never built it."""

from __future__ import annotations

import pytest

from .conftest import NODE_RUNTIME, PYTHON_RUNTIME, build_json, export_tree, mbuild, remove_images
from .test_dockerfile_oracle import CA_BUNDLE, config_diff, oracle, tree_diff  # noqa: F401 - oracle: a fixture

pytestmark = pytest.mark.engine

REMOTE = "grpc://127.0.0.1:50051"
TARGETS = {PYTHON_RUNTIME: ("//infra:python_dockerfile", "python"),
           NODE_RUNTIME: ("//infra:node_dockerfile", "node")}


def dockerfile_targets(run_id: str) -> str:
    """BUILD text: both seed Dockerfiles as `dockerfile` targets, runtime stage, the CA bundle as a secret."""
    return "\n".join(f"""
dockerfile(
    name = "{name.split(':')[1]}",
    src = "docker/{lang}.Dockerfile",
    context = "//",
    target = "runtime",
    secrets = {{"cacert": "file:{CA_BUNDLE}"}},
    image = "mbuild-test-{run_id}-dockerfile-{lang}:x",
)""" for name, lang in TARGETS.values())


@pytest.fixture(scope="module")
def dockerfile_build(workspace_copies, run_id, docker_sdk):
    copy = workspace_copies("dockerfiles", dockerfile_targets(run_id))
    run = build_json(*(name for name, _ in TARGETS.values()), cwd=copy.root)
    yield copy, run
    remove_images(docker_sdk, [f"mbuild-test-{run_id}-dockerfile-{lang}:x" for _, lang in TARGETS.values()])


@pytest.mark.parametrize("label", [PYTHON_RUNTIME, NODE_RUNTIME], ids=["python", "node"])
def test_a_dockerfile_target_matches_buildx(dockerfile_build, oracle, docker_sdk, label):  # noqa: F811
    _, run = dockerfile_build
    name = TARGETS[label][0]
    ours = run.image(name)
    diff = tree_diff(export_tree(ours), export_tree(oracle[label]))
    assert not diff, f"{len(diff)} differences ({name} vs {oracle[label]}):\n" + "\n".join(diff[:80])
    mine, theirs = docker_sdk.images.get(ours).attrs["Config"], docker_sdk.images.get(oracle[label]).attrs["Config"]
    assert not config_diff(mine, theirs), "config differs:\n" + "\n".join(config_diff(mine, theirs))
    assert mine["Env"] == theirs["Env"]


def test_an_unchanged_dockerfile_target_is_answered_from_the_caches(dockerfile_build, tmp_path):
    copy, first = dockerfile_build
    names = [name for name, _ in TARGETS.values()]
    again = build_json(*names, "--remote", REMOTE, "--remote-upload", cwd=copy.root)
    for name in names:  # locally: no solve; and the remote is given what it lacks (local hits uploaded)
        assert again.records[name]["source"] == "local-cache"
        assert again.records[name]["manifest_digest"] == first.digest(name)
        assert again.records[name]["key"] == first.records[name]["key"]
    # A machine that never built them (an empty local cache) gets them from the remote cache.
    fresh = build_json("--cache-dir", str(tmp_path / "fresh"), *names, "--remote", REMOTE, cwd=copy.root)
    for name in names:
        assert fresh.records[name]["source"] == "remote-cache", fresh.result.stderr[-2000:]
        assert fresh.records[name]["manifest_digest"] == first.digest(name)


def test_a_context_change_the_dockerignore_hides_keeps_the_key(dockerfile_build):
    copy, first = dockerfile_build
    name = TARGETS[PYTHON_RUNTIME][0]
    (copy.root / "apps" / "api" / ".env").write_text("IGNORED=1\n")  # .dockerignore: **/.env
    assert build_json(name, cwd=copy.root).records[name]["key"] == first.records[name]["key"]
    explained = mbuild("explain", name, cwd=copy.root).stdout
    assert '"FROM python:3.11-slim": "sha256:' in explained and "apps/api/api/__main__.py" in explained


def test_a_context_file_the_workspace_ignores_is_never_read_or_sent(tmp_path, image_names, docker_sdk):
    """A `dockerfile` target whose context holds a `.env` (and has no ignore
    file of its own): the workspace's .dockerignore keeps it out of the key and
    out of what the frontend can read, as for every other target."""
    from .workspaces import MBUILD, write_tree
    from ..conftest import BASE_IMAGE
    import subprocess

    name = image_names("dockerfile-dotenv")
    write_tree(tmp_path / "ws", {
        "WORKSPACE.toml": f'name = "df"\n[images.base]\nref = "{BASE_IMAGE}"\n',
        ".dockerignore": ".env\n**/.env\n",
        "app/BUILD": f'dockerfile(name = "img", src = "Dockerfile", context = ".", image = "{name}")\n',
        "app/Dockerfile": f"FROM {BASE_IMAGE}\nCOPY . /ctx/\nRUN ls -A /ctx > /listing\n",
        "app/hello.txt": "hello\n",
        "app/.env": "TOKEN=planted-secret-value\n",
    })
    run = subprocess.run([*MBUILD, "--cache-dir", str(tmp_path / "cache"), "build", "--json", "//app:img"],
                         cwd=tmp_path / "ws", capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    listing = subprocess.run(["docker", "run", "--rm", name, "cat", "/listing"], capture_output=True, text=True)
    assert listing.stdout.split() == ["BUILD", "Dockerfile", "hello.txt"], listing.stdout  # no .env
    explain = subprocess.run([*MBUILD, "--cache-dir", str(tmp_path / "cache"), "explain", "//app:img"],
                             cwd=tmp_path / "ws", capture_output=True, text=True, timeout=120)
    assert explain.returncode == 0 and ".env" not in explain.stdout and "planted" not in explain.stdout
