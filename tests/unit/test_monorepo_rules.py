"""Every rule of the monorepo (rules/*.py) and mbuild's built-ins, through the
engine-free harness: the real WORKSPACE.toml and BUILD files, fake base
images; providers, LLB steps, image configs and generated files checked
against the seed's design decisions. The engine tests keep to what only the
engine can prove (tests/integration)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mbuild.api import v1 as mb
from mbuild.api.testing import FakeBase, RuleHarness
from mbuild.errors import ConfigError
from mbuild.execution.plan import plan
from mbuild.loading.labels import Label

from ..conftest import REPO

CA = "/etc/ssl/certs/ca-certificates.crt"
CA_ENV = [f"SSL_CERT_FILE={CA}", f"PIP_CERT={CA}", f"REQUESTS_CA_BUNDLE={CA}", f"NODE_EXTRA_CA_CERTS={CA}"]
BASES = {
    "python": FakeBase(config={"Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"]}),
    "python_slim": FakeBase(config={"Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"],
                                    "Cmd": ["python3"]}),
    "node": FakeBase(config={"Env": ["PATH=/usr/local/bin:/usr/bin:/bin"], "Cmd": ["node"]}),
}


@pytest.fixture(scope="module")
def infra():
    return RuleHarness(REPO, bases=BASES).analyze("//infra:all")


def execs(result):
    """The run steps the target's own rule added."""
    return [step for step in result.own_steps if "exec" in step]


def copies(result):
    """The copy actions the target's own rule added."""
    return [a for step in result.own_steps if "file" in step for a in step["file"] if a[0] == "copy"]


def mount_kinds(step) -> set[tuple[str, str]]:
    return {(m["type"], m["dest"]) for m in step["mounts"]}


# ---------------------------------------------------------------------------
# Python: poetry_install, python_image


def test_poetry_install_resolves_the_lockfile_into_the_project_venv(infra):
    deps = infra["//infra:python_deps"]
    assert deps[mb.Stage].state is deps.stage
    venv = next(p for t, p in deps.providers.items() if t.__name__ == "PoetryVenv")
    assert (venv.path, venv.project) == ("/app/.venv", "")
    install_poetry, install, reproducible = execs(deps)
    assert install_poetry["exec"][-1].startswith("python3 -m venv --without-pip /opt/poetry && ")
    assert '"poetry==2.1.3"' in install_poetry["exec"][-1]
    assert install["exec"] == ["/bin/sh", "-c", "poetry install --no-root --only main"]
    assert install["cwd"] == "/app"
    env = dict(e.split("=", 1) for e in install["env"])
    assert env["POETRY_VIRTUALENVS_IN_PROJECT"] == "true" and env["PATH"].endswith(":/opt/poetry/bin")
    for step in (install_poetry, install):  # fetching steps: the CA bundle as a secret, caches as mounts
        assert ("secret", CA) in mount_kinds(step) and set(CA_ENV) <= set(step["env"])
    assert {("cache", "/root/.cache/pypoetry"), ("cache", "/root/.cache/pip")} <= mount_kinds(install)
    # Then the venv is made reproducible by its own interpreter, without network or secrets.
    assert reproducible["exec"][:5] == ["/app/.venv/bin/python", "-I", "-S", "-B", "-c"]
    assert reproducible["exec"][-1] == "/app/.venv" and "CHECKED_HASH" in reproducible["exec"][5]
    assert reproducible["mounts"] == [{"type": "bind", "dest": "/", "id": ""}]
    # Only the lock files and the complete path dependency are copied, at their workspace paths.
    local = next(s for s in deps.steps if s.get("source") == "local://workspace")
    included = local["attrs"]["local.includepattern"]
    assert '"pyproject.toml"' in included and '"poetry.lock"' in included and "libs/py-core/py_core/" in included
    assert "apps/" not in included
    assert deps.info.image is None  # a stage, not an image



@pytest.mark.parametrize("pip_version, way", [("23.0.1", "base pip"), ("22.3", "base pip"),
                                              ("22.2.2", "venv pip"), (None, "venv pip")])
