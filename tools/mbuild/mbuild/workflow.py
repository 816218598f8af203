"""The phases wired together for the CLI: load, analyse, execute.

Each function is one step a command needs; the CLI stays a thin layer of
argument parsing and printing.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

from .analysis.analyze import analyze, needed_base_images
from .analysis.providers import ResolvedBase, TargetInfo
from .analysis.registry import RuleRegistry
from .errors import ConfigError
from .execution.daemon import Daemon
from .loading.graph import TargetGraph, load_graph
from .loading.labels import Label
from .loading.workspace import Workspace, find_workspace, load_workspace

# SOURCE_DATE_EPOCH when neither WORKSPACE.toml nor the environment sets one:
# fixed (1970-01-01, as Bazel and rules_oci use), so a commit that changes no
# input changes no image, and no key.
DEFAULT_EPOCH = 0


@dataclass(frozen=True)
class Loaded:
    workspace: Workspace
    graph: TargetGraph
    current_package: str
    rules: RuleRegistry


def load_rules(workspace: Workspace) -> RuleRegistry:
    """The rules BUILD files can call: mbuild's built-ins and the workspace's
    rule modules (WORKSPACE.toml ``rules``)."""
    from . import api
    from .analysis.rule_modules import RuleModuleLoader
    from .rules import builtin_registry

    registry = builtin_registry()
    if workspace.rules:
        RuleModuleLoader(workspace.root, api.modules()).load_into(registry, workspace.rules)
    return registry


def rules_here(start: Path) -> RuleRegistry:
    """The rules of the workspace around ``start`` (``mbuild help``); only the
    built-ins outside any workspace."""
    from .rules import builtin_registry

    try:
        root = find_workspace(start)
    except ConfigError:
        return builtin_registry()
    return load_rules(load_workspace(root))


def load(start: Path, patterns: Sequence[str] | None, buildkit: str | None = None,
         cache_dir: Path | None = None) -> Loaded:
    """Find the workspace from ``start`` and load the packages ``patterns`` need.

    ``buildkit`` and ``cache_dir`` override WORKSPACE.toml (CLI options).
    """
    root = find_workspace(start)
    workspace = load_workspace(root)
    if buildkit:
        from buildkit.address import parse_address
        from buildkit.errors import InvalidAddress

        try:
            parse_address(buildkit, environ={})  # a bad address is a usage error, now
        except InvalidAddress as e:
            raise ConfigError(f"--buildkit / MBUILD_BUILDKIT: {e}") from None
        workspace = replace(workspace, buildkit=buildkit)
    if cache_dir:
        workspace = replace(workspace, cache=replace(workspace.cache, dir=Path(cache_dir).resolve()))
    rel = os.path.relpath(start.resolve(), root)
    current = "" if rel == "." else rel.replace(os.sep, "/")
    skip = [Path(workspace.output_dir).name]
    rules = load_rules(workspace)
    graph = load_graph(root, rules.schemas, patterns, current_package=current, skip_dirs=skip)
    return Loaded(workspace, graph, current, rules)


def resolve_labels(loaded: Loaded, patterns: Sequence[str]) -> list[Label]:
    labels: dict[Label, None] = {}  # ordered and unique: a list scan would be quadratic
    for text in patterns:
        for label in loaded.graph.resolve(text, loaded.current_package):
            labels[label] = None
    if not labels:
        raise ConfigError(f"no targets match {' '.join(patterns)}; list them with: mbuild query //...")
    return list(labels)


def warn_unpinned(workspace: Workspace, names: set[str]) -> None:
    for name in sorted(names):
        image = workspace.images.get(name)
        if image is not None and not image.digest:
            print(f"mbuild: warning: base image {name} ({image.ref}) is not pinned to a digest; "
                  f"run `mbuild lock` to pin it in WORKSPACE.toml", file=sys.stderr)


@dataclass(frozen=True)
class Analysed:
    infos: dict[Label, TargetInfo]
    bases: dict[str, ResolvedBase]
    platform: str  # what the LLB and the base images were made for; in every key


def build_platform() -> str:
    """The platform built: the host's (as BuildKit builds by default)."""
    from buildkit.llb import host_platform

    return str(host_platform())


