"""The progress displays and retried steps: a failed attempt of a step that
marks its attempts (`mbuild: attempt N of M`) is one summary line in the
build's output, its stack trace only in the per-build log; the attempt that
ended the step is shown; json passes everything on."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import pytest

from buildkit import progress as p
from mbuild.ui import progress
from mbuild.ui.progress import Attempts, BuildLog, PlainDisplay, failure_reason, make_display

from ..conftest import REPO

LABEL = "//infra:node_deps"
# corepack's output when the registry's metadata has no signatures (the
# first attempt fails; the second finds the download in its cache)
TRACE = [
    "/usr/local/lib/node_modules/corepack/dist/lib/corepack.cjs:13082",
    "  if (!Array.isArray(signatures) || !signatures.length) throw new Error(`No compatible signature found`);",
    "                                                               ^",
    "",
    "Error: No compatible signature found in package metadata",
    "    at verifySignature (/usr/local/lib/node_modules/corepack/dist/lib/corepack.cjs:13082:63)",
    "    at process.processTicksAndRejections (node:internal/process/task_queues:103:5)",
    "",
    "Node.js v22.23.5",
]


def step(lines: list[str], ok: bool = True, digest: str = "sha256:1", number: int = 4) -> list:
    events = [p.VertexStarted(digest, number, "corepack: pnpm 10.28.1")]
    events += [p.VertexLog(digest, number, 2, line) for line in lines]
    events.append(p.VertexCompleted(digest, number, "corepack: pnpm 10.28.1", False, 3.6) if ok else
                  p.VertexFailed(digest, number, "corepack: pnpm 10.28.1", "exit code: 1", 9.0))
    return events


def shown(events, tmp_path: Path) -> tuple[str, Path | None]:
    out = io.StringIO()
    display = PlainDisplay(out, log_dir=tmp_path / "logs")
    for ev in events:
        display(LABEL, ev)
    display.close()
    return out.getvalue(), display.log.path


RETRIED = ["mbuild: attempt 1 of 3", "Preparing pnpm@10.28.1 for immediate activation...", *TRACE,
           "mbuild: attempt 2 of 3", "Preparing pnpm@10.28.1 for immediate activation..."]


def test_a_retried_step_that_succeeds_shows_one_line_and_no_trace(tmp_path):
    text, log = shown(step(RETRIED), tmp_path)
    assert text == (
        f"[{LABEL}] #4 corepack: pnpm 10.28.1\n"
        f"[{LABEL}] #4 attempt 1 of 3 failed (Error: No compatible signature found in package metadata), "
        f"retrying; full log: {log}\n"
        f"[{LABEL}] #4 Preparing pnpm@10.28.1 for immediate activation...\n"
        f"[{LABEL}] #4 DONE 3.6s\n")
    full = log.read_text()
    for line in TRACE + ["mbuild: attempt 1 of 3", "mbuild: attempt 2 of 3"]:
        assert f"[{LABEL}] #4 {line}\n" in full  # the full log keeps every line
    assert full.endswith(f"[{LABEL}] #4 DONE 3.6s\n")


def test_a_step_whose_every_attempt_fails_shows_the_last_ones_trace(tmp_path):
    lines = []
    for n in (1, 2, 3):
        lines += [f"mbuild: attempt {n} of 3", *TRACE]
    text, log = shown(step(lines, ok=False), tmp_path)
    assert text.count("failed (Error: No compatible signature found in package metadata), retrying") == 2
    assert text.count("Error: No compatible signature found in package metadata\n") == 1  # the last attempt's
    assert text.endswith(f"[{LABEL}] #4 Node.js v22.23.5\n[{LABEL}] #4 ERROR exit code: 1\n")


def test_steps_without_attempts_stream_their_lines_as_they_come(tmp_path):
    out = io.StringIO()
    display = PlainDisplay(out, log_dir=tmp_path)
    display(LABEL, p.VertexStarted("sha256:2", 1, "pnpm install"))
    display(LABEL, p.VertexLog("sha256:2", 1, 1, "Progress: resolved 1"))
    assert out.getvalue().endswith(f"[{LABEL}] #1 Progress: resolved 1\n")  # not held until the step ends
    display(LABEL, p.VertexLog("sha256:2", 1, 2, "Error: a warning-ish line of a step that does not retry"))
    display.close()
    assert "Error: a warning-ish line" in out.getvalue()


def test_attempts_of_two_steps_are_held_apart():
    attempts = Attempts()
    assert attempts.log(("a", "1"), "mbuild: attempt 1 of 2") == ([], None)
    assert attempts.log(("b", "2"), "plain line") == (["plain line"], None)
    assert attempts.log(("a", "1"), "boom: ConnectionResetError") == ([], None)
    assert attempts.log(("a", "1"), "mbuild: attempt 2 of 2") == (
        [], "attempt 1 of 2 failed (boom: ConnectionResetError), retrying")
    assert attempts.log(("a", "1"), "ok") == ([], None)
    assert attempts.finish(("a", "1")) == ["ok"]
    assert attempts.finish(("a", "1")) == []


@pytest.mark.parametrize(("lines", "reason"), [
    (TRACE, "Error: No compatible signature found in package metadata"),
    (["Collecting x", "ConnectionResetError: [Errno 104] Connection reset by peer"],
     "ConnectionResetError: [Errno 104] Connection reset by peer"),
    (["npm ERR! code ECONNRESET", "npm ERR! network"], "npm ERR! code ECONNRESET"),
    (["curl: (56) Recv failure: Connection reset by peer"], "curl: (56) Recv failure: Connection reset by peer"),
    (["downloading", "giving up", ""], "giving up"),
    ([], "no output"),
])
def test_the_reason_is_the_error_line(lines, reason):
    assert failure_reason(lines) == reason


def test_build_logs_are_one_file_a_build_and_only_the_newest_are_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(progress, "KEEP_LOGS", 3)
    for n in range(5):
        (tmp_path / f"build-2026010{n}-000000-1.log").write_text("old\n")
    log = BuildLog(tmp_path)
    assert log.path is None and log.where() == ""  # nothing written, no file
    log.write("line")
    log.close()
    assert sorted(f.name for f in tmp_path.iterdir()) == [
        "build-20260103-000000-1.log", "build-20260104-000000-1.log", log.path.name]
    assert log.path.read_text() == "line\n"


def test_a_log_that_cannot_be_written_never_fails_the_build(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    out = io.StringIO()
    display = PlainDisplay(out, log_dir=blocker / "logs")
    for ev in step(RETRIED):
        display(LABEL, ev)
    display.close()
    assert "attempt 1 of 3 failed (Error: No compatible signature" in out.getvalue()
    assert "full log" not in out.getvalue()
    assert "cannot write the build log" in capsys.readouterr().err


def test_json_passes_every_event_on(tmp_path):
    out = io.StringIO()
    display = make_display("json", out, log_dir=tmp_path)
    for ev in step(RETRIED):
        display(LABEL, ev)
    display.close()
    logged = [json.loads(line).get("line") for line in out.getvalue().splitlines()]
    assert "Error: No compatible signature found in package metadata" in logged
    assert not list(tmp_path.iterdir())


def test_tty_summarises_a_failed_attempt_under_its_step(tmp_path):
    out = io.StringIO()
    display = make_display("tty", out, log_dir=tmp_path)
    for ev in step(RETRIED):
        display(LABEL, ev)
    frame = display._render().plain
    display.close()
    assert "attempt 1 of 3 failed (Error: No compatible signature found in package metadata), retrying; " \
           f"full log: {display.log.path}" in frame
    assert "verifySignature" not in frame and "verifySignature" in display.log.path.read_text()


def test_the_pnpm_step_marks_its_attempts_as_the_display_reads_them(tmp_path):
    """rules/node.py's corepack step, run as a shell script with a corepack
    that fails once: its marker lines are the ones the display knows."""
    from mbuild.api.testing import FakeBase, RuleHarness

    deps = RuleHarness(REPO, bases={"node": FakeBase()}).analyze("//infra:node_deps")["//infra:node_deps"]
    script = next(c for c in deps.commands if "corepack prepare" in c[-1])[-1]
    fake = "corepack() { if [ \"$1\" = prepare ] && [ ! -e \"$T/once\" ]; then : > \"$T/once\"; " \
           "echo 'Error: No compatible signature found in package metadata' >&2; return 1; fi; }; "
    run = subprocess.run(["/bin/sh", "-c", fake + script.replace("sleep 2", "true")], capture_output=True,
                         text=True, env={"T": str(tmp_path), "PATH": "/usr/bin:/bin"}, cwd=tmp_path)
    lines = run.stderr.splitlines()
    assert run.returncode == 0, run.stderr
    attempts = Attempts()
    results = [attempts.log(("s", "1"), line) for line in lines]
    assert [summary for _, summary in results if summary] == [
        "attempt 1 of 3 failed (Error: No compatible signature found in package metadata), retrying"]


def test_lines_on_another_stream_than_the_markers_are_shown_as_they_come():
    attempts = Attempts()
    key = ("a", "1")
    assert attempts.log(key, "mbuild: attempt 1 of 2", stream=2) == ([], None)
    assert attempts.log(key, "progress on stdout", stream=1) == (["progress on stdout"], None)
    assert attempts.log(key, "Error: reset", stream=2) == ([], None)
    assert attempts.log(key, "mbuild: attempt 2 of 2", stream=1) == (["mbuild: attempt 2 of 2"], None)
    assert attempts.log(key, "mbuild: attempt 2 of 2", stream=2) == ([], "attempt 1 of 2 failed (Error: reset), "
                                                                         "retrying")
