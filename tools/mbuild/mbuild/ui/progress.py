"""Progress displays: a live TTY view, plain lines, or JSON events.

Each display takes ``(label, event)`` pairs from any job thread (events are
:mod:`buildkit.progress` types) and must be closed at the end.

* ``plain``: one line per step start / finish (``CACHED``, ``DONE 1.2s``,
  ``ERROR``) and log lines, prefixed with the target label; for CI logs.
* ``tty``: a live view like buildx: one line per step with its time or
  CACHED, and the last log lines of running steps.
* ``json``: one JSON object per event, for machines.

Retried steps. A step that retries a command (downloads through a proxy
that resets now and then) marks each attempt with a log line ``mbuild:
attempt N of M`` before running it, on the stream the attempt writes to
(BuildKit keeps the order of a stream's lines, not between stdout and
stderr: ``for i in 1 2 3; do echo "mbuild: attempt $i of 3"; CMD && exit 0;
done >&2``). ``plain`` and ``tty`` hold an attempt's lines on that stream
back until it is known how it ended: a failed attempt becomes one line
(``attempt 1 of 3 failed (Error: …), retrying``) and its lines stay out of
the build's output, so a build that succeeded shows no stack trace from an
attempt that did not; the attempt that ended the step is shown as any other
step's lines. The full log, every line of every step, held-back attempts
included, is written to a per-build file (:class:`BuildLog`) that the
summary line names. ``json`` passes every event on as it comes.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import TextIO

from buildkit import progress as p

TAIL = 6
ATTEMPT = re.compile(r"mbuild: attempt (\d+) of (\d+)")
# The line of a failed attempt that says why: a language's error or exception
# line (corepack's "Error: No compatible signature found…", a Python
# "ConnectionResetError: …"), npm's "npm ERR!", curl's "curl: (56) …".
_REASON = re.compile(r"([\w.]*(Error|Exception)\b|error\b|ERROR\b|fatal\b|FATAL\b|npm ERR!|curl: \()")
KEEP_LOGS = 20  # build logs kept in a log folder; older ones are removed


def default_log_dir() -> Path:
    """Where build logs go when the caller names no folder: the user's own
    folder under the system's temporary directory."""
    return Path(tempfile.gettempdir()) / f"mbuild-logs-{os.getuid()}"


def event_line(ev) -> str | None:
    """The plain text of an event (without its target), or None for events not shown."""
    if isinstance(ev, p.VertexStarted):
        return f"#{ev.number} {ev.name}"
    if isinstance(ev, p.VertexCompleted):
        return f"#{ev.number} CACHED" if ev.cached else f"#{ev.number} DONE {ev.duration:.1f}s"
    if isinstance(ev, p.VertexFailed):
        return f"#{ev.number} ERROR {ev.error}"
    if isinstance(ev, p.VertexLog):
        return f"#{ev.number} {ev.line}"
    if isinstance(ev, p.Warning_):
        return f"#{ev.number} WARNING {ev.message}"
    return None


class BuildLog:
    """The full log of one build: every step line of every target, in a file
    of its own (``build-<time>-<pid>.log`` in ``folder``), opened at the
    first line; the newest KEEP_LOGS builds' logs are kept."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else default_log_dir()
        self.path: Path | None = None
        self._file = None
        self._failed = False

    def write(self, text: str) -> None:
        if self._file is None and not self._failed:
            self._open()
        if self._file is not None:
            self._file.write(text + "\n")
            self._file.flush()

    def _open(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            old = sorted(self.folder.glob("build-*.log"))
            for stale in old[:max(0, len(old) - KEEP_LOGS + 1)]:
                stale.unlink(missing_ok=True)
            self.path = self.folder / f"build-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
            self._file = open(self.path, "a", encoding="utf-8")
        except OSError as e:  # a log that cannot be written never fails a build
            self._failed = True
            self.path = None
            sys.stderr.write(f"mbuild: warning: cannot write the build log in {self.folder} ({e})\n")

    def where(self) -> str:
        """``; full log: PATH`` for a summary line, once the file is open."""
        return f"; full log: {self.path}" if self.path else ""

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def failure_reason(lines: list[str]) -> str:
    """One line saying why an attempt failed, from its log lines."""
    for line in lines:
        if _REASON.match(line.strip()):
            return _short(line.strip())
    rest = [line.strip() for line in lines if line.strip()]
    return _short(rest[-1]) if rest else "no output"


def _short(text: str, width: int = 160) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


class Attempts:
    """The lines of retried steps' attempts, held back per step until it is
    known whether the attempt failed (see the module docstring). Only the
    marker's stream is held: a line on another one cannot be placed in an
    attempt, so it is shown as it comes."""

    def __init__(self) -> None:
        self._held: dict[tuple, tuple[int, int, int, list[str]]] = {}  # key -> (stream, number, total, lines)

    def log(self, key: tuple, line: str, stream: int = 2) -> tuple[list[str], str | None]:
        """(lines to show now, a summary of the attempt that just failed or None)."""
        held = self._held.get(key)
        if held is not None and held[0] != stream:
            return [line], None
        marker = ATTEMPT.fullmatch(line.strip())
        if marker:
            self._held[key] = (stream, int(marker[1]), int(marker[2]), [])
            if held is None:
                return [], None
            _, number, total, lines = held
            return [], f"attempt {number} of {total} failed ({failure_reason(lines)}), retrying"
        if held is not None:
            held[3].append(line)
            return [], None
        return [line], None

    def finish(self, key: tuple) -> list[str]:
        """The held lines of the step's last attempt, now that the step ended."""
        held = self._held.pop(key, None)
        return held[3] if held else []


