"""The no-op fast path (mbuild.fastpath): it answers an unchanged build from
its stamp, and never once anything the build depends on has changed. And the
one-change path (mbuild.delta): after an edit to sources only, exactly the
targets they reach are built, and the build reports what a full one would.

Every test runs twice: in-process, and through a warm server of its own,
which holds the stamps and watches the workspace (mbuild.warm_stamps): what
it answers must be what the in-process command answers, after every kind of
change."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from .conftest import json_records

pytestmark = pytest.mark.engine

TARGET = "//images:compose"


def settle() -> None:
    """Let what was just written age past the stamp's racy margin
    (fastpath.RACY_NS): a file changed within it of a build is looked at
    again by the next build, so that build would not be a no-op."""
    time.sleep(2.1)


def command_env(ws) -> dict[str, str]:
    """The environment of the test's commands: its own XDG cache (stamps,
    server socket), and the server on or off as the test's mode says."""
    return {**os.environ, "XDG_CACHE_HOME": str(ws.cache / "xdg"), "MBUILD_SERVER": "" if ws.served else "0"}


@pytest.fixture(autouse=True, params=["in-process", "served"])
def settled_workspace(request, ws):
    ws.served = request.param == "served"
    if ws.served:
        entry = [sys.executable, "-m", "mbuild", "server"]
        started = subprocess.run([*entry, "start"], env=command_env(ws), capture_output=True, text=True, timeout=60)
        assert started.returncode == 0, started.stderr
    settle()  # the workspace was just written
    yield
    if ws.served:
        subprocess.run([*entry, "stop"], env=command_env(ws), capture_output=True, timeout=30)


