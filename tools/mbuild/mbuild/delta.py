"""The one-change path: when the only change since the last build of the same
command is to source files, only the targets those files reach are built.

A build's cost should grow with the change, not with the workspace. Loading,
analysis and keys of every target are what a large graph costs (2 s at
10,000 targets), and all of them are functions of what the no-op stamp
(:mod:`mbuild.fastpath`) already records facts of: BUILD and .bzl files,
rule modules, mbuild's own modules, the folders globs list, WORKSPACE.toml,
.dockerignore, the docker config, the engine's base images, and the
command. Source files are different: no loading or analysis reads them
(rule code is hermetic; a Dockerfile target's Dockerfile is read in analysis
and is one of that target's own sources, so the target is rebuilt, analysed
afresh); they go into keys only, through their digests, and into steps.

So when every changed file is such a source, the targets the stamp reported
whose keys do not cover a changed file have the keys they had, and their
results stand exactly as in a no-op build: the stamp's records answer for
them, with the same checks (engine images, generated files). The targets
whose keys do cover one are built by the normal phases, as a build of just
those labels: loading, analysis and keys of their own closure, then the
cache and BuildKit. The report is the full build's: every target, in its
order. The stamp is then brought up to date for the whole command, never
replaced by one of the smaller build (a later no-op must still see every
file the whole command depends on).

Anything else changed (a BUILD file, a rule module, a new file where a glob
looks, an image gone from the engine) takes the full build, as does
``MBUILD_DELTA=0``.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from . import fastpath


@dataclass(frozen=True)
class Delta:
    """A build of ``argv`` in ``cwd`` whose stamp holds but for ``changed``
    (each changed source, with its stat facts when this build looked)."""

    argv: list[str]
    cwd: str
    stamp: dict
    changed: dict[str, list[int] | None]
    looked_ns: int  # when the changed sources' facts were taken

    @property
    def rebuild(self) -> list[str]:
        """The reported targets whose keys cover a changed source, in the report's order."""
        sources = self.stamp["delta"]["sources"]
        changed = {i for i, path in enumerate(sources) if path in self.changed}
        reach = self.stamp["delta"]["reach"]
        return [r["label"] for r in self.stamp["report"]["records"] if not changed.isdisjoint(reach[r["label"]])]

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

    def record(self, outcomes: Sequence, summary: Callable, root: str) -> None:
        """Bring the stamp up to date for the whole command: the changed
        sources' facts as this build found them before reading them (a file
        edited during the build is seen as changed next time), and the
        rebuilt targets' records, images and generated files."""
        doc = self.stamp
        index = {r["label"]: i for i, r in enumerate(doc["report"]["records"])}
        if any(str(o.label) not in index for o in outcomes):  # not the graph the stamp describes
            _remove(fastpath.stamp_path(self.argv, self.cwd))
            return
        for o in outcomes:
            at = index[str(o.label)]
            doc["report"]["records"][at] = dict(o.to_json(), cached=True, seconds=0.0, source="noop-stamp")
            doc["report"]["lines"][at] = summary(o, True)
            if o.image and o.manifest_digest:
                doc["images"][o.image] = o.manifest_digest
            for rel in o.files:
                path = os.path.join(root, rel)
                with open(path, "rb") as f:
                    doc["outputs"][path] = hashlib.sha256(f.read()).hexdigest()
        doc["files"].update({p: fastpath.settled(f, self.looked_ns) for p, f in self.changed.items()})
        try:
            fastpath.save_stamp(self.argv, self.cwd, doc)
        except OSError:
            _remove(fastpath.stamp_path(self.argv, self.cwd))


def plan(argv: list[str], cwd: str) -> Delta | None:
    """The one-change build of ``argv``, or None for a full build."""
    if os.environ.get("MBUILD_DELTA") == "0":
        return None
    looked = time.time_ns()
    found = fastpath.changed_sources(argv, cwd)
    if found is None:
        return None
    stamp, changed = found
    return Delta(list(argv), cwd, stamp, changed, looked)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
