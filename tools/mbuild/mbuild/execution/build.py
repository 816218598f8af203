"""Execution: answer each planned job from the cache, or run it on BuildKit.

For each job, in dependency order and in parallel where independent:

1. compute the action key (:mod:`mbuild.cache.keys`);
2. under the key's lock (a second mbuild process building the same key
   waits here, then finds the result), look the key up in the local store;
3. on a hit, check the output is still there (the image in the engine under
   its manifest digest, the file on disk) and report the job cached without
   any solve; restore what is missing;
4. on a miss, solve on BuildKit (exporting images into the engine) or render
   the generated file, and record the result.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

from ..analysis.context import CA_SECRET_ID, WORKSPACE_LOCAL
from ..analysis.providers import BuiltImage, ResolvedBase, TargetInfo
from buildkit import exporters
from ..cache.digests import StatCache
from ..errors import ConfigError
from ..cache.keys import KeyInputs, key_inputs
from ..cache.oci import ingest_archive
from ..cache.store import ActionRecord, LocalStore
from ..loading.labels import Label
from ..loading.workspace import Workspace
from .daemon import Daemon
from .outputs import write_atomic
from .remote import RemoteActions, restore_image
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
    key: str = ""
    source: str = "solve"  # where the result came from: solve, local-cache, remote-cache

    def to_json(self) -> dict:
        return {
            "label": str(self.label),
            "kind": self.kind,
            "image": self.image,
            "manifest_digest": self.manifest_digest,
            "cached": self.cached,
            "files": list(self.files),
            "seconds": round(self.seconds, 3),
            "key": self.key,
            "source": self.source,
        }


def compute_keys(workspace: Workspace, infos: Mapping[Label, TargetInfo], bases: Mapping[str, ResolvedBase],
                 stat_cache: StatCache, engine_options: Mapping[str, str], platform: str) -> dict[Label, KeyInputs]:
    """Key inputs of every analysed target (``infos`` is in dependency order),
    built for ``platform`` (the one analysis made the LLB for)."""
    sources = sorted({path for info in infos.values() for path in info.sources})
    try:
        files = stat_cache.digest_files(workspace.root, sources)
    except FileNotFoundError as e:
        rel = e.filename  # workspace-relative (digest_files says which)
        owner = next((i for i in infos.values() if rel in i.sources), None)
        where = f"{owner.location}: {owner.label}: " if owner and owner.location else ""
        raise ConfigError(f"{where}source file {rel} does not exist; create it or fix the target's srcs") from None
    base_digests = {name: b.digest for name, b in bases.items()}
    out: dict[Label, KeyInputs] = {}
    for label, info in infos.items():
        dep_keys = {d: out[d].key for d in info.deps}
        out[label] = key_inputs(info, files, dep_keys, base_digests, platform, engine_options)
    return out


@dataclass
class Executor:
    workspace: Workspace
    daemon: Daemon  # BuildKit (connected only when a solve is needed) and the engine behind it
    infos: Mapping[Label, TargetInfo]
    keys: Mapping[Label, KeyInputs]
    store: LocalStore
    bases: Mapping[str, ResolvedBase] = field(default_factory=dict)
    on_event: EventSink | None = None
    jobs: int = 4
    epoch: int | None = None  # SOURCE_DATE_EPOCH for exported images
    no_cache: bool = False  # ignore the action cache and BuildKit's cache
    remote: RemoteActions | None = None
    _built: dict[Label, BuiltImage] = field(default_factory=dict)

    # ------------------------------------------------------------------ running

    def run(self, requested: Sequence[Label]) -> list[TargetOutcome]:
        jobs = {j.label: j for j in plan(requested, self.infos)}
        results = run_parallel(list(jobs), {k: j.after for k, j in jobs.items()},
                               lambda label: self._run_job(jobs[label]), self.jobs)
        return [results[label] for label in sorted(results)]

    def client(self):
        return self.daemon.client()

    def _run_job(self, job: Job) -> TargetOutcome:
        key = self.keys[job.label].key
        if job.kind == "write":
            key = self._output_key(job.label, key)
        with self.store.lock(key):
            if job.kind == "write":
                return self._write(job.label, key)
            return self._image_or_stage(job.label, key)

    # ------------------------------------------------------------------ images and stages

    def _image_or_stage(self, label: Label, key: str) -> TargetOutcome:
        info = self.infos[label]
        t0 = time.monotonic()
        if not self.no_cache:
            record = self.store.get(key)
            if record is not None and self._usable(info, record):
                return self._outcome(info, record, cached=True, t0=t0, source="local-cache")
            record = self.remote.fetch(key, self._base_diff_ids(info), info.image.name if info.image else None) \
                if self.remote else None
            if record is not None and self._restored_from_remote(info, record):
                self.store.put(record, self.workspace.name)
                return self._outcome(info, record, cached=True, t0=t0, source="remote-cache")
        keep_blobs = info.image is not None and self.remote is not None and self.remote.upload
        with tempfile.TemporaryDirectory(prefix="mbuild-export-") as tmp:
            archive = Path(tmp) / "image.tar" if keep_blobs else None
            result = self._solve(label, info, archive)
            blobs: tuple = ()
            if archive is not None:
                digest, found = ingest_archive(self.store, archive)
                blobs = tuple(found) if digest == result.manifest_digest else ()
        record = ActionRecord(
            key=key, label=str(label), kind=info.kind,
            image=info.image.name if info.image else None,
            manifest_digest=result.manifest_digest if info.image else None,
            blobs=blobs, inputs=self.keys[label].doc, created=time.time(),
        )
        self.store.put(record, self.workspace.name)
        if self.remote is not None:
            self.remote.publish(record)
        return self._outcome(info, record, cached=result.all_cached, t0=t0)

    def _usable(self, info: TargetInfo, record: ActionRecord) -> bool:
        """Whether a cached result stands: its image is in the engine, or restored into it."""
        engine = self.daemon.engine
        if engine is None:
            return info.image is None  # a standalone buildkitd: its image store cannot be asked
        return self._still_there(info, record, engine) or \
            restore_image(self.store, engine, record, self._base_diff_ids(info))

    def _restored_from_remote(self, info: TargetInfo, record: ActionRecord) -> bool:
        if self._usable(info, record):
            return True
        # The engine may lack the base layers after all: fetch them, try once more.
        return self.remote.fetch_blobs(record) and self._usable(info, record)

    def _base_diff_ids(self, info: TargetInfo) -> tuple[str, ...]:
        base = self.bases.get(info.image.base) if info.image is not None and info.image.base else None
        return base.diff_ids if base else ()

    def _still_there(self, info: TargetInfo, record: ActionRecord, engine) -> bool:
        """Whether a cached result is usable as is (restoring a renamed image)."""
        if info.image is None:
            return True  # a stage lives in BuildKit's cache; nothing to check
        if not record.manifest_digest:
            return False
        if engine.image_id(info.image.name) == record.manifest_digest:
            return True
        if engine.image_id(record.manifest_digest) == record.manifest_digest:
            engine.tag(record.manifest_digest, info.image.name)  # still stored, under another name
            return True
        return False

    def _outcome(self, info: TargetInfo, record: ActionRecord, cached: bool, t0: float,
                 source: str = "solve") -> TargetOutcome:
        if info.image is not None:
            self._built[info.label] = BuiltImage(info.label, info.image.name, record.manifest_digest or "", info.image)
        return TargetOutcome(info.label, info.kind, record.image, record.manifest_digest, cached,
                             tuple(record.files), time.monotonic() - t0, record.key, source)

    def _solve(self, label: Label, info: TargetInfo, archive: Path | None = None):
        # Imported here: gRPC is only needed when something is built, and a
        # no-op build must not pay for importing it.
        from buildkit.client import SolveRequest

        exports = []
        if info.image is not None:
            base = self.bases.get(info.image.base) if info.image.base else None
            load = exporters.load_into_docker(
                info.image.name, info.stage.image_config(), epoch=self.epoch,
                containerd_store="image" in self.client().exporters(),
                base_diff_ids=base.diff_ids if base else ())
            exports.append(load)
            if archive is not None:  # the same image as OCI blobs, for the caches
                attrs = {k: v for k, v in load.attrs.items() if k not in ("name", "unpack")}
                exports.append(exporters.Export("oci", attrs, archive))
        sink = (lambda ev: self.on_event(label, ev)) if self.on_event else None
        return self.client().solve(
            SolveRequest(
                definition=info.stage,
                exports=tuple(exports),
                local_dirs=self.local_dirs(),
                secrets=self.secrets(),
                shared_key=f"mbuild:{self.workspace.root}",
                no_cache=self.no_cache,
                cache_imports=self._layer_cache(self.workspace.cache.buildkit_imports, label),
                cache_exports=self._layer_cache(self.workspace.cache.buildkit_exports, label),
            ),
            on_event=sink,
        )

    def _layer_cache(self, entries, label: Label) -> tuple:
        """BuildKit cache import/export entries, with ``{target}`` filled in."""
        from buildkit.client import CacheEntry

        target = f"{label.package.replace('/', '-')}-{label.name}".strip("-")
        out = []
        for entry in entries:
            attrs = {k: v.replace("{target}", target) for k, v in entry.items() if k != "type"}
            for key in ("dest", "src") if entry["type"] == "local" else ():
                if key in attrs:
                    attrs[key] = str(self.workspace.root / attrs[key])  # relative to the workspace
            out.append(CacheEntry(entry["type"], attrs))
        return tuple(out)

    def local_dirs(self) -> dict:
        from buildkit.dockerignore import read_dockerignore
        from buildkit.filesync import LocalDir

        ignore = self.workspace.root / ".dockerignore"
        excludes = read_dockerignore(ignore) if ignore.exists() else []
        return {WORKSPACE_LOCAL: LocalDir(self.workspace.root, exclude=tuple(excludes))}

    def secrets(self) -> dict:
        from buildkit.secrets import SecretSource

        if not self.workspace.ca_bundle:
            return {}
        return {CA_SECRET_ID: SecretSource(CA_SECRET_ID, file=str(self.workspace.ca_bundle))}

    # ------------------------------------------------------------------ generated files

    def _output_path(self, rel: str) -> Path:
        out = Path(self.workspace.output_dir)
        if not out.is_absolute():
            out = self.workspace.root / out
        return out / rel

    def _output_key(self, label: Label, key: str) -> str:
        """A generated file's key also covers what its images were built as:
        an image rebuilt under the same key may get a new digest (a step
        whose output is not byte-reproducible, run again once its cached
        result was gone), and the file must name the one in the engine."""
        import hashlib

        gen = self.infos[label].generated
        digests = [f"{dep}={self._built[dep].manifest_digest}" for dep in sorted(gen.image_deps)]
        return hashlib.sha256("\n".join([key, *digests]).encode()).hexdigest()

    def _restore_file(self, record: ActionRecord | None, rel: str, path: Path) -> bool:
        """Write a cached result's file to ``path``; False when the record has none."""
        data = self.store.read_blob(record.files[rel]) if record is not None and rel in record.files else None
        if data is None:
            return False
        write_atomic(path, data)  # no-op when the file is intact
        return True

    def _write(self, label: Label, key: str) -> TargetOutcome:
        info = self.infos[label]
        t0 = time.monotonic()
        gen = info.generated
        path = self._output_path(gen.path)
        rel = str(path.relative_to(self.workspace.root)) if path.is_relative_to(self.workspace.root) else str(path)
        if not self.no_cache:
            record = self.store.get(key)
            if self._restore_file(record, rel, path):
                return self._outcome(info, record, cached=True, t0=t0, source="local-cache")
            record = self.remote.fetch(key) if self.remote else None
            if self._restore_file(record, rel, path):
                self.store.put(record, self.workspace.name)
                return self._outcome(info, record, cached=True, t0=t0, source="remote-cache")
        data = gen.render({dep: self._built[dep] for dep in gen.image_deps})
        write_atomic(path, data)
        sha = self.store.put_blob_bytes(data)
        record = ActionRecord(key=key, label=str(label), kind=info.kind, files={rel: sha},
                              inputs=self.keys[label].doc, created=time.time())
        self.store.put(record, self.workspace.name)
        if self.remote is not None:
            self.remote.publish(record)
        return self._outcome(info, record, cached=False, t0=t0, source="render")
