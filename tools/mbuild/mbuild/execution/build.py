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

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Mapping, Sequence

from ..analysis.context import CA_SECRET_ID, WORKSPACE_LOCAL
from ..analysis.providers import BuiltImage, ResolvedBase, TargetInfo
from buildkit import exporters
from ..cache.digests import StatCache
from ..loading.sources import SourceError
from ..errors import BuildFailure, ConfigError
from ..cache.keys import KeyInputs, key_inputs
from ..cache.oci import has_blobs, ingest_archive
from ..cache.store import ActionRecord, LocalStore
from ..loading.labels import Label
from ..loading.workspace import Workspace
from .daemon import Daemon
from .engine import EngineError
from .image_outputs import Pushed, TarballOutput, has_registry, push_image, write_tarball
from .outputs import write_atomic
from .remote import RemoteActions, restore_image
from .plan import Job, plan, stage_closure
from .scheduler import run_parallel
from .secrets import Redactor, declared_sources, secret_values

EventSink = Callable[[Label, object], None]


@dataclass(frozen=True)
class BuildOptions:
    """What the command line asks of a build besides the targets (buildx's names)."""

    push: bool = False  # --push: every image whose name names a registry
    outputs: tuple[TarballOutput, ...] = ()  # --output type=oci|docker,dest=FILE
    secrets: Mapping = field(default_factory=dict)  # --secret: SecretSource by id, over declared sources
    ssh: Mapping = field(default_factory=dict)  # --ssh: SSHAgent by id


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
    platforms: tuple[str, ...] = ()  # what an image was built for (several: an image index)
    pushed: Pushed | None = None
    outputs: tuple[str, ...] = ()  # tarballs written (--output)

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
            "platforms": list(self.platforms),
            "pushed": self.pushed.to_json() if self.pushed else None,
            "outputs": list(self.outputs),
        }


def compute_keys(workspace: Workspace, infos: Mapping[Label, TargetInfo], bases: Mapping[str, ResolvedBase],
                 stat_cache: StatCache, engine_options: Mapping[str, str], platform: str) -> dict[Label, KeyInputs]:
    """Key inputs of every analysed target (``infos`` is in dependency order),
    built for ``platform`` (the one analysis made the LLB for)."""
    sources = sorted({path for info in infos.values() for path in info.sources})
    try:
        files = stat_cache.digest_files(workspace.root, sources)
    except (FileNotFoundError, SourceError) as e:
        rel = e.path if isinstance(e, SourceError) else e.filename  # workspace-relative (digest_files says which)
        why = e.reason if isinstance(e, SourceError) else "does not exist; create it or fix the target's srcs"
        owner = next((i for i in infos.values() if rel in i.sources), None)
        where = f"{owner.location}: {owner.label}: " if owner and owner.location else ""
        raise ConfigError(f"{where}source file {rel} {why}") from None
    base_digests = {name: b.digest for name, b in bases.items()}
    out: dict[Label, KeyInputs] = {}
    for label, info in infos.items():
        dep_keys = {d: out[d].key for d in info.deps}
        out[label] = key_inputs(info, files, dep_keys, base_digests, platform, engine_options)
    return out


def familiar_name(ref: str) -> str:
    """An image reference as the Dockerfile frontend names contexts: Docker
    Hub's ``docker.io/library/`` left out, and a ``:latest`` tag."""
    from buildkit.llb import normalize_image_ref

    full = normalize_image_ref(ref)
    for prefix in ("docker.io/library/", "docker.io/"):
        if full.startswith(prefix):
            full = full[len(prefix):]
            break
    return full.removesuffix(":latest")


def job_keys(per_platform: Mapping[str, Mapping[Label, KeyInputs]], platforms: Mapping[Label, tuple[str, ...]],
             default: str) -> dict[Label, KeyInputs]:
    """The action key of each target's job: its key for the one platform it
    is built for, or, for several (one image index), a key over each
    platform's key (every one of which carries its platform)."""
    from ..cache.keys import KEY_SCHEMA

    out: dict[Label, KeyInputs] = {}
    for label, inputs in per_platform[default].items():
        wanted = platforms.get(label, (default,))
        if len(wanted) == 1:
            out[label] = per_platform[wanted[0]][label]
            continue
        first = per_platform[wanted[0]][label].doc
        out[label] = KeyInputs({"schema": KEY_SCHEMA, "rule": first["rule"], "platforms": list(wanted),
                                "variants": {p: per_platform[p][label].key for p in wanted},
                                "engine": first["engine"]})
    return out


