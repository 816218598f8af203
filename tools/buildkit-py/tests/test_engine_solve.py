"""The BuildKit client against the real engine: build, export, push, cache,
failure, unreachable addresses, and a large file sync."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import textwrap
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from buildkit import exporters, llb
from buildkit.client import Client, SolveRequest
from buildkit.errors import SolveError, Unreachable, Unsupported
from buildkit.filesync import LocalDir

from bk_testenv import BASE_IMAGE, REGISTRY, docker, docker_run

pytestmark = pytest.mark.engine

APP_CMD = "id -u; id -un; echo $GREETING; pwd; cat hello.txt; cat link; ./run.sh; ls -a; cat cache-count"


def make_context(root: Path) -> Path:
    ctx = root / "ctx"
    ctx.mkdir()
    (ctx / "hello.txt").write_text("hello from the context\n")
    (ctx / "secret.env").write_text("TOKEN=do-not-ship\n")
    (ctx / "link").symlink_to("hello.txt")
    script = ctx / "run.sh"
    script.write_text("#!/bin/sh\necho run.sh ran\n")
    script.chmod(0o755)
    (ctx / ".dockerignore").write_text("*.env\n")
    return ctx


def app_state(base_config: dict, cache_id: str) -> llb.State:
    base = llb.image(BASE_IMAGE, config=base_config)
    ctx = llb.local("context", exclude=["*.env", ".dockerignore"])
    st = base.run("useradd --uid 1000 --create-home appuser", name="add appuser").root()
    st = st.copy(ctx, "/", "/app/", owner="1000:1000")
    st = st.run(
        ["sh", "-c", "echo built >> /cache/count && cp /cache/count /app/cache-count && chown 1000:1000 /app/cache-count"],
        mounts=[llb.cache("/cache", id=cache_id, sharing="locked")],
        name="use a cache mount",
    ).root()
    return (
        st.with_workdir("/app")
        .with_env("GREETING", "hi there")
        .with_user("appuser")
        .with_cmd(["sh", "-c", APP_CMD])
    )


@pytest.fixture(scope="module")
def context_dir(tmp_path_factory) -> Path:
    return make_context(tmp_path_factory.mktemp("client"))


@pytest.fixture(scope="module")
def app(base_image_config, run_id) -> llb.State:
    return app_state(base_image_config, f"buildkit-test-cache-{run_id}")


def request(state: llb.State, context_dir: Path, *exports) -> SolveRequest:
    return SolveRequest(
        definition=state,
        exports=exports,
        local_dirs={"context": LocalDir(context_dir)},
        shared_key=f"test:{context_dir}",
    )


def test_a_image_loaded_into_docker_runs_as_uid_1000(buildkit, app, context_dir, image_names):
    name = image_names("client-a")
    events = []
    result = buildkit.solve(request(app, context_dir, exporters.load_into_docker(name, app.image_config())),
                            on_event=events.append)
    assert result.manifest_digest and result.manifest_digest.startswith("sha256:")
    out = docker_run(name)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "1000"
    assert lines[1] == "appuser"
    assert lines[2] == "hi there"
    assert lines[3] == "/app"
    assert "hello from the context" in lines[4] and "hello from the context" in lines[5]
    assert "run.sh ran" in out.stdout
    assert "secret.env" not in out.stdout  # excluded by pattern and by .dockerignore
    assert "built" in out.stdout  # written through the cache mount
    stat = docker_run(name, "stat", "-c", "%a %u %F", "/app/run.sh", "/app/link")
    assert stat.stdout.splitlines() == ["755 1000 regular file", "777 1000 symbolic link"]
    assert any(type(e).__name__ == "VertexCompleted" for e in events)


def test_b_oci_tarball_has_manifest_config_and_layers(buildkit, app, context_dir, tmp_path):
    out = tmp_path / "image.tar"
    result = buildkit.solve(request(app, context_dir, exporters.oci_tarball(out, config=app.image_config())))
    assert out.exists() and result.files == (out,)
    with tarfile.open(out) as tar:
        def blob(digest: str) -> bytes:
            algo, hexd = digest.split(":")
            data = tar.extractfile(f"blobs/{algo}/{hexd}").read()
            assert hashlib.sha256(data).hexdigest() == hexd
            return data

        layout = json.load(tar.extractfile("oci-layout"))
        assert layout["imageLayoutVersion"] == "1.0.0"
        index = json.load(tar.extractfile("index.json"))
        manifest_desc = index["manifests"][0]
        assert manifest_desc["digest"] == result.manifest_digest
        manifest = json.loads(blob(manifest_desc["digest"]))
        assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
        config = json.loads(blob(manifest["config"]["digest"]))
        assert config["config"]["User"] == "appuser"
        assert config["config"]["WorkingDir"] == "/app"
        assert "GREETING=hi there" in config["config"]["Env"]
        assert config["config"]["Cmd"] == ["sh", "-c", APP_CMD]
        assert len(manifest["layers"]) == len(config["rootfs"]["diff_ids"]) >= 3
        names = set()
        for layer in manifest["layers"]:
            data = blob(layer["digest"])
            with tarfile.open(fileobj=io.BytesIO(data)) as lt:
                names.update(m.name for m in lt.getmembers())
                for m in lt.getmembers():
                    if m.name == "app/run.sh":
                        assert m.mode & 0o111 and m.uid == 1000
        assert "app/hello.txt" in names and "app/run.sh" in names
        assert not any(n.endswith("secret.env") for n in names)


def _delete_from_registry(repo: str, digest: str) -> None:
    req = urllib.request.Request(f"http://{REGISTRY}/v2/{repo}/manifests/{digest}", method="DELETE")
    try:
        urllib.request.urlopen(req, timeout=10)
    except Exception:  # noqa: BLE001 - best effort
        pass


def test_c_push_then_solve_from_pushed_digest(buildkit, app, context_dir, run_id, tmp_path):
    repo = f"buildkit-test/client-c-{run_id}"
    result = buildkit.solve(request(app, context_dir, exporters.push(f"{REGISTRY}/{repo}:v1", app.image_config(),
                                                                      insecure=True)))
    digest = result.manifest_digest
    assert digest
    try:
        head = urllib.request.urlopen(urllib.request.Request(
            f"http://{REGISTRY}/v2/{repo}/manifests/{digest}", method="HEAD",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json,"
                               "application/vnd.docker.distribution.manifest.v2+json"}), timeout=10)
        assert head.status == 200
        pulled = llb.image(f"{REGISTRY}/{repo}@{digest}")
        st = pulled.run(["sh", "-c", "cat /app/hello.txt > /out.txt"]).root()
        out = llb.scratch().copy(st, "/out.txt", "/out.txt")
        dest = tmp_path / "out"
        buildkit.solve(SolveRequest(definition=out, exports=(exporters.local_dir(dest),)))
        assert (dest / "out.txt").read_text() == "hello from the context\n"
    finally:
        _delete_from_registry(repo, digest)
        docker("rmi", "-f", f"{REGISTRY}/{repo}:v1")  # the image exporter also keeps what it pushed


def test_d_second_identical_solve_is_all_cached(buildkit, app, context_dir, tmp_path):
    req = request(app, context_dir, exporters.tar(tmp_path / "first.tar"))
    buildkit.solve(req)
    again = buildkit.solve(request(app, context_dir, exporters.tar(tmp_path / "second.tar")))
    built = [s for s in again.steps if not s.source]
    assert len(built) >= 3, again.steps
    assert again.all_cached, [(s.name, s.cached) for s in built if not s.cached]
    assert {s.name for s in again.steps if s.source} == {"local://context", f"docker-image://docker.io/{BASE_IMAGE}"}


def test_e_failing_run_reports_command_exit_code_and_log_tail(buildkit, base_image_config):
    st = llb.image(BASE_IMAGE, config=base_image_config).run(
        ["sh", "-c", "echo step one; echo going to fail >&2; exit 3"], name="a step that fails").root()
    with pytest.raises(SolveError) as info:
        buildkit.solve(SolveRequest(definition=st))
    err = info.value
    assert err.step_exit_code == 3
    assert "exit 3" in (err.command or "")
    assert "going to fail" in "\n".join(err.log_tail)
    assert "a step that fails" in err.step
    assert "exit code 3" in str(err) and "\n" not in str(err)


@pytest.mark.parametrize("address", ["unix:///nonexistent/buildkitd.sock", "tcp://127.0.0.1:1",
                                     "docker:///nonexistent/docker.sock"])
def test_f_unreachable_address_fails_fast_and_clearly(address):
    t = time.monotonic()
    with pytest.raises(Unreachable) as info:
        Client.open(address)
    assert time.monotonic() - t < 5
    message = str(info.value)
    assert address.split("://")[1].split("/")[0] in message or address in message
    assert "\n" not in message
    assert "cannot reach BuildKit" in message and "WORKSPACE" not in message


SYNC_SCRIPT = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from buildkit import exporters, llb
    from buildkit.client import Client, SolveRequest
    from buildkit.filesync import LocalDir
    ctx, out, base = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    src = llb.local("big")
    check = llb.image(base).run(
        ["sh", "-c", "mkdir -p /out; find /ctx -type f | wc -l > /out/count; sha256sum /ctx/big.bin | cut -d' ' -f1 > /out/sum;"
         " cat /ctx/d7/f00123.txt > /out/sample"],
        mounts=[llb.bind("/ctx", src, readonly=True)], name="check synced files")
    result = llb.scratch().copy(check.root(), "/out/", "/")
    t = time.monotonic()
    with Client.open() as bk:
        bk.solve(SolveRequest(definition=result, exports=(exporters.local_dir(out),),
                              local_dirs={"big": LocalDir(ctx)}))
    # VmHWM: this process's own high-water mark. (ru_maxrss would not do: Linux
    # carries the parent's RSS at fork over into it, across exec.)
    hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    print(json.dumps({"seconds": time.monotonic() - t, "peak_rss_mb": int(hwm.split()[1]) / 1024}))
""")


