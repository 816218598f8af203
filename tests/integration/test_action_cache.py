"""The action cache on the real engine: keys, no-op builds, concurrency,
corruption, restoring deleted images, affected targets, reproducible images."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from ..conftest import docker_run
from .conftest import json_records, steps_solved
from .workspaces import git

pytestmark = pytest.mark.engine




def keys_of(ws, root: Path) -> dict[str, str]:
    out = {}
    for label in ("//images:app", "//images:tool", "//images:compose"):
        first = ws.mbuild("explain", label, cwd=root).stdout.splitlines()[0]
        out[label] = first.split(" key ")[1]
    return out


def test_keys_are_equal_in_two_checkouts_in_different_folders(ws, tmp_path):
    other = tmp_path / "elsewhere" / "deeper" / "clone"
    subprocess.run(["git", "clone", "-q", str(ws.root), str(other)], check=True)
    assert keys_of(ws, ws.root) == keys_of(ws, other)
    (other / "lib" / "greeting.txt").write_text("changed\n")
    changed = keys_of(ws, other)
    original = keys_of(ws, ws.root)
    assert changed["//images:app"] != original["//images:app"]
    assert changed["//images:tool"] == original["//images:tool"]
    assert changed["//images:compose"] != original["//images:compose"]


def test_noop_build_answers_from_the_cache_without_any_solve(ws):
    first = ws.build_json("//images:compose")
    assert first["//images:app"]["source"] == "solve"
    # BuildKit is asked only to resolve the base images: the progress stream,
    # which shows every vertex of a solve (cached ones too), shows none.
    proc = ws.mbuild("build", "--json", "--progress", "json", "//images:compose")
    assert steps_solved(proc.stderr) == [], proc.stderr[-2000:]
    again = json_records(proc.stdout)
    assert {r["label"]: (r["cached"], r["source"]) for r in again.values()} == {
        "//images:app": (True, "local-cache"),
        "//images:tool": (True, "local-cache"),
        "//images:compose": (True, "local-cache"),
    }
    assert again["//images:app"]["manifest_digest"] == first["//images:app"]["manifest_digest"]
    compose = (ws.root / "mbuild-out/images/docker-compose.yml").read_text()
    assert first["//images:app"]["manifest_digest"] in compose




def test_a_change_rebuilds_only_what_it_affects_and_explain_names_it(ws):
    ws.build_json("//images:app", "//images:tool")
    (ws.root / "lib" / "greeting.txt").write_text("bonjour\n")
    explained = ws.mbuild("explain", "//images:app").stdout
    assert "changed since the last build" in explained
    assert "sources: lib/greeting.txt changed" in explained
    again = ws.build_json("//images:app", "//images:tool")
    assert again["//images:app"]["source"] == "solve"
    assert again["//images:tool"]["source"] == "local-cache"
    out = docker_run(ws.names["app"])
    assert out.stdout.strip() == "bonjour"


def test_deleted_image_is_restored_never_reported_present(ws, docker_sdk):
    first = ws.build_json("//images:app")
    docker_sdk.images.remove(ws.names["app"], force=True)
    again = ws.build_json("//images:app")
    assert again["//images:app"]["source"] == "solve"
    assert docker_sdk.images.get(ws.names["app"]).id == again["//images:app"]["manifest_digest"]
    assert docker_run(ws.names["app"]).stdout.strip() == "hello"
    del first


def test_retagged_image_is_found_by_digest_without_a_solve(ws, docker_sdk):
    first = ws.build_json("//images:app")
    digest = first["//images:app"]["manifest_digest"]
    image = docker_sdk.images.get(ws.names["app"])
    keep = f"mbuild-test-keep-{digest[7:19]}:x"
    image.tag(keep)
    try:
        docker_sdk.images.remove(ws.names["app"])
        again = ws.build_json("//images:app")
        assert again["//images:app"]["source"] == "local-cache"
        assert docker_sdk.images.get(ws.names["app"]).id == digest
    finally:
        docker_sdk.images.remove(keep, force=True)


def test_corrupt_or_truncated_entries_are_misses_not_errors(ws):
    first = ws.build_json("//images:app")
    entries = list((ws.cache / "ac").rglob("*.json"))
    assert entries
    for i, entry in enumerate(entries):
        data = entry.read_bytes()
        entry.write_bytes(data[: len(data) // 2] if i % 2 == 0 else data.replace(b'"kind"', b'"kinx"'))
    again = ws.build_json("//images:app")
    assert again["//images:app"]["source"] == "solve"
    assert again["//images:app"]["manifest_digest"] == first["//images:app"]["manifest_digest"]
    third = ws.build_json("//images:app")
    assert third["//images:app"]["source"] == "local-cache"


def test_two_processes_building_the_same_target_build_it_once(ws):
    results: list = [None, None]

    def run(i: int) -> None:
        results[i] = ws.mbuild("build", "--json", "//images:app", check=False)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.returncode == 0 for r in results), [r.stderr[-2000:] for r in results]
    records = [json_records(r.stdout)["//images:app"] for r in results]
    assert sorted(r["source"] for r in records) == ["local-cache", "solve"]
    assert records[0]["manifest_digest"] == records[1]["manifest_digest"]


def test_affected_follows_real_git_history(ws):
    assert ws.mbuild("affected", "--since", "HEAD").stdout == ""
    (ws.root / "lib" / "greeting.txt").write_text("changed\n")
    assert ws.mbuild("affected", "--since", "HEAD").stdout.split() == [
        "//images:app", "//images:compose", "//lib:lib"]
    git(ws.root, "commit", "-qam", "change lib")
    (ws.root / "tool" / "tool.sh").write_text("#!/bin/sh\necho tool 2\n")
    git(ws.root, "commit", "-qam", "change tool")
    assert json.loads(ws.mbuild("affected", "--since", "HEAD~1", "--json").stdout) == [
        "//images:compose", "//images:tool", "//tool:srcs"]
    assert ws.mbuild("affected", "--since", "HEAD~2").stdout.split() == [
        "//images:app", "//images:compose", "//images:tool", "//lib:lib", "//tool:srcs"]
    built = ws.build_json("--affected", "--since", "HEAD~1", "//...")
    assert set(built) == {"//images:compose", "//images:tool", "//images:app"}  # compose needs both images
    bad = ws.mbuild("affected", "--since", "no-such-rev", check=False)
    assert bad.returncode == 2 and "no-such-rev" in bad.stderr and "Traceback" not in bad.stderr


def test_reproducible_images_from_empty_caches(ws, tmp_path):
    env = {"SOURCE_DATE_EPOCH": "1700000000"}
    first = ws.build_json("--no-cache", "//images:app", env=env)["//images:app"]
    shutil.rmtree(ws.cache)
    second = ws.build_json("--no-cache", "//images:app", env=env)["//images:app"]
    assert first["source"] == second["source"] == "solve"
    assert first["manifest_digest"] == second["manifest_digest"]


def test_an_unrelated_commit_changes_no_key_and_no_image(ws, docker_sdk):
    """The default SOURCE_DATE_EPOCH is fixed (0), so history alone changes
    nothing; whichever epoch is used is in the key, and in the image."""
    first = ws.build_json("//images:app")["//images:app"]
    (ws.root / "NOTES.md").write_text("unrelated\n")
    git(ws.root, "add", "NOTES.md")
    git(ws.root, "commit", "-qm", "unrelated", "--date", "2030-01-01T00:00:00Z")
    again = ws.build_json("//images:app")["//images:app"]
    assert (again["key"], again["manifest_digest"], again["source"]) == (first["key"], first["manifest_digest"],
                                                                          "local-cache")
    image = docker_sdk.images.get(ws.names["app"]).attrs
    assert image["Created"].startswith("1970-01-01T00:00:00")
    from buildkit.llb import host_platform

    assert f"{image['Os']}/{image['Architecture']}" == str(host_platform())  # the platform in the key
    assert f'"platform": "{host_platform()}"' in ws.mbuild("explain", "//images:app").stdout
    env = {"SOURCE_DATE_EPOCH": "1700000000"}
    explained = ws.mbuild("explain", "//images:app", env=env).stdout
    assert "engine: source_date_epoch changed (0 -> 1700000000)" in explained
    dated = ws.build_json("//images:app", env=env)["//images:app"]
    assert dated["key"] != first["key"] and dated["manifest_digest"] != first["manifest_digest"]
    assert docker_sdk.images.get(ws.names["app"]).attrs["Created"].startswith("2023-11-14T22:13:20")


def test_lock_pins_base_images_and_silences_the_warning(ws, docker_sdk):
    before = ws.mbuild("build", "//images:tool")
    assert "not pinned to a digest" in before.stderr and "mbuild lock" in before.stderr
    ws.mbuild("lock")
    text = (ws.root / "WORKSPACE.toml").read_text()
    digest = docker_sdk.images.get("mbuild-test/base:bookworm").id
    assert f'digest = "{digest}"' in text
    after = ws.mbuild("build", "//images:tool")
    assert "not pinned" not in after.stderr


def test_clean_empties_the_store_and_the_next_build_solves(ws):
    ws.build_json("//images:tool")
    out = ws.mbuild("clean")
    assert "freed" in out.stderr
    assert not list((ws.cache / "ac").rglob("*.json"))
    assert ws.build_json("//images:tool")["//images:tool"]["source"] == "solve"


def test_progress_json_streams_typed_events(ws):
    proc = ws.mbuild("build", "--progress", "json", "--no-cache", "//images:tool")
    events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    kinds = {e["event"] for e in events}
    assert {"VertexStarted", "VertexCompleted"} <= kinds, kinds
    assert all(e["target"] == "//images:tool" for e in events)
    plain = ws.mbuild("build", "--progress", "plain", "--no-cache", "//images:tool")
    assert any(line.startswith("[//images:tool] #") and "DONE" in line for line in plain.stderr.splitlines())


def test_a_failing_step_exits_1_with_the_step_command_exit_code_and_log_tail(ws):
    (ws.root / "fail").mkdir()
    (ws.root / "fail" / "BUILD").write_text(
        'container_image(name = "broken", base = "base", commands = ["echo about to fail >&2; exit 7"])\n')
    proc = ws.mbuild("build", "--progress", "plain", "//fail:broken", check=False)
    assert proc.returncode == 1, proc.stderr
    report = proc.stderr[proc.stderr.index("mbuild: error:"):]
    assert "[//fail:broken] echo about to fail" in report  # the failing step
    assert "exit code 7" in report
    assert "command: /bin/sh -c echo about to fail >&2; exit 7" in report
    assert "about to fail" in report.split("last log lines:")[1]
    assert "Traceback" not in proc.stderr


def test_lock_resolves_a_tag_through_the_registry(ws, buildkit, base_image_config, docker_sdk, run_id):
    """An image only the registry has (the local one, plain HTTP) is pinned by its manifest digest."""
    from buildkit import exporters, llb
    from buildkit.client import SolveRequest

    from ..conftest import BASE_IMAGE, REGISTRY

    ref = f"{REGISTRY}/mbuild-test/lock-{run_id}:v1"
    st = llb.image(BASE_IMAGE, config=base_image_config).run(f"echo {run_id} > /id").root()
    pushed = buildkit.solve(SolveRequest(definition=st, exports=(exporters.push(ref, st.image_config(), insecure=True),)))
    import docker.errors

    try:
        docker_sdk.images.remove(ref, force=True)
    except docker.errors.ImageNotFound:
        pass  # the exporter did not keep it in the engine
    with pytest.raises(docker.errors.ImageNotFound):
        docker_sdk.images.get(ref)  # so only the registry can answer
    with (ws.root / "WORKSPACE.toml").open("a") as f:
        f.write(f'\n[images.pushed]\nref = "{ref}"\n')
    ws.mbuild("lock")
    text = (ws.root / "WORKSPACE.toml").read_text()
    assert f'digest = "{pushed.manifest_digest}"' in text