@dataclass
class Executor:
    workspace: Workspace
    daemon: Daemon  # BuildKit (connected only when a solve is needed) and the engine behind it
    infos: Mapping[Label, TargetInfo]  # at the build's default platform
    keys: Mapping[Label, KeyInputs]  # each job's key (job_keys)
    store: LocalStore
    bases: Mapping[str, ResolvedBase] = field(default_factory=dict)  # at the default platform
    on_event: EventSink | None = None
    jobs: int = 4
    epoch: int | None = None  # SOURCE_DATE_EPOCH for exported images
    no_cache: bool = False  # ignore the action cache and BuildKit's cache
    remote: RemoteActions | None = None
    options: BuildOptions = field(default_factory=BuildOptions)
    platform: str = ""  # the default platform
    variants: Mapping[str, Mapping[Label, TargetInfo]] = field(default_factory=dict)  # platform -> infos
    platform_bases: Mapping[str, Mapping[str, ResolvedBase]] = field(default_factory=dict)  # platform -> bases
    unresolved: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # platform -> base -> why
    target_platforms: Mapping[Label, tuple[str, ...]] = field(default_factory=dict)
    _built: dict[Label, BuiltImage] = field(default_factory=dict)
    _local_hits: list = field(default_factory=list)

    # ------------------------------------------------------------------ running

    def run(self, requested: Sequence[Label]) -> list[TargetOutcome]:
        jobs = {j.label: j for j in plan(requested, self.infos)}
        self._check_outputs([label for label in jobs if self.infos[label].image is not None])
        results = run_parallel(list(jobs), {k: j.after for k, j in jobs.items()},
                               lambda label: self._run_job(jobs[label]), self.jobs)
        if self.remote is not None and self.remote.upload and self._local_hits:
            self._upload_local_hits()
        return [results[label] for label in sorted(results)]

    def _check_outputs(self, images: list[Label]) -> None:
        for output in self.options.outputs:
            if len(images) > 1 and "{target}" not in output.dest:
                raise ConfigError(f"--output type={output.type},dest={output.dest}: this build makes "
                                  f"{len(images)} images; put {{target}} in dest (e.g. dest=out/{{target}}.tar)")
            if not images:
                raise ConfigError(f"--output type={output.type}: none of the targets is an image")

    def client(self):
        return self.daemon.client()

    def _platforms(self, label: Label) -> tuple[str, ...]:
        return self.target_platforms.get(label, (self.platform,))

    def _variant(self, label: Label, platform: str) -> TargetInfo:
        return self.variants[platform][label] if platform in self.variants else self.infos[label]

    def _run_job(self, job: Job) -> TargetOutcome:
        key = self.keys[job.label].key
        if job.kind == "write":
            key = self._output_key(job.label, key)
        with self.store.lock(key):
            if job.kind == "write":
                return self._write(job.label, key)
            return self._deliver(job.label, self._image_or_stage(job.label, key))

    # ------------------------------------------------------------------ images and stages

    def _image_or_stage(self, label: Label, key: str) -> TargetOutcome:
        info = self.infos[label]
        platforms = self._platforms(label)
        single = len(platforms) == 1
        t0 = time.monotonic()
        if not self.no_cache:
            record = self.store.get(key)
            if record is not None and self._usable(info, record, platforms[0]):
                if single:
                    self._local_hits.append(record)
                return self._outcome(info, record, cached=True, t0=t0, source="local-cache")
            record = self.remote.fetch(key, self._base_diff_ids(info, platforms[0]),
                                       info.image.name if info.image else None) \
                if self.remote and single else None
            if record is not None and self._restored_from_remote(info, record, platforms[0]):
                self.store.put(record, self.workspace.name)
                return self._outcome(info, record, cached=True, t0=t0, source="remote-cache")
        self._check_bases(label, platforms)
        # The blobs are kept for the remote cache; an image index is cached locally only.
        keep_blobs = info.image is not None and self.remote is not None and self.remote.upload and single
        with self.store.temporary_dir("export") as tmp:
            archive = Path(tmp) / "image.tar" if keep_blobs else None
            result = self._solve(label, info, platforms, archive)
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

    def _check_bases(self, label: Label, platforms: tuple[str, ...]) -> None:
        """Every base image the job's steps start from was resolved for each of its platforms."""
        for platform in platforms:
            missing = self.unresolved.get(platform) or {}
            if not missing:
                continue
            for info in self._job_infos(label, platform):
                for base in info.bases:
                    if base.name in missing:
                        raise BuildFailure(f"{info.location}: {info.label}: base image {base.name} ({base.ref}) "
                                           f"has no {platform} image in BuildKit or a registry it can reach "
                                           f"({missing[base.name]}); build {label} for platforms it has, or "
                                           f"load a multi-platform image")

    def _job_infos(self, label: Label, platform: str) -> list[TargetInfo]:
        """The target and the stages its solve builds, as analysed for ``platform``."""
        variant = self.variants.get(platform, self.infos)
        return [variant[label], *(variant[d] for d in sorted(stage_closure(label, variant)))]

    def _usable(self, info: TargetInfo, record: ActionRecord, platform: str) -> bool:
        """Whether a cached result stands: its image is in the engine, or restored into it."""
        engine = self.daemon.engine
        if engine is None:
            return info.image is None  # a standalone buildkitd: its image store cannot be asked
        return self._still_there(info, record, engine) or \
            restore_image(self.store, engine, record, self._base_diff_ids(info, platform))

    def _restored_from_remote(self, info: TargetInfo, record: ActionRecord, platform: str) -> bool:
        if self._usable(info, record, platform):
            return True
        # The engine may lack the base layers after all: fetch them, try once more.
        return self.remote.fetch_blobs(record) and self._usable(info, record, platform)

    def _base_diff_ids(self, info: TargetInfo, platform: str) -> tuple[str, ...]:
        bases = self.platform_bases.get(platform, self.bases)
        base = bases.get(info.image.base) if info.image is not None and info.image.base else None
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
        platforms = self._platforms(info.label) if info.image is not None else ()
        return TargetOutcome(info.label, info.kind, record.image, record.manifest_digest, cached,
                             tuple(record.files), time.monotonic() - t0, record.key, source, platforms)

    # ------------------------------------------------------------------ pushes and tarballs

    def _deliver(self, label: Label, outcome: TargetOutcome) -> TargetOutcome:
        """Push the image and write its tarballs, as the options and its ``push`` attribute say."""
        info = self.infos[label]
        if info.image is None or not outcome.manifest_digest:
            return outcome
        name, digest, engine = info.image.name, outcome.manifest_digest, self.daemon.engine
        pushed = None
        if info.image.push or (self.options.push and has_registry(name)):
            pushed = push_image(engine, name, digest)
        written = tuple(str(write_tarball(engine, name, digest, output, label.slug))
                        for output in self.options.outputs)
        return replace(outcome, pushed=pushed, outputs=written)

    # ------------------------------------------------------------------ remote upload of local hits

    def _upload_local_hits(self) -> None:
        """Give the remote cache the results this build found locally and it
        lacks (a CI runner with a warm local cache fills the shared remote):
        one FindMissing for the whole build, then a lookup of each result that
        seems to be there (:meth:`RemoteActions.publish_hits`).
        An image whose blobs the store does not hold is taken from the engine."""
        if not self.remote.reachable:
            return  # the remote failed earlier in this build: nothing to save images for
        records = []
        for record in self._local_hits:
            if record.image and not (record.blobs and has_blobs(self.store, list(record.blobs))):
                record = self._blobs_from_engine(record)
                if record is None:
                    continue
            records.append(record)
        self.remote.publish_hits(records)

    def _blobs_from_engine(self, record: ActionRecord) -> ActionRecord | None:
        """``record`` with its image's blobs, from the engine's ``docker save``, in the store."""
        engine = self.daemon.engine
        if engine is None:
            return None
        with self.store.temporary_dir("upload") as tmp:
            archive = Path(tmp) / "image.tar"
            try:
                with open(archive, "wb") as out:
                    engine.save(record.image, out)
                digest, blobs = ingest_archive(self.store, archive)
            except (EngineError, BuildFailure, OSError, KeyError, ValueError):
                return None
        if digest != record.manifest_digest:
            return None
        record = replace(record, blobs=tuple(blobs))
        self.store.put(record, self.workspace.name)
        return record

    # ------------------------------------------------------------------ solving

    def _solve(self, label: Label, info: TargetInfo, platforms: tuple[str, ...], archive: Path | None = None):
        # Imported here: gRPC is only needed when something is built, and a
        # no-op build must not pay for importing it.
        from buildkit.client import SolveRequest
        from buildkit.secrets import SecretError
        from buildkit.sshforward import SSHError

        variant = self._variant(label, platforms[0])
        exports = []
        if info.image is not None:
            single = len(platforms) == 1 and info.dockerfile is None
            base = self.platform_bases.get(platforms[0], self.bases).get(info.image.base) \
                if info.image.base and single else None
            load = exporters.load_into_docker(
                info.image.name, variant.stage.image_config() if single else None, epoch=self.epoch,
                containerd_store="image" in self.client().exporters(),
                base_diff_ids=base.diff_ids if base else ())
            exports.append(load)
            if archive is not None:  # the same image as OCI blobs, for the caches
                attrs = {k: v for k, v in load.attrs.items() if k not in ("name", "unpack")}
                exports.append(exporters.Export("oci", attrs, archive))
        try:
            secrets, ssh = declared_sources(
                [i for p in platforms for i in self._job_infos(label, p)], self.workspace.root,
                self.options.secrets, self.options.ssh)
            redactor = Redactor(secret_values(secrets))
        except (SecretError, SSHError) as e:
            raise _unreadable_source(info, label, e) from None
        sink = None
        if self.on_event:
            sink = (lambda ev: self.on_event(label, redactor.event(ev))) if redactor else \
                (lambda ev: self.on_event(label, ev))
        common = dict(
            exports=tuple(exports),
            local_dirs=self.local_dirs(),
            secrets={**self.secrets(), **secrets},
            ssh=ssh,
            shared_key=f"mbuild:{self.workspace.root}",
            no_cache=self.no_cache,
            cache_imports=self._layer_cache(self.workspace.cache.buildkit_imports, label),
            cache_exports=self._layer_cache(self.workspace.cache.buildkit_exports, label),
        )
        try:
            if info.dockerfile is not None:
                return self.client().solve(self._dockerfile_request(info, platforms, common), on_event=sink)
            if len(platforms) == 1:
                return self.client().solve(SolveRequest(definition=variant.stage, **common), on_event=sink)
            from buildkit.multiplatform import platform_build

            states = {p: self._variant(label, p).stage for p in platforms}
            return self.client().build(platform_build(states), SolveRequest(**common), on_event=sink)
        except (SecretError, SSHError) as e:  # a source that cannot be read now: say which target wants it
            raise _unreadable_source(info, label, e) from None
        except BaseException as e:
            raise redactor.error(e) if redactor else e

    def _dockerfile_request(self, info: TargetInfo, platforms: tuple[str, ...], common: dict):
        """The Dockerfile frontend's request for a `dockerfile` target: its
        context served as the key saw it (the context's .dockerignore
        applied), each FROM image pinned to the digest in the key."""
        from buildkit.client import SolveRequest
        from buildkit.dockerfile import CONTEXT, DOCKERFILE, FRONTEND, frontend_attrs
        from buildkit.dockerignore import read_dockerignore
        from buildkit.filesync import LocalDir
        from buildkit.llb import host_platform

        build = info.dockerfile
        root = self.workspace.root
        pins = {}
        for ref, base in build.bases.items():
            for p in platforms:  # the frontend looks up context:NAME::PLATFORM first: the FROM's platform
                fixed = build.base_platforms.get(ref, "")
                at = p if not fixed else str(host_platform()) if fixed == "build" else fixed
                digest = self.platform_bases.get(p, self.bases)[base.name].digest
                pins[f"context:{familiar_name(ref)}::{at}"] = f"docker-image://{base.ref.split('@', 1)[0]}@{digest}"
        attrs = frontend_attrs(Path(build.dockerfile).name, build.target, build.build_args,
                               platforms if len(platforms) > 1 or platforms[0] != self.platform else (),
                               labels=build.labels, extra=pins)
        name = Path(build.dockerfile).name
        # The context is exactly the files the key covers (its ignore file and the
        # workspace's .dockerignore applied), and the ignore file the frontend
        # reads from it: the frontend can read nothing else.
        patterns = read_dockerignore(root / build.ignore_file) if build.ignore_file else []
        prefix = f"{build.context}/" if build.context else ""
        include = [f.removeprefix(prefix) for f in build.context_files]
        if build.ignore_file and build.ignore_file.startswith(prefix):
            include.append(build.ignore_file.removeprefix(prefix))
        # An empty include list would mean "everything": name one no file has.
        local = {CONTEXT: LocalDir(root / build.context if build.context else root,
                                   include=tuple(include) or (".mbuild-empty-context",), exclude=tuple(patterns)),
                 DOCKERFILE: LocalDir(root / Path(build.dockerfile).parent, include=(name, f"{name}.dockerignore"))}
        common = {k: v for k, v in common.items() if k != "local_dirs"}
        return SolveRequest(frontend=FRONTEND, frontend_attrs=attrs, local_dirs=local, **common)

    def _layer_cache(self, entries, label: Label) -> tuple:
        """BuildKit cache import/export entries, with ``{target}`` filled in."""
        from buildkit.client import CacheEntry

        target = label.slug
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
        return self.workspace.output_path / rel

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
                self._local_hits.append(record)  # the remote may lack it (an upload killed, say)
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


def _unreadable_source(info: TargetInfo, label: Label, err: Exception) -> ConfigError:
    """A secret or SSH agent that cannot be read when the solve starts, at the target that wants it."""
    return ConfigError(f"{info.location}: {label}: {err}; set it, or give --secret id=… / --ssh id=… "
                       f"on the command line")