def analyse(loaded: Loaded, labels: Sequence[Label], daemon: Daemon) -> Analysed:
    """Analyse ``labels``, their base images resolved by BuildKit (``daemon``)."""
    from .execution.bases import resolve_bases

    platform = build_platform()
    names = needed_base_images(loaded.graph, labels, loaded.rules)
    known = sorted(n for n in names if n in loaded.workspace.images)  # unknown names fail at file:line in analysis
    bases = resolve_bases(daemon.client(), [loaded.workspace.images[n] for n in known], platform) if known else {}
    infos = analyze(loaded.graph, loaded.workspace, labels, bases, loaded.rules, platform)
    warn_unpinned(loaded.workspace, set(known))
    return Analysed(infos, bases, platform)


def engine_options(epoch: int) -> dict[str, str]:
    """Output-relevant engine options that go into action keys: the epoch
    images are made with is one of them, whichever it is."""
    return {"exporter": "image", "mediatypes": "oci", "source_date_epoch": str(epoch)}


def keys_for(loaded: Loaded, analysed: Analysed, store):
    from .cache.digests import StatCache
    from .execution.build import compute_keys

    stat_cache = StatCache(store.stat_cache_path)
    try:
        return compute_keys(loaded.workspace, analysed.infos, analysed.bases, stat_cache,
                            engine_options(source_date_epoch(loaded.workspace)), analysed.platform)
    finally:
        stat_cache.close()


def explicit_epoch(workspace: Workspace) -> int | None:
    """WORKSPACE.toml's source_date_epoch, else $SOURCE_DATE_EPOCH, else None."""
    if workspace.source_date_epoch is not None:
        return workspace.source_date_epoch
    env = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not env:
        return None
    if not env.isdigit():
        raise ConfigError(f"SOURCE_DATE_EPOCH={env!r}: use seconds since 1970 (e.g. $(git log -1 --format=%ct))")
    return int(env)


def source_date_epoch(workspace: Workspace) -> int:
    """The explicit epoch (see :func:`explicit_epoch`), else :data:`DEFAULT_EPOCH`."""
    explicit = explicit_epoch(workspace)
    return explicit if explicit is not None else DEFAULT_EPOCH


def open_remote(workspace: Workspace, store, url: str | None, upload: bool | None):
    """The remote cache of WORKSPACE.toml (or ``url``), wrapped so failures are misses."""
    from .cache.remote import open_safe_remote
    from .execution.remote import RemoteActions

    url = url or workspace.cache.remote
    if not url:
        return None

    def warn(message: str) -> None:
        print(message if message.startswith("mbuild:") else f"mbuild: warning: {message}", file=sys.stderr)

    try:
        limits = {"timeout": workspace.cache.remote_timeout, "min_rate": workspace.cache.remote_min_rate}
        remote = open_safe_remote(url, warn=warn, instance_name=workspace.cache.remote_instance,
                                  headers=dict(workspace.cache.remote_headers),
                                  **{k: v for k, v in limits.items() if v is not None})
    except ValueError as e:
        raise ConfigError(f"remote cache {url!r}: {e}; use grpc://host:port, grpcs://…, http://host:port/…") from None
    return RemoteActions(remote, store, workspace.cache.remote_upload if upload is None else upload)


def execute(loaded: Loaded, targets: Sequence[Label], on_event, jobs: int, no_cache: bool = False,
            remote_url: str | None = None, remote_upload: bool | None = None):
    from .cache.store import LocalStore
    from .execution.build import Executor

    daemon = Daemon(loaded.workspace.buildkit)
    remote = None
    try:
        analysed = analyse(loaded, targets, daemon)
        store = LocalStore(loaded.workspace.cache.dir, loaded.workspace.cache.max_size)
        keys = keys_for(loaded, analysed, store)
        remote = open_remote(loaded.workspace, store, remote_url, remote_upload)
        executor = Executor(loaded.workspace, daemon, analysed.infos, keys,
                            store, analysed.bases, on_event, jobs, epoch=source_date_epoch(loaded.workspace),
                            no_cache=no_cache, remote=remote)
        outcomes = executor.run(targets)
    finally:
        if remote is not None:
            remote.remote.close()
        daemon.close()
    store.evict()
    return outcomes, analysed, daemon


