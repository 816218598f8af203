"""What a side-by-side scenario is, and the context every scenario runs in.

A scenario measures one situation on both sides, ``docker buildx bake``
(bench/docker-bake.hcl) and mbuild (``//infra:compose``), as alternating
whole-process runs: bake, mbuild, bake, mbuild… (so drift of the shared
machine hits both sides alike). Its figure is the ratio mbuild / bake of the
medians; its target, if it has one, is an upper bound on that ratio.

To add one, see bench/README.md ("Adding a scenario").
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import commands
import repo
from engines import PrivateEngine, SharedImages, engine_env, fresh_engine, has_image
from harness import Harness, Run, log
from settings import BAKE_TAGS, BENCH, MBUILD_LABEL, PROJECT_TAGS, ROOT


@dataclass
class Result:
    """One scenario's runs, as the report and runs.json show them."""

    name: str
    title: str
    max_ratio: float | None
    target: str
    notes: list[str] = field(default_factory=list)
    bake: list[Run] = field(default_factory=list)
    mbuild: list[Run] = field(default_factory=list)
    error: str = ""  # set when the scenario could not run at all
    tree: dict = field(default_factory=dict)  # repo.state() right after it (the commit and dirty files)

    def to_json(self) -> dict:
        return {"name": self.name, "title": self.title, "max_ratio": self.max_ratio, "target": self.target,
                "notes": self.notes, "error": self.error, "tree": self.tree,
                "bake": [r.to_json() for r in self.bake], "mbuild": [r.to_json() for r in self.mbuild]}


class Context:
    """What scenarios share during one bench run: the harness, mbuild's warm
    cache, the shared engine's bookkeeping, the bases for fresh engines, the
    profiler, and the state the scenarios leave (warm, remotes populated)."""

    def __init__(self, h: Harness, reps: int, profiler) -> None:
        self.h = h
        self.reps = reps
        self.profiler = profiler  # profiles.Profiler, or None when no profiles are taken
        self.cache = h.tmp / "mbuild-cache"  # mbuild's warm local cache for the whole run
        self.edits = repo.Edits()
        self.images = SharedImages()
        self.warm = False
        self.cleanups: dict[str, Callable[[], None]] = {}  # run once at the end, e.g. registry cache removal

    def fresh_cache(self) -> Path:
        """A new empty mbuild ``--cache-dir``."""
        return Path(tempfile.mkdtemp(prefix="cache.", dir=self.h.tmp))

    @contextlib.contextmanager
    def fresh_engine(self) -> Iterator[PrivateEngine]:
        """A new private engine (bases loaded, untimed); removed afterwards. See engines.py."""
        log("    starting a fresh private engine (untimed)")
        with fresh_engine(self.h.tmp) as eng:
            yield eng

    # ---- one run of either side

    def bake(self, *extra: str, name: str = "bake", env: dict | None = None, cwd: Path = BENCH,
             bake_file: Path | None = None) -> Run:
        r = self.h.run(commands.bake(*extra, bake_file=bake_file), cwd=cwd, env=env, name=name)
        if not (env or {}).get("DOCKER_HOST"):  # a private engine vanishes whole
            self.images.note(BAKE_TAGS)
        return r

    def mbuild(self, *extra: str, cache: Path | None = None, name: str = "mbuild", cwd: Path = ROOT,
               env: dict | None = None, label: str = MBUILD_LABEL) -> Run:
        r = self.h.run(commands.mbuild_build(cache or self.cache, *extra, label=label), cwd=cwd, env=env, name=name)
        if not (env or {}).get("DOCKER_HOST"):
            self.images.note(PROJECT_TAGS)
        return r

    def warm_up(self) -> None:
        """One untimed build of each side on the shared engine, once per bench run."""
        if not self.warm:
            log("  warming both sides (untimed)")
            self.bake(name="warm-bake")
            self.mbuild(name="warm-mbuild")
            self.warm = True

    def alternate(self, res: Result, bake_once: Callable[[int], Run], mbuild_once: Callable[[int], Run]) -> None:
        """Pairs of runs, bake, mbuild, bake, mbuild…: ``reps`` of them, and more (up to twice as many) while a
        side has fewer than ``reps`` counted runs (a run whose downloads were retried is set aside: see
        stats.counted)."""
        i = 0
        while i < self.reps or (i < 2 * self.reps and min(
                sum(r.counted for r in res.bake), sum(r.counted for r in res.mbuild)) < self.reps):
            extra = " (again: runs set aside for network retries)" if i >= self.reps else ""
            log(f"  {res.name} rep {i + 1}/{self.reps}{extra}: bake")
            res.bake.append(bake_once(i))
            log(f"  {res.name} rep {i + 1}/{self.reps}: mbuild ({res.bake[-1].wall:.2f}s bake)")
            res.mbuild.append(mbuild_once(i))
            log(f"  {res.name} rep {i + 1}/{self.reps}: {res.mbuild[-1].wall:.2f}s mbuild")
            i += 1

    def profile(self, name: str, args: list[str], cwd: Path = ROOT, env: dict | None = None,
                module: str = "mbuild") -> None:
        """A pyinstrument profile of ``python -m MODULE ARGS``, kept with the report (if profiling)."""
        if self.profiler is not None:
            self.profiler.profile(name, args, cwd, env, module)


class Scenario:
    """One side-by-side situation. Subclasses set the class attributes and :meth:`measure`."""

    name = ""  # what --scenario selects, and the chart's label
    title = ""  # the report's row
    max_ratio: float | None = None  # the target: median mbuild / median bake at most this; None: no target
    target = ""  # how the target reads in the report
    notes = ""  # how it is measured, quoted in the report

    def measure(self, ctx: Context, res: Result) -> None:
        """Fill ``res.bake`` and ``res.mbuild`` (through ``ctx.alternate``); raise RuntimeError if it cannot run."""
        raise NotImplementedError

    def profile(self, ctx: Context) -> None:
        """Optionally, profile mbuild's side once after the timed runs (``ctx.profile``)."""

    def run(self, ctx: Context) -> Result:
        res = Result(self.name, self.title, self.max_ratio, self.target, [self.notes] if self.notes else [])
        try:
            self.measure(ctx, res)
            if ctx.profiler is not None:
                self.profile(ctx)
        except RuntimeError as e:
            log(f"scenario {self.name} could not run: {e}")
            res.error = str(e)[:400]
        return res


class OnFreshEngine(Scenario):
    """Every run, either side, on a fresh private engine; the side's images must be in it afterwards."""

    def prepare(self, ctx: Context) -> None:
        """Untimed, once before the runs."""

    def bake_args(self, ctx: Context) -> list[str]:
        return []

    def mbuild_args(self, ctx: Context) -> list[str]:
        return []

    def once(self, ctx: Context, side: str) -> Run:
        with ctx.fresh_engine() as eng:
            env = engine_env(eng)
            if side == "bake":
                r, tags = ctx.bake(*self.bake_args(ctx), name=f"{self.name}-bake", env=env), BAKE_TAGS
            else:
                r = ctx.mbuild(*self.mbuild_args(ctx), cache=ctx.fresh_cache(), name=f"{self.name}-mbuild", env=env)
                tags = PROJECT_TAGS
            missing = [t for t in tags if not has_image(t, eng.host)]
            if r.ok and missing:
                r.fail(f"exit 0 but {', '.join(missing)} not in the engine")
            return r

    def measure(self, ctx: Context, res: Result) -> None:
        self.prepare(ctx)
        ctx.alternate(res, lambda i: self.once(ctx, "bake"), lambda i: self.once(ctx, "mbuild"))
