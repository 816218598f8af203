"""Dockerfiles built by the engine's own frontend (dockerfile.v0): the context
and Dockerfile local dirs, build args, target, secrets, progress, a failing
RUN, and the frontend driven from a gateway build."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from buildkit import exporters, progress
from buildkit.client import SolveRequest
from buildkit.dockerfile import frontend_attrs, solve_request
from buildkit.errors import BuildKitError, SolveError
from buildkit.gateway import BuildResult
from buildkit.secrets import parse_secret_specs

from bk_oci import OCIArchive
from bk_testenv import BASE_IMAGE, docker_run

pytestmark = pytest.mark.engine

DOCKERFILE = textwrap.dedent(f"""\
    FROM {BASE_IMAGE} AS base
    ARG GREETING=unset
    # Each test run builds afresh (its log is asserted): RUN_ID is in the step's env.
    ARG RUN_ID
    RUN --mount=type=secret,id=token --mount=type=secret,id=npmrc \\
        echo "greeting=$GREETING token-bytes=$(wc -c < /run/secrets/token) npmrc=$(cat /run/secrets/npmrc)" \\
          | tee /built.txt
    FROM base AS runtime
    COPY app/ /app/
    WORKDIR /app
    CMD ["sh", "-c", "cat /built.txt; ls /app"]
    FROM base AS broken
    RUN echo this stage is after the target; exit 7
""")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dockerfile")
    ctx = root / "ctx"
    (ctx / "app").mkdir(parents=True)
    (ctx / "app" / "main.py").write_text("print('hi')\n")
    (ctx / "app" / "local.env").write_text("SECRET=do-not-ship\n")
    (ctx / ".dockerignore").write_text("**/*.env\n")
    (root / "build").mkdir()
    (root / "build" / "app.Dockerfile").write_text(DOCKERFILE)
    (root / "npmrc").write_text("registry=local")
    return root


def test_request_is_set_up_as_buildx_does(project):
    req = solve_request(project / "ctx", project / "build" / "app.Dockerfile", target="runtime",
                        build_args={"GREETING": "hi"}, platforms=["linux/amd64", "arm64"], labels={"team": "x"})
    assert req.frontend == "dockerfile.v0"
    assert req.frontend_attrs == {"filename": "app.Dockerfile", "target": "runtime", "build-arg:GREETING": "hi",
                                  "label:team": "x", "platform": "linux/amd64,linux/arm64"}
    assert {k: v.path for k, v in req.local_dirs.items()} == {"context": project / "ctx",
                                                              "dockerfile": project / "build"}
    with pytest.raises(BuildKitError, match="no such file"):
        solve_request(project / "ctx")  # no ctx/Dockerfile
    with pytest.raises(BuildKitError, match="not a directory"):
        solve_request(project / "nowhere")


def test_dockerfile_with_target_build_args_and_secrets(buildkit, project, image_names, monkeypatch, run_id):
    monkeypatch.setenv("BUILDKIT_TEST_TOKEN", "s3cret-token")
    name = image_names("dockerfile")
    events: list = []
    result = buildkit.solve(solve_request(
        project / "ctx", project / "build" / "app.Dockerfile", target="runtime", build_args={"GREETING": "hello", "RUN_ID": run_id},
        secrets=parse_secret_specs(["id=token,env=BUILDKIT_TEST_TOKEN", f"id=npmrc,src={project / 'npmrc'}"]),
        exports=(exporters.load_into_docker(name),)), on_event=events.append)
    assert result.manifest_digest
    out = docker_run(name)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["greeting=hello token-bytes=12 npmrc=registry=local", "main.py"]
    logs = [e.line for e in events if isinstance(e, progress.VertexLog)]
    assert "greeting=hello token-bytes=12 npmrc=registry=local" in logs
    done = [e.name for e in events if isinstance(e, progress.VertexCompleted)]
    assert any("[runtime 1/2] COPY app/ /app/" in n for n in done), done
    assert not any("after the target" in e.name for e in events if hasattr(e, "name"))
    secret_in_layers = docker_run(name, "sh", "-c", "grep -rl s3cret-token / --exclude-dir=proc 2>/dev/null; true")
    assert secret_in_layers.stdout.strip() == ""


def test_a_failing_run_reports_the_step_command_and_exit_code(buildkit, project):
    with pytest.raises(SolveError) as info:
        buildkit.solve(solve_request(project / "ctx", project / "build" / "app.Dockerfile", target="broken",
                                     secrets=parse_secret_specs([f"id=token,src={project / 'npmrc'}",
                                                                 f"id=npmrc,src={project / 'npmrc'}"])))
    err = info.value
    assert err.step_exit_code == 7
    assert "this stage is after the target" in "\n".join(err.log_tail)
    assert "[broken 1/1] RUN" in err.step and "\n" not in str(err)


def test_the_frontend_as_a_gateway_sub_solve_with_a_file_read_back(buildkit, project, tmp_path):
    seen = {}

    def build(gw):
        res = gw.solve(frontend="dockerfile.v0",
                       options=frontend_attrs("app.Dockerfile", target="runtime", build_args={"GREETING": "gw"}))
        seen["built"] = gw.read_file(res.ref, "/built.txt").decode()
        seen["config"] = res.configs[""]
        return BuildResult.single(res.ref, res.configs[""])

    out = tmp_path / "image.tar"
    req = solve_request(project / "ctx", project / "build" / "app.Dockerfile",
                        secrets=parse_secret_specs([f"id=token,src={project / 'npmrc'}",
                                                    f"id=npmrc,src={project / 'npmrc'}"]),
                        exports=(exporters.oci_tarball(out),))
    buildkit.build(build, SolveRequest(exports=req.exports, local_dirs=req.local_dirs, secrets=req.secrets))
    assert seen["built"] == "greeting=gw token-bytes=14 npmrc=registry=local\n"
    assert seen["config"]["config"]["WorkingDir"] == "/app"
    archive = OCIArchive(out)
    (image,) = archive.images()
    assert image.config["config"]["Cmd"] == ["sh", "-c", "cat /built.txt; ls /app"]
    assert "app/main.py" in archive.files(image) and "app/local.env" not in archive.files(image)
    archive.close()
