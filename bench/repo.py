"""The checkout being measured: its commit, whether it is clean, and the
bench's own temporary edits of tracked files.

A report states the commit it measured, so the bench refuses to run while
tracked files differ from that commit (untracked files do not count, nor do
the results folder's own files, which a run writes).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from harness import sh
from settings import RESULTS, ROOT

_NOT_MEASURED = [f":(exclude){RESULTS.relative_to(ROOT)}"]


def head(short: bool = False) -> str:
    return sh(["git", "-C", str(ROOT), "rev-parse", *(["--short=7"] if short else []), "HEAD"])


def dirty_files() -> list[str]:
    """Tracked files that differ from HEAD (staged or not), as ``git status --porcelain`` lines ("XY path")."""
    out = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "--", ".",
                          *_NOT_MEASURED], capture_output=True, text=True, check=True).stdout
    return [l for l in out.splitlines() if l.strip()]


def state() -> dict:
    """HEAD and the dirty tracked files: recorded at the start and after each scenario."""
    return {"commit": head(), "dirty": dirty_files()}


class Edits:
    """Appends unique comment lines to tracked files; :meth:`restore` puts them back.

    Each line is unique across runs and processes, or BuildKit would answer a
    repeated content from an earlier run's cache.
    """

    def __init__(self, root: Path = ROOT) -> None:
        self.root = root
        self.saved: dict[Path, bytes] = {}
        self.n = 0

    def append(self, rel: str, prefix: str, tag: str) -> None:
        path = self.root / rel
        if path not in self.saved:
            self.saved[path] = path.read_bytes()
        self.n += 1
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            data += b"\n"
        path.write_bytes(data + f"{prefix} bench {tag} {os.getpid()}-{time.time_ns()}-{self.n}\n".encode())

    def restore(self) -> None:
        for path, data in self.saved.items():
            path.write_bytes(data)
            subprocess.run(["git", "-C", str(self.root), "checkout", "--", str(path.relative_to(self.root))],
                           capture_output=True)
        self.saved.clear()