def write_noop_stamp(loaded: Loaded, analysed: Analysed, daemon: Daemon, outcomes, argv: list[str],
                     lines: list[str]) -> None:
    """Record what this build read and made, for the no-op fast path (mbuild.fastpath)."""
    import hashlib

    from . import fastpath
    from .loading.packages import is_skipped_dir

    root = str(loaded.workspace.root)
    from buildkit.dockerconfig import config_dir

    # The docker config names the current context, and so the engine.
    files = [os.path.join(root, "WORKSPACE.toml"), os.path.join(root, ".dockerignore"),
             str(config_dir() / "config.json")]
    for package in loaded.graph.packages.values():
        files.append(os.path.join(root, package.build_file))
        files.extend(os.path.join(root, bzl) for bzl in package.bzl_files)
    files.extend(os.path.join(root, path) for path in loaded.rules.code_files)  # rule modules and their imports
    for info in analysed.infos.values():
        files.extend(os.path.join(root, src) for src in info.sources)
    skip_extra = [Path(loaded.workspace.output_dir).name]
    dirs = fastpath.glob_dirs(root, list(loaded.graph.packages), lambda d: is_skipped_dir(d, skip_extra))
    engine = daemon.engine
    if engine is None or engine.host.scheme != "unix":
        return  # the fast path checks images over a unix socket only
    refs = [loaded.workspace.images[name].pinned_ref for name in analysed.bases]
    ids = fastpath.engine_image_ids(refs, engine.host.path)
    if None in ids:
        return
    images = dict(zip(refs, ids))
    outputs = {}
    for o in outcomes:
        if o.image and o.manifest_digest:
            images[o.image] = o.manifest_digest
        for rel in o.files:
            path = os.path.join(root, rel)
            with open(path, "rb") as f:
                outputs[path] = hashlib.sha256(f.read()).hexdigest()
    report = {"records": [dict(o.to_json(), cached=True, seconds=0.0, source="noop-stamp") for o in outcomes],
              "lines": lines}
    fastpath.write_stamp(argv, os.getcwd(), files, dirs, engine.host.path, images, outputs, report)


def explain_target(loaded: Loaded, target: Label) -> str:
    """A target's key inputs, and what changed since its last recorded build
    (the record's inputs against today's: a generated file's record is stored
    under a key that also covers its images' digests, so keys alone differ)."""
    from .cache.keys import KeyInputs, diff_inputs, render
    from .cache.store import LocalStore

    daemon = Daemon(loaded.workspace.buildkit)
    try:
        analysed = analyse(loaded, [target], daemon)
    finally:
        daemon.close()
    store = LocalStore(loaded.workspace.cache.dir)
    inputs = keys_for(loaded, analysed, store)[target]
    lines = [f"{target}: key {inputs.key}", render(inputs.doc)]
    last = store.last(loaded.workspace.name, str(target))
    if last is None:
        lines.append(f"no earlier build of {target} is recorded in {store.root}")
    elif KeyInputs(last.inputs).key == inputs.key:
        lines.append("unchanged since the last build: a build answers from the cache")
    else:
        lines.append(f"changed since the last build (key {KeyInputs(last.inputs).key[:16]}…):")
        lines.extend(f"  {line}" for line in diff_inputs(last.inputs, inputs.doc))
    return "\n".join(lines) + "\n"


def affected(loaded: Loaded, since: str, patterns: Sequence[str] = ("//...",)) -> list[Label]:
    """Targets matching ``patterns`` whose inputs differ between ``since`` and the working tree."""
    from .affected import affected_targets
    from .vcs import changed_files

    universe = resolve_labels(loaded, patterns)
    # File inputs only: no engine needed.
    infos = analyze(loaded.graph, loaded.workspace, universe, {}, loaded.rules, build_platform())
    changed = changed_files(loaded.workspace.root, since)
    wanted = set(universe)
    return [label for label in affected_targets(loaded.graph, infos, changed) if label in wanted]
