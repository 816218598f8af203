"""The one-change path: when the only change since the last build of the same
command is to source files, only the targets those files reach are built.

A build's cost should grow with the change, not with the workspace. Loading,
analysis and keys of every target are what a large graph costs (2 s at
10,000 targets), and all of them are functions of what the no-op stamp
(:mod:`mbuild.fastpath`) already records facts of: BUILD and .bzl files,
rule modules, mbuild's own modules, the folders globs list, WORKSPACE.toml,
.dockerignore, the docker config, the engine's base images, the command, and
what analysis itself reads (a `dockerfile` target's Dockerfile, its ignore
files, its context's folders). Source files are different: no loading or
analysis reads them (rule code is hermetic, and its context hands it paths,
never bytes); they go into keys only, through their digests, and into steps.

So when every changed file is such a source, the targets the stamp reported
whose keys do not cover a changed file have the keys they had, and their
results stand exactly as in a no-op build: the stamp's records answer for
them, after the same checks (engine images, generated files). The stamp
holds the build's graph (each target's dependencies, and the sources it
adds to its key); the targets a changed source reaches through it are built
by the normal phases, as a build of just those labels: loading, analysis
and keys of their own closure, then the cache and BuildKit. The report is
the full build's: every target, in its order. The stamp is then brought up
to date for the whole command, never replaced by one of the smaller build
(a later no-op must still see every file the whole command depends on).

Anything else changed (a BUILD file, a rule module, a file come or gone
where a glob looks, an image gone from the engine) takes the full build, as
does ``MBUILD_DELTA=0``. So does a smaller build whose graph is not the
stamp's (a BUILD file edited while it ran): its stamp is removed.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Mapping, Sequence

from . import fastpath


@dataclass(frozen=True)
class Delta:
    """A build of ``argv`` in ``cwd`` whose stamp holds but for ``changed``
    (each changed source, with its stat facts when this build looked) and
    ``folders`` (folders whose facts changed but not their entries)."""

    argv: list[str]
    cwd: str
    stamp: dict
    changed: dict[str, bytes | None]
    folders: dict[str, bytes | None]
    looked_ns: int  # when those facts were taken

    @cached_property
    def rebuild(self) -> list[str]:
        """The reported targets a changed source reaches, in the report's order."""
        graph = self.stamp["delta"]
        at = {path: i for i, path in enumerate(graph["sources"])}
        reached = {t for path in self.changed for t in graph["added_by"][at[path]]}
        dependants = graph["dependants"]
        stack = list(reached)
        while stack:
            for up in dependants[stack.pop()]:
                if up not in reached:
                    reached.add(up)
                    stack.append(up)
        labels = {graph["targets"][t] for t in reached}
        return [r["label"] for r in self.stamp["report"]["records"] if r["label"] in labels]

    def covers(self, outcomes: Sequence) -> bool:
        """Whether every outcome of the smaller build is a target the stamp reported."""
        reported = {r["label"] for r in self.stamp["report"]["records"]}
        return all(str(o.label) in reported for o in outcomes)

    def report(self, outcomes: Sequence, summary: Callable) -> tuple[list[dict], list[str]]:
        """What the full build prints: each reported target's JSON record and
        summary line, the rebuilt ones as just built, the rest from the stamp."""
        fresh = {str(o.label): o for o in outcomes}
        records, lines = [], []
        for record, line in zip(self.stamp["report"]["records"], self.stamp["report"]["lines"]):
            o = fresh.get(record["label"])
            records.append(o.to_json() if o is not None else record)
            lines.append(summary(o, o.cached) if o is not None else line)
        return records, lines

    def record(self, outcomes: Sequence, summary: Callable, root: str,
               graph: Mapping[str, tuple[list[str], set[str]]]) -> None:
        """Bring the stamp up to date for the whole command: the changed
        sources' and folders' facts as this build found them before reading
        (a file edited during the build is seen as changed next time), and
        the rebuilt targets' records, images and generated files. ``graph``
        is the smaller build's (:func:`mbuild.workflow.key_graph`): where it
        differs from the stamp's, the stamp is removed."""
        doc = self.stamp
        if not self.covers(outcomes) or not self._same_graph(graph):
            self.forget()
            return
        index = {r["label"]: i for i, r in enumerate(doc["report"]["records"])}
        try:
            for o in outcomes:
                at = index[str(o.label)]
                doc["report"]["records"][at] = fastpath.stamped_outcome(o, root, doc["images"], doc["outputs"])
                doc["report"]["lines"][at] = summary(o, True)
            doc["files"].update({p: fastpath.settled(f, self.looked_ns) for p, f in self.changed.items()})
            doc["dirs"].update({p: fastpath.settled(f, self.looked_ns) for p, f in self.folders.items()})
            fastpath.save_stamp(self.argv, self.cwd, doc)
        except OSError:
            self.forget()

    def forget(self) -> None:
        """Remove the command's stamp: the next build is a full one."""
        try:
            os.unlink(fastpath.stamp_path(self.argv, self.cwd))
        except OSError:
            pass

    def _same_graph(self, graph: Mapping[str, tuple[list[str], set[str]]]) -> bool:
        mine = self.stamp["delta"]
        number = {label: i for i, label in enumerate(mine["targets"])}
        sources = mine["sources"]
        known = set(sources)
        for label, (deps, adds) in graph.items():
            t = number.get(label)
            if t is None or sorted(deps) != sorted(mine["targets"][d] for d in mine["deps"][t]):
                return False
            if {sources[i] for i in mine["adds"][t]} != adds & known:
                return False
        return True


def plan(argv: list[str], cwd: str) -> Delta | None:
    """The one-change build of ``argv``, or None for a full build."""
    if os.environ.get("MBUILD_DELTA") == "0":
        return None
    looked = time.time_ns()
    found = fastpath.changed_sources(argv, cwd)
    if found is None:
        return None
    stamp, changed, folders = found
    return Delta(list(argv), cwd, stamp, changed, folders, looked)