def test_g_large_sync_is_correct_and_streams(tmp_path, record_property):
    ctx = tmp_path / "big"
    for d in range(20):
        sub = ctx / f"d{d}"
        sub.mkdir(parents=True)
        for i in range(1000):
            (sub / f"f{i:05d}.txt").write_text(f"file {d}/{i}\n")
    big = ctx / "big.bin"
    h = hashlib.sha256()
    chunk = os.urandom(1 << 20)
    with big.open("wb") as f:
        for i in range(200):
            block = chunk[i:] + chunk[:i]
            h.update(block)
            f.write(block)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-c", SYNC_SCRIPT, str(ctx), str(out), BASE_IMAGE],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stats = json.loads(proc.stdout.strip().splitlines()[-1])
    record_property("sync_seconds", stats["seconds"])
    record_property("sync_peak_rss_mb", stats["peak_rss_mb"])
    print(f"\nsync of 20,000 files + 200 MB: {stats['seconds']:.1f}s, peak RSS {stats['peak_rss_mb']:.0f} MB")
    assert (out / "count").read_text().strip() == "20001"
    assert (out / "sum").read_text().strip() == h.hexdigest()
    assert (out / "sample").read_text() == "file 7/123\n"
    assert stats["peak_rss_mb"] < 120, stats  # far below the ~200 MB of data