def test_poetry_is_installed_by_the_bases_pip_when_it_can_install_into_a_venv(infra, tmp_path, pip_version, way):
    """The step's shell picks its way by the base's pip (`--python` needs pip >= 22.3); a stand-in
    python3 on PATH records what the step runs."""
    install_poetry = execs(infra["//infra:python_deps"])[0]
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python3").write_text(f"""#!/bin/sh
echo "python3 $*" >> {tmp_path}/ran
[ "$1" = -c ] && exec {sys.executable} -S "$@"
exit 0
""")
    (fake / "python3").chmod(0o755)
    site = tmp_path / "site"
    if pip_version:
        (site / "pip").mkdir(parents=True)
        (site / "pip" / "__init__.py").write_text(f"__version__ = {pip_version!r}\n")
    venv_pip = tmp_path / "opt-poetry-pip"
    command = (install_poetry["exec"][-1].replace("/opt/poetry/bin/pip", str(venv_pip))
               .replace("/opt/poetry/bin/python3 -m compileall", "python3 -m compileall"))
    venv_pip.write_text(f"#!/bin/sh\necho \"venv-pip $*\" >> {tmp_path}/ran\n")
    venv_pip.chmod(0o755)
    subprocess.run(["/bin/sh", "-c", command], check=True,
                   env={"PATH": f"{fake}:/usr/bin:/bin", "PYTHONPATH": str(site)})
    ran = (tmp_path / "ran").read_text().splitlines()
    installs = [r for r in ran if " install " in r]
    assert len(installs) == 1 and installs[0].endswith("--disable-pip-version-check poetry==2.1.3")
    if way == "base pip":
        assert installs[0].startswith("python3 -m pip --python /opt/poetry/bin/python3 install --no-compile")
        assert "python3 -m venv --clear /opt/poetry" not in ran
        assert ran[-1] == "python3 -m compileall -q -j 0 /opt/poetry/lib"  # on every core, once installed
    else:
        assert installs[0].startswith("venv-pip install") and "python3 -m venv --clear /opt/poetry" in ran

def test_python_image_is_slim_non_root_and_runs_the_app(infra):
    runtime = infra["//infra:python_runtime"]
    assert runtime[mb.Image].name == "ai-mono-python:latest"
    assert runtime.info.image.base == "python_slim"  # found from the LLB: its layers are the base's
    assert runtime[mb.Service] == mb.Service("python", "ai-mono-python", ("8000:8000",))
    (add_user,) = execs(runtime)
    assert add_user["exec"][-1] == ("groupadd --gid 1000 appuser && useradd --uid 1000 --gid 1000 "
                                    "--no-create-home --shell /usr/sbin/nologin appuser")
    assert add_user["mounts"] == [{"type": "bind", "dest": "/", "id": ""}]  # no network secrets here
    assert copies(runtime) == [("copy", "/app/.venv", "/app/.venv", ""), ("copy", "/", "/app/", "")]
    config = runtime.image_config
    assert config["User"] == "appuser" and config["WorkingDir"] == "/app"
    assert config["Cmd"] == ["python", "-m", "api"] and config["ExposedPorts"] == {"8000/tcp": {}}
    assert config["Env"] == ["PATH=/app/.venv/bin:/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8",
                             "PYTHONPATH=/app/apps/api", "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1"]
    assert not any(v.split("=")[0] in ("SSL_CERT_FILE", "PIP_CERT") for v in config["Env"])


def sub_folder_workspace(tmp_path: Path, build: str, extra: dict | None = None) -> RuleHarness:
    return RuleHarness.write(tmp_path, {
        "WORKSPACE.toml": 'rules = ["rules/python.py"]\n[images.python]\nref = "python:3.11"\n'
                          '[images.python_slim]\nref = "python:3.11-slim"\n',
        "rules/python.py": (REPO / "rules" / "python.py").read_text(),
        "libs/greet/BUILD": 'filegroup(name = "greet", srcs = glob(["**"]), visibility = ["//visibility:public"])\n',
        "libs/greet/pyproject.toml": "[tool.poetry]\nname = 'greet'\n",
        "services/hello/pyproject.toml": "[tool.poetry]\nname = 'hello'\n",
        "services/hello/poetry.lock": "",
        "services/hello/main.py": "",
        "services/hello/BUILD": build,
        **(extra or {}),
    }, bases=BASES)


HELLO_BUILD = """\
filegroup(name = "lock", srcs = ["pyproject.toml", "poetry.lock"])
filegroup(name = "srcs", srcs = ["main.py"])
poetry_install(name = "deps", base = "python", lockfiles = [":lock"], path_deps = ["//libs/greet"])
python_image(name = "image", base = "python_slim", venv = ":deps", srcs = [":srcs"], image = "hello:1")
"""


def test_a_poetry_project_in_a_sub_folder_runs_poetry_there_and_keeps_the_venv_at_its_path(tmp_path):
    analysis = sub_folder_workspace(tmp_path, HELLO_BUILD).analyze("//services/hello:image")
    deps, image = analysis["//services/hello:deps"], analysis["//services/hello:image"]
    *_, install, reproducible = execs(deps)
    assert install["cwd"] == "/app/services/hello"  # next to its pyproject.toml; ../../libs/greet resolves
    assert reproducible["exec"][0] == "/app/services/hello/.venv/bin/python"
    venv = next(p for t, p in deps.providers.items() if t.__name__ == "PoetryVenv")
    assert (venv.path, venv.project) == ("/app/services/hello/.venv", "services/hello")
    assert ("copy", "/app/services/hello/.venv", "/app/services/hello/.venv", "") in copies(image)
    assert image.image_config["Env"][0] == "PATH=/app/services/hello/.venv/bin:/usr/local/bin:/usr/bin:/bin"


def test_which_poetry_project_is_meant_must_be_clear(tmp_path):
    two = HELLO_BUILD.replace('srcs = ["pyproject.toml", "poetry.lock"]',
                              'srcs = ["pyproject.toml", "poetry.lock", "sub/pyproject.toml"]')
    harness = sub_folder_workspace(tmp_path, two, {"services/hello/sub/pyproject.toml": ""})
    with pytest.raises(ConfigError) as err:
        harness.analyze("//services/hello:deps")
    assert str(err.value) == ("services/hello/BUILD:3: //services/hello:deps: lockfiles hold 2 pyproject.toml files "
                              "(services/hello/pyproject.toml, services/hello/sub/pyproject.toml); set `project` "
                              "to the folder of the Poetry project")
    chosen = two.replace('path_deps = ["//libs/greet"]', 'path_deps = ["//libs/greet"], project = "services/hello/sub"')
    harness = sub_folder_workspace(tmp_path / "chosen", chosen, {"services/hello/sub/pyproject.toml": ""})
    assert execs(harness.analyze("//services/hello:deps")["//services/hello:deps"])[-2]["cwd"] == \
        "/app/services/hello/sub"
    wrong = HELLO_BUILD.replace('path_deps = ["//libs/greet"]', 'path_deps = ["//libs/greet"], project = "nowhere"')
    with pytest.raises(ConfigError, match=r"attribute 'project': nowhere/pyproject.toml is not in lockfiles"):
        sub_folder_workspace(tmp_path / "wrong", wrong).analyze("//services/hello:deps")


def test_python_image_needs_a_poetry_venv(tmp_path):
    build = HELLO_BUILD.replace('venv = ":deps"', 'venv = ":srcs"')
    with pytest.raises(ConfigError) as err:
        sub_folder_workspace(tmp_path, build).analyze("//services/hello:image")
    assert str(err.value) == ("services/hello/BUILD:4: //services/hello:image: attribute 'venv' of python_image: "
                              "//services/hello:srcs (filegroup) does not provide Stage, PoetryVenv")


# ---------------------------------------------------------------------------
# Node: pnpm_install, node_build, node_image


def test_pnpm_install_activates_pinned_pnpm_and_installs_frozen(infra):
    deps = infra["//infra:node_deps"]
    corepack, install = execs(deps)
    assert "corepack prepare pnpm@10.28.1+sha512." in corepack["exec"][-1]
    assert install["exec"] == ["/bin/sh", "-c", "pnpm install --frozen-lockfile --store-dir /pnpm/store"]
    assert ("cache", "/pnpm/store") in mount_kinds(install) and ("secret", CA) in mount_kinds(install)
    env = dict(e.split("=", 1) for e in install["env"])
    assert env["COREPACK_HOME"] == "/opt/corepack" and install["cwd"] == "/app"


def test_node_build_adds_only_the_named_sources(infra):
    builder = infra["//infra:node_builder"]
    build = execs(builder)[-1]
    assert build["exec"][:2] == ["node", "-e"] and build["exec"][3:] == ["build"]  # package.json's build script
    assert build["cwd"] == "/app/apps/web"
    local = [s for s in builder.steps if s.get("source") == "local://workspace"][-1]
    included = local["attrs"]["local.includepattern"]
    assert "apps/web/src/" in included and "nx.json" in included and ".env" not in included


def test_node_image_copies_only_the_outputs_owned_by_node(infra):
    runtime = infra["//infra:node_runtime"]
    assert copies(runtime) == [("copy", "/app/apps/web/package.json", "/app/apps/web/package.json", "node"),
                               ("copy", "/app/apps/web/dist", "/app/apps/web/dist", "node")]
    assert execs(runtime) == []  # owned as copied: no chown step
    config = runtime.image_config
    assert config["User"] == "node" and config["Cmd"] == ["node", "apps/web/dist/main.js"]
    assert "NODE_ENV=production" in config["Env"]
    assert runtime[mb.Service] == mb.Service("node", "ai-mono-node", ("3000:3000",))
    assert runtime.info.image.base == "node"


# ---------------------------------------------------------------------------
# compose


def test_compose_pins_each_image_by_digest_with_an_optional_env_file(infra):
    compose = infra["//infra:compose"]
    digests = {"//infra:python_runtime": "sha256:" + "1" * 64, "//infra:node_runtime": "sha256:" + "2" * 64}
    assert compose.render(digests) == f"""\
