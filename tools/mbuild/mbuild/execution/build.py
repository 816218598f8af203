"""Execution: run the planned jobs on BuildKit and write outputs.

For each job: solve the target's LLB (exporting images into the engine), or
render and write a generated file once the images it names are built.
Progress events are passed on tagged with the job's label.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

from ..analysis.context import CA_SECRET_ID, WORKSPACE_LOCAL
from ..analysis.providers import BuiltImage, TargetInfo
from ..buildkit import exporters
from ..buildkit.client import Client, SolveRequest
from ..buildkit.dockerignore import read_dockerignore
from ..buildkit.filesync import LocalDir
from ..buildkit.secrets import SecretSource
from ..loading.labels import Label
from ..loading.workspace import Workspace
from .outputs import write_atomic
from .plan import Job, plan
from .scheduler import run_parallel

EventSink = Callable[[Label, object], None]


@dataclass(frozen=True)
class TargetOutcome:
    label: Label
    kind: str
    image: str | None = None
    manifest_digest: str | None = None
    cached: bool = False
    files: tuple[str, ...] = ()
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {
            "label": str(self.label),
            "kind": self.kind,
            "image": self.image,
            "manifest_digest": self.manifest_digest,
            "cached": self.cached,
            "files": list(self.files),
            "seconds": round(self.seconds, 3),
        }


@dataclass
class Executor:
    workspace: Workspace
    client: Client
    infos: Mapping[Label, TargetInfo]
    on_event: EventSink | None = None
    jobs: int = 4
    _built: dict[Label, BuiltImage] = field(default_factory=dict)

    def local_dirs(self) -> dict[str, LocalDir]:
        ignore = self.workspace.root / ".dockerignore"
        excludes = read_dockerignore(ignore) if ignore.exists() else []
        return {WORKSPACE_LOCAL: LocalDir(self.workspace.root, exclude=tuple(excludes))}

    def secrets(self) -> dict[str, SecretSource]:
        if not self.workspace.ca_bundle:
            return {}
        return {CA_SECRET_ID: SecretSource(CA_SECRET_ID, file=str(self.workspace.ca_bundle))}

    def run(self, requested: Sequence[Label]) -> list[TargetOutcome]:
        jobs = {j.label: j for j in plan(requested, self.infos)}
        results = run_parallel(list(jobs), {k: j.after for k, j in jobs.items()},
                               lambda label: self._run_job(jobs[label]), self.jobs)
        return [results[label] for label in sorted(results)]

    def _run_job(self, job: Job) -> TargetOutcome:
        if job.kind == "write":
            return self._write(job.label)
        return self._solve(job.label)

    def _solve(self, label: Label) -> TargetOutcome:
        info = self.infos[label]
        t0 = time.monotonic()
        exports = []
        if info.image is not None:
            exports.append(exporters.load_into_docker(info.image.name, info.stage.image_config(),
                                                      epoch=self.workspace.source_date_epoch))
        sink = (lambda ev: self.on_event(label, ev)) if self.on_event else None
        result = self.client.solve(
            SolveRequest(
                definition=info.stage,
                exports=tuple(exports),
                local_dirs=self.local_dirs(),
                secrets=self.secrets(),
                shared_key=f"mbuild:{self.workspace.root}",
            ),
            on_event=sink,
        )
        if info.image is not None:
            self._built[label] = BuiltImage(label, info.image.name, result.manifest_digest or "", info.image)
        return TargetOutcome(label, info.kind, info.image.name if info.image else None,
                             result.manifest_digest, result.all_cached, (), time.monotonic() - t0)

    def _write(self, label: Label) -> TargetOutcome:
        info = self.infos[label]
        t0 = time.monotonic()
        gen = info.generated
        data = gen.render({dep: self._built[dep] for dep in gen.image_deps})
        path = Path(self.workspace.output_dir) / gen.path
        if not path.is_absolute():
            path = self.workspace.root / path
        changed = write_atomic(path, data)
        rel = str(path.relative_to(self.workspace.root)) if path.is_relative_to(self.workspace.root) else str(path)
        return TargetOutcome(label, info.kind, files=(rel,), cached=not changed, seconds=time.monotonic() - t0)
