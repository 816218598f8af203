"""mbuild alone at scale: synthetic workspaces of N targets (bench/genworkspace.py),
and the source digest of a 100,000-file tree.

Every measurement is ``reps`` whole-process runs with peak RSS. The workspaces
live in the run's temporary folder and are deleted after their size.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import commands
from harness import Harness, Run, log
from stats import summary
from settings import BENCH

GENERATE = BENCH / "genworkspace.py"
SIZES = [100, 1000, 10000]
QUICK_SIZES = [100, 1000]
PROFILED_SIZE = 10000  # profiles are taken at this size when it is measured
TREE_FILES = 100_000


def _say(what: str, runs: list[Run]) -> None:
    log(f"  {what}: {summary([r.to_json() for r in runs])}")


def _row(title: str, runs: list[Run]) -> dict:
    return {"title": title, "runs": [r.to_json() for r in runs]}


def _append_unique(path: Path, n: int) -> None:
    """A new line each run, unique across runs, or BuildKit answers from an earlier run's cache."""
    path.write_text(path.read_text() + f"bench change {os.getpid()}-{time.time_ns()}-{n}\n")


class Workspaces:
    """The at-scale measurements of one bench run."""

    def __init__(self, h: Harness, reps: int, profile) -> None:
        self.h = h
        self.reps = reps
        self.profile = profile  # Context.profile, or None when no profiles are taken

    def times(self, key: str, cmd: list[str], ws: Path, n: int, timeout: float = 600) -> list[Run]:
        runs = [self.h.run(cmd, cwd=ws, name=f"s{n}-{key}", rss=True, timeout=timeout) for _ in range(self.reps)]
        _say(f"{n} {key}", runs)
        return runs

    def size(self, n: int) -> dict:
        """Every measurement at ``n`` targets."""
        ws = self.h.tmp / f"ws{n}"
        cache = self.h.tmp / f"ws{n}-cache"
        log(f"scale: generating {n} targets")
        subprocess.run([sys.executable, str(GENERATE), str(n), "--out", str(ws)], capture_output=True, text=True,
                       check=True)
        meta = json.loads((ws / "BENCH_META.json").read_text())
        res: dict = {"meta": meta, "rows": {}}
        mb = lambda *args: commands.mbuild(cache, *args)  # noqa: E731
        build = lambda label: mb("build", "--progress", "plain", label)  # noqa: E731
        rows = res["rows"]
        try:
            for key, title, cmd in (
                    ("load", "loading: `query 'deps(//...)'`", mb("query", "deps(//...)")),
                    ("analysis", "loading + analysis: `affected --since HEAD //...` (clean tree)",
                     mb("affected", "--since", "HEAD", "//...")),
                    ("rdeps", "`query 'rdeps(//..., //pkg0:t0)'`", mb("query", "rdeps(//..., //pkg0:t0)")),
                    ("explain", "`explain //top:all` (load + analysis + keys of every filegroup)",
                     mb("explain", "//top:all"))):
                rows[key] = _row(title, self.times(key, cmd, ws, n))
            (ws / "pkg0/src/a.txt").write_text("changed\n")
            rows["affected"] = _row("`affected --since HEAD` (pkg0/src/a.txt changed)",
                                    self.times("affected", mb("affected", "--since", "HEAD"), ws, n))
            subprocess.run(["git", "-C", str(ws), "checkout", "--", "pkg0/src/a.txt"], check=True)

            log(f"scale: first build of //top:images ({meta['top_images']} images) at {n}")
            tries = []
            for _ in range(3):  # failures seen are random (gRPC metadata soft limit) or a hang at exit
                tries.append(self.h.run(build("//top:images"), cwd=ws, name=f"s{n}-first", rss=True, timeout=300))
                if tries[-1].ok:
                    break
            first = tries[-1]
            res["first_build"] = {**first.to_json(), "tries": len(tries),
                                  "failures": [t.to_json() for t in tries if not t.ok]}
            if not first.ok:
                return res
            rows["noop50"] = _row(f"no-op build of `//top:images` ({meta['top_images']} cached images)",
                                  self.times("noop50", build("//top:images"), ws, n))
            self.h.run(build("//top:all"), cwd=ws, name=f"s{n}-first-all", timeout=600)  # its no-op stamp
            rows["noopall"] = _row("no-op build of `//top:all` (the images + every filegroup: whole-graph "
                                   "analysis and keys)", self.times("noopall", build("//top:all"), ws, n))
            change = ws / meta["change_file"]
            runs = []
            for i in range(self.reps):
                _append_unique(change, i)
                runs.append(self.h.run(build("//top:all"), cwd=ws, name=f"s{n}-change", rss=True, timeout=600))
            _say(f"{n} change", runs)
            rows["change"] = _row(f"one-file change: build of `//top:all` after a line is added to "
                                  f"`{meta['change_file']}` (rebuilds `{meta['change_image']}` only)", runs)
            probe = self.h.run(build(meta["biggest_image"]), cwd=ws, name=f"s{n}-probe", timeout=600)
            res["probe"] = {"label": meta["biggest_image"], "files": meta["biggest_image_files"], **probe.to_json()}
            if self.profile is not None and n == PROFILED_SIZE:
                k = f"{n // 1000}k"
                self.profile(f"{k}-load", mb("query", "deps(//...)")[1:], cwd=ws)
                self.profile(f"{k}-analysis", mb("affected", "--since", "HEAD", "//...")[1:], cwd=ws)
                self.profile(f"{k}-noop", build("//top:all")[1:], cwd=ws)
                _append_unique(change, self.reps)
                self.profile(f"{k}-change", build("//top:all")[1:], cwd=ws)
            return res
        finally:
            shutil.rmtree(ws, ignore_errors=True)
            shutil.rmtree(cache, ignore_errors=True)

    def run(self, sizes: list[int]) -> dict:
        return {"sizes": {str(n): self.size(n) for n in sizes}}

    def digest(self, files: int = TREE_FILES) -> dict:
        """``explain`` of one filegroup over ``files`` files: cold (new cache dir each run) and warm."""
        ws = self.h.tmp / "tree"
        log(f"digest: generating {files} files")
        subprocess.run([sys.executable, str(GENERATE), "--tree", str(files), "--out", str(ws)], capture_output=True,
                       check=True)
        warm_cache = self.h.tmp / "tree-cache"
        explain = lambda cache: commands.mbuild(cache, "explain", "//:tree")  # noqa: E731
        try:
            cold = []
            for i in range(self.reps):
                c = self.h.tmp / f"tree-cold-{i}"
                cold.append(self.h.run(explain(c), cwd=ws, name="digest-cold", rss=True))
                shutil.rmtree(c, ignore_errors=True)
            self.h.run(explain(warm_cache), cwd=ws, name="digest-fill")
            warm = [self.h.run(explain(warm_cache), cwd=ws, name="digest-warm", rss=True) for _ in range(self.reps)]
            _say("digest cold", cold)
            _say("digest warm", warm)
            if self.profile is not None:
                self.profile(f"{files // 1000}k-digest-warm", explain(warm_cache)[1:], cwd=ws)
            return {"files": files, "cold": [r.to_json() for r in cold], "warm": [r.to_json() for r in warm]}
        finally:
            shutil.rmtree(ws, ignore_errors=True)
            shutil.rmtree(warm_cache, ignore_errors=True)