# Generated by mbuild from //infra:compose; do not edit.
name: "ai-mono"
services:
  python:
    image: "ai-mono-python@sha256:{"1" * 64}"
    container_name: "ai-mono-python"
    ports:
      - "8000:8000"
    env_file:
      - path: "../../.env"
        required: false
  node:
    image: "ai-mono-node@sha256:{"2" * 64}"
    container_name: "ai-mono-node"
    ports:
      - "3000:3000"
    env_file:
      - path: "../../.env"
        required: false
"""
    generated = compose.key_inputs["generated"]
    assert generated["render"] == "rules/compose.py:render_compose"  # its code is in rule_files
    assert generated["path"] == "infra/docker-compose.yml"
    assert compose.key_inputs["context"] == {"output_relpath(docker-compose.yml, .env)": "../../.env",
                                             "workspace_name": "ai-mono"}


def compose_workspace(tmp_path: Path, build: str) -> RuleHarness:
    return RuleHarness.write(tmp_path, {
        "WORKSPACE.toml": 'name = "cw"\nrules = ["rules/compose.py"]\n[images.base]\nref = "debian:12"\n',
        "rules/compose.py": (REPO / "rules" / "compose.py").read_text(),
        "pkg/BUILD": build,
    })


def test_compose_of_images_without_a_service_uses_target_names(tmp_path):
    harness = compose_workspace(tmp_path, 'container_image(name = "a", base = "base", image = "a:1")\n'
                                          'compose(name = "c", images = [":a"], env_file = "", project = "p")\n')
    text = harness.analyze("//pkg:c")["//pkg:c"].render({"//pkg:a": "sha256:" + "3" * 64})
    assert text == f'# Generated by mbuild from //pkg:c; do not edit.\nname: "p"\nservices:\n' \
                   f'  a:\n    image: "a@sha256:{"3" * 64}"\n'


@pytest.mark.parametrize(("build", "message"), [
    ('container_image(name = "a", base = "base")\ncompose(name = "c", images = [":a"])\n',
     "pkg/BUILD:2: //pkg:c: //pkg:a (container_image) is not a named image; set its `image` attribute"),
    ('container_image(name = "a", base = "base", image = "a:1", service = "s")\n'
     'container_image(name = "b", base = "base", image = "b:1", service = "s")\n'
     'compose(name = "c", images = [":a", ":b"])\n',
     "pkg/BUILD:3: //pkg:c: two images use the same service name: ['s', 's']"),
], ids=["not-an-image", "same-service"])
def test_compose_errors_name_the_build_line(tmp_path, build, message):
    with pytest.raises(ConfigError) as err:
        compose_workspace(tmp_path, build).analyze("//pkg:c")
    assert str(err.value) == message


# ---------------------------------------------------------------------------
# built-ins and the plan


def test_group_stands_for_its_targets_in_the_plan(infra):
    infos = {result.label: result.info for result in infra.values()}
    jobs = {str(job.label): job for job in plan([Label("infra", "all")], infos)}
    assert set(jobs) == {"//infra:python_runtime", "//infra:node_runtime", "//infra:compose"}
    assert jobs["//infra:compose"].kind == "write"
    assert set(map(str, jobs["//infra:compose"].after)) == {"//infra:python_runtime", "//infra:node_runtime"}
    assert infra["//infra:all"][mb.Group].targets == (Label("infra", "python_runtime"),
                                                      Label("infra", "node_runtime"), Label("infra", "compose"))


def test_filegroups_give_files_that_are_inputs_of_their_key(infra):
    lock = infra["//:python_lock"]
    assert lock[mb.Files].files == ("poetry.lock", "pyproject.toml")
    assert set(lock.key_inputs["sources"]) == {"poetry.lock", "pyproject.toml"}
    manifests = infra["//:node_manifests"]
    assert manifests[mb.Files].files == ("apps/web/package.json", "package.json", "pnpm-lock.yaml",
                                         "pnpm-workspace.yaml")


def test_container_image_from_a_base_or_a_stage(tmp_path):
    harness = RuleHarness.write(tmp_path, {
        "WORKSPACE.toml": '[images.base]\nref = "debian:12"\n',
        "pkg/BUILD": 'filegroup(name = "src", srcs = ["run.sh"])\n'
                     'container_image(name = "a", base = "base", workdir = "/w", srcs = [":src"], '
                     'commands = ["chmod +x pkg/run.sh"], cmd = ["/w/pkg/run.sh"])\n'
                     'container_image(name = "b", from_stage = ":a", commands = ["apt-get update"], network = True, '
                     'image = "b:1")\n',
        "pkg/run.sh": "#!/bin/sh\n",
    }, bases={"base": FakeBase(config={"User": "root"})})
    analysis = harness.analyze("//pkg:b")
    a, b = analysis["//pkg:a"], analysis["//pkg:b"]
    (chmod,) = execs(a)
    assert chmod["exec"] == ["/bin/sh", "-c", "chmod +x pkg/run.sh"] and chmod["network"] == "none"
    assert chmod["cwd"] == "/w"
    update = execs(b)[-1]
    assert update["network"] == "sandbox"  # network = True: downloads allowed
    assert b.info.image.base == "base"  # from_stage: still the base image's layers at the bottom
    assert mb.Stage in a and mb.Image not in a


def test_unknown_base_image_names_the_build_line(tmp_path):
    harness = RuleHarness.write(tmp_path, {
        "WORKSPACE.toml": '[images.base]\nref = "debian:12"\n',
        "pkg/BUILD": '\ncontainer_image(name = "a", base = "bsae")\n',
    })
    with pytest.raises(ConfigError) as err:
        harness.analyze("//pkg:a")
    assert str(err.value) == "pkg/BUILD:2: //pkg:a: attribute 'base': unknown base image 'bsae'; " \
                             "WORKSPACE.toml [images] has: base"


def test_the_monorepo_workspace_lists_its_rule_modules():
    from mbuild.loading.workspace import load_workspace

    assert [m.path for m in load_workspace(REPO).rules] == ["rules/python.py", "rules/node.py", "rules/compose.py"]
    assert not (REPO / "tools" / "mbuild" / "mbuild" / "rules" / "python.py").exists()  # no copy in the tool


def _node_builder_with(tmp_path, attrs: str):
    """The monorepo's //infra:node_builder with other attributes, in a copy of the workspace."""
    import shutil

    skip = shutil.ignore_patterns(".git", ".venv", "node_modules", "mbuild-out", "tools", "bench", "tests", "docs")
    shutil.copytree(REPO, tmp_path / "ws", ignore=skip)
    build = tmp_path / "ws/infra/BUILD"
    text = build.read_text()
    start = text.index("node_build(")
    end = text.index("\n)\n", start)
    build.write_text(text[:start] + 'node_build(\n    name = "node_builder",\n    deps = ":node_deps",\n'
                     '    srcs = ["//:node_config", "//apps/web:srcs"],\n' + attrs + text[end:])
    return RuleHarness(tmp_path / "ws", bases=BASES)