class PlainDisplay:
    def __init__(self, out: TextIO = sys.stderr, log_dir: Path | None = None) -> None:
        self.out = out
        self.log = BuildLog(log_dir)
        self._attempts = Attempts()
        self._lock = threading.Lock()

    def __call__(self, label, ev) -> None:
        line = event_line(ev)
        if line is None:
            return
        with self._lock:
            self.log.write(f"[{label}] {line}")
            key = (str(label), ev.digest)
            shown = [line]
            if isinstance(ev, p.VertexLog):
                lines, summary = self._attempts.log(key, ev.line, ev.stream)
                shown = [f"#{ev.number} {text}" for text in lines]
                if summary:
                    shown.append(f"#{ev.number} {summary}{self.log.where()}")
            elif isinstance(ev, (p.VertexCompleted, p.VertexFailed)):
                shown = [f"#{ev.number} {text}" for text in self._attempts.finish(key)] + [line]
            for text in shown:
                self.out.write(f"[{label}] {text}\n")
            self.out.flush()

    def close(self) -> None:
        self.log.close()


class JsonDisplay:
    """Every event as it comes: the stream is the full log itself."""

    def __init__(self, out: TextIO = sys.stderr) -> None:
        self.out = out
        self._lock = threading.Lock()

    def __call__(self, label, ev) -> None:
        record = {"target": str(label), "event": type(ev).__name__.rstrip("_"), **asdict(ev)}
        with self._lock:
            self.out.write(json.dumps(record) + "\n")
            self.out.flush()

    def close(self) -> None:
        pass


class TtyDisplay:
    """A live view drawn with rich: steps with times, tails of running steps."""

    def __init__(self, out: TextIO = sys.stderr, log_dir: Path | None = None) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=out)
        self.log = BuildLog(log_dir)
        self._attempts = Attempts()
        self._lock = threading.Lock()
        self._steps: dict[tuple[str, str], dict] = {}
        self._order: list[tuple[str, str]] = []
        self._live = Live(console=self.console, refresh_per_second=8, transient=False,
                          get_renderable=self._render)
        self._live.start()

    def __call__(self, label, ev) -> None:
        line = event_line(ev)
        with self._lock:
            if line is not None:
                self.log.write(f"[{label}] {line}")
            key = (str(label), ev.digest)
            step = self._steps.get(key)
            if step is None:
                step = self._steps[key] = {"name": getattr(ev, "name", "") or ev.digest[:19], "start": None,
                                           "end": None, "cached": False, "error": None, "tail": [],
                                           "retries": []}
                self._order.append(key)
            if isinstance(ev, p.VertexStarted):
                step["name"] = ev.name or step["name"]
                step["start"] = time.monotonic()
            elif isinstance(ev, (p.VertexCompleted, p.VertexFailed)):
                step["end"] = time.monotonic()
                self._attempts.finish(key)
                if isinstance(ev, p.VertexCompleted):
                    step["cached"] = ev.cached
                    step["duration"] = ev.duration
                else:
                    step["error"] = ev.error
            elif isinstance(ev, p.VertexLog):
                _, summary = self._attempts.log(key, ev.line, ev.stream)
                if summary:  # the tail starts again with the next attempt
                    step["retries"].append(summary + self.log.where())
                    step["tail"] = []
                elif not ATTEMPT.fullmatch(ev.line.strip()):
                    step["tail"] = (step["tail"] + [ev.line])[-TAIL:]

    def _render(self):
        from rich.text import Text

        text = Text()
        with self._lock:
            now = time.monotonic()
            for key in self._order:
                step = self._steps[key]
                if step["start"] is None and not step["cached"]:
                    continue
                label = key[0]
                if step["error"]:
                    status, style = "ERROR", "bold red"
                elif step["cached"]:
                    status, style = "CACHED", "cyan"
                elif step["end"] is not None:
                    status, style = f"{step.get('duration', 0):.1f}s", "green"
                else:
                    status, style = f"{now - step['start']:.1f}s", "yellow"
                text.append(f"[{label}] ", style="dim")
                text.append(f"{step['name']} ")
                text.append(status + "\n", style=style)
                for summary in step["retries"]:
                    text.append(f"    {summary}\n", style="yellow")
                if step["end"] is None and step["tail"]:
                    for line in step["tail"]:
                        text.append(f"    {line[:160]}\n", style="dim")
        return text

    def close(self) -> None:
        self._live.stop()
        self.log.close()


def make_display(mode: str, out: TextIO = sys.stderr, log_dir: Path | None = None):
    """The display for ``--progress MODE`` (``auto``: tty on a terminal, else
    plain). ``log_dir``: the folder of the per-build logs of ``plain`` and
    ``tty`` (default: :func:`default_log_dir`)."""
    if mode == "auto":
        mode = "tty" if out.isatty() else "plain"
    if mode == "json":
        return JsonDisplay(out)
    return {"plain": PlainDisplay, "tty": TtyDisplay}[mode](out, log_dir)