def test_caps_are_probed_and_a_missing_one_is_refused_clearly(buildkit, base_image_config):
    caps = buildkit.caps()
    assert {"mergeop", "diffop", "exec.mount.cache", "source.local"} <= caps
    merged = llb.merge([llb.scratch().mkfile("/a", b"a"), llb.scratch().mkfile("/b", b"b")])
    assert buildkit.solve(SolveRequest(definition=merged, exports=())).steps  # mergeop: supported here
    if "file.symlink.create" in caps:  # Docker 26.1 reports it off; a newer engine may have it
        return
    st = llb.image(BASE_IMAGE, config=base_image_config).symlink("/etc/hostname", "/link")
    with pytest.raises(Unsupported) as info:
        buildkit.solve(SolveRequest(definition=st))
    assert "file.symlink.create" in str(info.value) and "\n" not in str(info.value)


def test_ctrl_c_cancels_the_solve_and_exits_promptly(tmp_path, base_image_config):
    import signal

    script = textwrap.dedent(f"""
        from buildkit import llb
        from buildkit.client import Client, SolveRequest
        st = llb.image({BASE_IMAGE!r}).run("echo started; sleep 120", ignore_cache=True, name="long step").root()
        with Client.open() as bk:
            bk.solve(SolveRequest(definition=st), on_event=lambda ev: print(type(ev).__name__, flush=True))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = threading.Event()

    def watch() -> None:  # readline blocks: a silent child must not hang the test
        for line in proc.stdout:
            if "VertexLog" in line:
                started.set()

    threading.Thread(target=watch, daemon=True).start()
    if not started.wait(120):
        proc.kill()
        pytest.fail(f"the step never started: {proc.stderr.read()[-2000:]}")
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    assert time.monotonic() - t0 < 15
    assert proc.returncode != 0
    assert "KeyboardInterrupt" in proc.stderr.read()


def test_session_over_the_control_grpc_stream_as_with_buildkitd(app, context_dir, image_names):
    """Standalone buildkitd has no /session route: sessions ride Control.Session."""
    with Client.open() as client:
        client.session_over_grpc = True
        name = image_names("client-grpc-session")
        client.solve(request(app, context_dir, exporters.load_into_docker(name, app.image_config())))
    out = docker_run(name)
    assert out.stdout.splitlines()[0] == "1000" and "hello from the context" in out.stdout