def test_node_build_runs_a_command_or_a_package_script_not_both(tmp_path):
    command = _node_builder_with(tmp_path / "cmd", '    command = ["pnpm", "run", "build"],')
    step = execs(command.analyze("//infra:node_builder")["//infra:node_builder"])[-1]
    assert step["exec"] == ["pnpm", "run", "build"] and step["cwd"] == "/app"
    rule = ": //infra:node_builder: "  # the rule's own errors name the target
    check = ": attribute 'package' of node_build: "  # a check= error, found at loading
    for attrs, where, says in (
        ('    command = ["true"],\n    script = "build",\n    package = "apps/web",', rule, "exactly one of command"),
        ("", rule, "exactly one of command"),
        ('    script = "build",', rule, "package: name the workspace folder"),
        ('    script = "build",\n    package = "../web",', check,
         "'../web' must be a workspace-relative path like apps/web (no leading /, no '.' or '..' parts)"),
        ('    script = "build",\n    package = "/app/web",', check, "'/app/web' must be a workspace-relative path"),
        ('    command = ["true"],\n    package = "apps/web",', rule, "package goes with script"),
    ):
        harness = _node_builder_with(tmp_path / str(abs(hash(attrs))), attrs)
        with pytest.raises(ConfigError) as err:
            harness.analyze("//infra:node_builder")
        message = str(err.value)
        assert message.startswith("infra/BUILD:") and where in message, message
        assert says in message and "\n" not in message
