"""Progress displays: a live TTY view, plain lines, or JSON events.

Each display takes ``(label, event)`` pairs from any job thread (events are
:mod:`buildkit.progress` types) and must be closed at the end.

* ``plain``: one line per step start / finish (``CACHED``, ``DONE 1.2s``,
  ``ERROR``) and log lines, prefixed with the target label; for CI logs.
* ``tty``: a live view like buildx: one line per step with its time or
  CACHED, and the last log lines of running steps.
* ``json``: one JSON object per event, for machines.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import asdict
from typing import TextIO

from buildkit import progress as p

TAIL = 6


class PlainDisplay:
    def __init__(self, out: TextIO = sys.stderr) -> None:
        self.out = out
        self._lock = threading.Lock()

    def __call__(self, label, ev) -> None:
        line = None
        if isinstance(ev, p.VertexStarted):
            line = f"#{ev.number} {ev.name}"
        elif isinstance(ev, p.VertexCompleted):
            line = f"#{ev.number} CACHED" if ev.cached else f"#{ev.number} DONE {ev.duration:.1f}s"
        elif isinstance(ev, p.VertexFailed):
            line = f"#{ev.number} ERROR {ev.error}"
        elif isinstance(ev, p.VertexLog):
            line = f"#{ev.number} {ev.line}"
        elif isinstance(ev, p.Warning_):
            line = f"#{ev.number} WARNING {ev.message}"
        if line is not None:
            with self._lock:
                self.out.write(f"[{label}] {line}\n")
                self.out.flush()

    def close(self) -> None:
        pass


class JsonDisplay:
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

    def __init__(self, out: TextIO = sys.stderr) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=out)
        self._lock = threading.Lock()
        self._steps: dict[tuple[str, str], dict] = {}
        self._order: list[tuple[str, str]] = []
        self._live = Live(console=self.console, refresh_per_second=8, transient=False,
                          get_renderable=self._render)
        self._live.start()

    def __call__(self, label, ev) -> None:
        with self._lock:
            key = (str(label), ev.digest)
            step = self._steps.get(key)
            if step is None:
                step = self._steps[key] = {"name": getattr(ev, "name", "") or ev.digest[:19], "start": None,
                                           "end": None, "cached": False, "error": None, "tail": []}
                self._order.append(key)
            if isinstance(ev, p.VertexStarted):
                step["name"] = ev.name or step["name"]
                step["start"] = time.monotonic()
            elif isinstance(ev, p.VertexCompleted):
                step["end"] = time.monotonic()
                step["cached"] = ev.cached
                step["duration"] = ev.duration
            elif isinstance(ev, p.VertexFailed):
                step["end"] = time.monotonic()
                step["error"] = ev.error
            elif isinstance(ev, p.VertexLog):
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
                if step["end"] is None and step["tail"]:
                    for line in step["tail"]:
                        text.append(f"    {line[:160]}\n", style="dim")
        return text

    def close(self) -> None:
        self._live.stop()


def make_display(mode: str, out: TextIO = sys.stderr):
    if mode == "auto":
        mode = "tty" if out.isatty() else "plain"
    return {"plain": PlainDisplay, "json": JsonDisplay, "tty": TtyDisplay}[mode](out)