def build(ws, *args: str, labels: tuple[str, ...] = (TARGET,), delta: bool = True) -> subprocess.CompletedProcess:
    """``python -m mbuild build ARGS LABELS`` (the real entry point, fast path and server included)."""
    env = command_env(ws)
    if not delta:
        env["MBUILD_DELTA"] = "0"
    proc = subprocess.run([sys.executable, "-m", "mbuild", "--cache-dir", str(ws.cache), "build", *args, *labels],
                          cwd=ws.root, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def run(ws, *args: str, labels: tuple[str, ...] = (TARGET,), delta: bool = True) -> dict[str, dict]:
    """The ``--json`` records of a build, by label."""
    return json_records(build(ws, "--json", *args, labels=labels, delta=delta).stdout)


def sources(records: dict[str, dict]) -> set[str]:
    return {r["source"] for r in records.values()}


def test_an_unchanged_build_is_answered_by_the_stamp(ws):
    first = run(ws)
    assert "solve" in sources(first)
    again = run(ws)
    assert sources(again) == {"noop-stamp"}
    for label, record in first.items():
        assert again[label]["manifest_digest"] == record["manifest_digest"]
        assert again[label]["cached"] is True


@pytest.mark.parametrize("change", ["new-file-in-glob", "edit-build-file", "edit-rule-file",
                                    "delete-image", "edit-output", "other-arguments"])
def test_any_change_falls_through_to_a_real_build(ws, docker_sdk, change):
    run(ws)
    assert sources(run(ws)) == {"noop-stamp"}
    extra: tuple[str, ...] = ()
    if change == "new-file-in-glob":
        (ws.root / "lib" / "more.txt").write_text("more\n")
    elif change == "edit-build-file":
        with (ws.root / "images" / "BUILD").open("a") as f:
            f.write("\n# a comment\n")
    elif change == "edit-rule-file":
        with (ws.root / "rules" / "compose.py").open("a") as f:
            f.write("\n# a comment\n")
    elif change == "delete-image":
        docker_sdk.images.remove(ws.names["app"], force=True)
    elif change == "edit-output":
        (ws.root / "mbuild-out" / "images" / "docker-compose.yml").write_text("tampered\n")
    elif change == "other-arguments":
        extra = ("--jobs", "2")
    settle()
    after = run(ws, *extra)
    assert "noop-stamp" not in sources(after), change
    if change == "new-file-in-glob":
        assert after["//images:app"]["source"] == "solve"
    if change == "edit-rule-file":  # compose's key covers its rule file: rendered again, images cached
        assert after["//images:compose"]["source"] == "render"
        assert after["//images:app"]["source"] == "local-cache"
    if change == "delete-image":
        assert docker_sdk.images.get(ws.names["app"]).id == after["//images:app"]["manifest_digest"]
    if change == "edit-output":
        assert "tampered" not in (ws.root / "mbuild-out" / "images" / "docker-compose.yml").read_text()
    assert sources(run(ws, *extra)) == {"noop-stamp"}  # and the new stamp answers the next one


# ---------------------------------------------------------------- the one-change path


def test_a_source_edit_builds_only_the_targets_it_reaches(ws):
    images = ("//images:app", "//images:tool")
    first = run(ws, labels=images)
    (ws.root / "lib" / "greeting.txt").write_text("changed\n")
    after = run(ws, labels=images)
    assert set(after) == set(first)
    assert after["//images:app"]["source"] == "solve"  # its key covers lib/greeting.txt
    assert after["//images:tool"]["source"] == "noop-stamp"  # nothing of it changed: not even looked up
    # With compose, which names both images' digests: compose is rendered
    # again, and tool looked up for it.
    (ws.root / "lib" / "greeting.txt").write_text("changed again\n")
    run(ws)
    (ws.root / "lib" / "greeting.txt").write_text("changed once more\n")
    after = run(ws)
    assert after["//images:app"]["source"] == "solve"
    assert after["//images:compose"]["source"] == "render"
    assert after["//images:tool"]["source"] == "local-cache"
    # What a full build says of the same tree (other arguments: no stamp answers it): the same keys and digests.
    full = run(ws, "--jobs", "3", delta=False)
    assert {k: r["key"] for k, r in full.items()} == {k: r["key"] for k, r in after.items()}
    assert {k: r["manifest_digest"] for k, r in full.items()} == {k: r["manifest_digest"] for k, r in after.items()}
    assert sources(full) == {"local-cache"}


def test_the_report_is_the_full_builds_lines_in_its_order(ws):
    build(ws, "--progress", "plain")
    (ws.root / "app" / "main.sh").write_text("#!/bin/sh\necho changed\n")
    delta = [l for l in build(ws, "--progress", "plain").stderr.splitlines() if l.startswith("//")]
    full = [l for l in build(ws, "--progress", "plain", "--jobs", "3", delta=False).stderr.splitlines()
            if l.startswith("//")]
    assert [l.split(":")[0:2] for l in delta] == [l.split(":")[0:2] for l in full]
    assert [l.split(" (")[0] for l in delta] == [l.split(" (")[0] for l in full]  # names and digests; not timings
    assert len(delta) == 3


def test_after_a_one_change_build_the_stamp_still_covers_the_whole_command(ws):
    """The smaller build never leaves a stamp of its own: a later edit
    elsewhere, or to what loading reads, is still seen."""
    images = ("//images:app", "//images:tool")
    run(ws, labels=images)
    (ws.root / "lib" / "greeting.txt").write_text("changed\n")
    settle()
    after = run(ws, labels=images)
    assert (after["//images:app"]["source"], after["//images:tool"]["source"]) == ("solve", "noop-stamp")
    assert sources(run(ws, labels=images)) == {"noop-stamp"}  # the edit is recorded: a no-op now
    (ws.root / "tool" / "tool.sh").write_text("#!/bin/sh\necho tool 2\n")
    settle()
    after = run(ws, labels=images)
    assert (after["//images:app"]["source"], after["//images:tool"]["source"]) == ("noop-stamp", "solve")
    with (ws.root / "images" / "BUILD").open("a") as f:
        f.write("\n# a comment\n")
    (ws.root / "lib" / "greeting.txt").write_text("changed again\n")
    full = run(ws, labels=images)  # a BUILD file changed: the whole build, no stamp record
    assert (full["//images:app"]["source"], full["//images:tool"]["source"]) == ("solve", "local-cache")


def test_an_edit_no_reported_target_reaches_builds_nothing(ws):
    (ws.root / "app" / "BUILD").write_text((ws.root / "app" / "BUILD").read_text() +
                                           'filegroup(name = "docs", srcs = ["README.md"])\n')
    (ws.root / "app" / "README.md").write_text("docs\n")
    settle()
    labels = (TARGET, "//app:docs")
    first = run(ws, labels=labels)
    (ws.root / "app" / "README.md").write_text("more docs\n")
    settle()
    after = run(ws, labels=labels)
    assert set(after) == set(first) and sources(after) == {"noop-stamp"}
    assert sources(run(ws, labels=labels)) == {"noop-stamp"}


def _edit_while_building(ws, path, text: str) -> None:
    """Run the build ``run(ws, "--progress", "plain")`` runs, and write
    ``text`` to ``path`` once app's step (it sleeps 2 s) is running: after
    the build has read the file."""
    env = command_env(ws)
    proc = subprocess.Popen([sys.executable, "-m", "mbuild", "--cache-dir", str(ws.cache), "build", "--json",
                             "--progress", "plain", TARGET], cwd=ws.root, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env)
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "sleep 2" in line:
            path.write_text(text)
            break
    err = "".join(seen) + proc.stderr.read()
    assert proc.wait(timeout=600) == 0, err[-3000:]
    assert path.read_text() == text, f"the step never ran: {err[-3000:]}"


def test_a_source_edited_during_a_one_change_build_is_seen_next_time(ws):
    """The stamp records a changed source's facts from before the build read
    it: an edit made after that is a change for the next build."""
    greeting = ws.root / "lib" / "greeting.txt"
    run(ws, "--progress", "plain")
    greeting.write_text("first edit\n")
    _edit_while_building(ws, greeting, "second edit, during the build\n")
    after = run(ws, "--progress", "plain")
    assert after["//images:app"]["source"] == "solve", "the edit made during the build was missed"


def test_a_source_edited_during_a_full_build_is_seen_next_time(ws):
    """The same for a whole build (the stamp written after it): a file
    changed after the build began is recorded as racy, never as read."""
    greeting = ws.root / "lib" / "greeting.txt"
    _edit_while_building(ws, greeting, "edited during the first build\n")
    after = run(ws, "--progress", "plain")
    assert after["//images:app"]["source"] == "solve", "the edit made during the build was missed"


def test_a_file_saved_by_renaming_a_new_one_over_it_is_a_one_change_build(ws):
    """As many editors save: the folder's stat facts change, its entries do not."""
    images = ("//images:app", "//images:tool")
    run(ws, labels=images)
    new = ws.root / "lib" / ".greeting.txt.swp"
    new.write_text("saved by rename\n")
    os.replace(new, ws.root / "lib" / "greeting.txt")
    settle()
    after = run(ws, labels=images)
    assert (after["//images:app"]["source"], after["//images:tool"]["source"]) == ("solve", "noop-stamp")
    assert sources(run(ws, labels=images)) == {"noop-stamp"}  # the folder's new facts are recorded
