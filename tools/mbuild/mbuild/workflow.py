"""The phases wired together for the CLI: load, analyse, execute.

Each function is one step a command needs; the CLI stays a thin layer of
argument parsing and printing.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

from .analysis.analyze import analyze, needed_base_images
from .analysis.providers import ResolvedBase, TargetInfo
from .analysis.registry import RuleRegistry
from .errors import ConfigError
from .execution.daemon import Daemon
from .loading.graph import TargetGraph, load_graph
from .loading.labels import Label
from .loading.workspace import Workspace, buildkit_address_problem, find_workspace, load_workspace

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
        why = buildkit_address_problem(buildkit)  # a bad address is a usage error, now
        if why:
            raise ConfigError(f"--buildkit / MBUILD_BUILDKIT: {why}")
        workspace = replace(workspace, buildkit=buildkit)
    if cache_dir:
        workspace = replace(workspace, cache=replace(workspace.cache, dir=Path(cache_dir).resolve()))
    rel = os.path.relpath(start.resolve(), root)
    current = "" if rel == "." else rel.replace(os.sep, "/")
    skip = [Path(workspace.output_dir).name]
    rules = load_rules(workspace)
    graph = load_graph(root, rules.schemas, patterns, current_package=current, skip_dirs=skip)
    return Loaded(workspace, graph, current, rules)


def start_daemon(start: Path, buildkit: str | None = None, platforms: Sequence[str] = ()) -> Daemon | None:
    """A build's daemon, started early (:meth:`Daemon.start`): connecting and
    resolving every base image WORKSPACE.toml names, for the build's default
    platform, while the command goes on. None when the workspace cannot be
    read yet (loading says why, at file:line)."""
    try:
        workspace = load_workspace(find_workspace(start))
    except ConfigError:
        return None
    address = buildkit or workspace.buildkit
    if buildkit and buildkit_address_problem(buildkit):
        return None
    daemon = Daemon(address)
    daemon.start(workspace.images.values(), platforms[0] if platforms else build_platform())
    return daemon


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
    infos: dict[Label, TargetInfo]  # at the default platform
    bases: dict[str, ResolvedBase]  # at the default platform
    platform: str  # the default platform: the LLB and the base images of `infos` were made for it; in every key
    # Every platform the build needs (the default included): its analysis, its
    # resolved bases and the bases it could not resolve (name -> why).
    variants: dict[str, dict[Label, TargetInfo]] = field(default_factory=dict)
    variant_bases: dict[str, dict[str, ResolvedBase]] = field(default_factory=dict)
    unresolved: dict[str, dict[str, str]] = field(default_factory=dict)
    target_platforms: dict[Label, tuple[str, ...]] = field(default_factory=dict)  # what each target is built for


def build_platform() -> str:
    """The platform built: the host's (as BuildKit builds by default)."""
    from buildkit.llb import host_platform

    return str(host_platform())


def parse_platforms(text: str | None, where: str = "--platform") -> tuple[str, ...]:
    """``linux/amd64,linux/arm64`` -> the normalised platforms, in order, once each."""
    from buildkit.llb.platform import Platform

    out: dict[str, None] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        try:
            if "/" not in item:
                raise ValueError("not os/arch")
            out[str(Platform.parse(item.strip()).normalized())] = None
        except ValueError as e:
            raise ConfigError(f"{where}: {item.strip()!r}: {e}; use os/arch[/variant], e.g. linux/arm64") from None
    return tuple(out)


def target_platforms(loaded: Loaded, labels: Sequence[Label], cli: Sequence[str], default: str
                     ) -> dict[Label, tuple[str, ...]]:
    """What each target of the closure is built for: ``--platform``, else its
    ``platforms`` attribute, else the default platform."""
    out = {}
    for label in loaded.graph.topological_order(labels):
        target = loaded.graph.targets[label]
        decl = loaded.rules[target.kind].schema.attrs.get("platforms")
        own: tuple[str, ...] = ()
        if not cli and decl is not None and decl.type == "string_list" and target.attrs.get("platforms"):
            own = parse_platforms(",".join(target.attrs["platforms"]),
                                  f"{target.location}: {label}: attribute 'platforms'")
        out[label] = tuple(cli) or own or (default,)
    return out


def analyse(loaded: Loaded, labels: Sequence[Label], daemon: Daemon, platforms: Sequence[str] = ()) -> Analysed:
    """Analyse ``labels`` for every platform they are built for (``platforms``:
    ``--platform``), base images resolved by BuildKit (``daemon``) for each."""
    from .execution.bases import raise_missing

    default = platforms[0] if platforms else build_platform()
    wanted = target_platforms(loaded, labels, platforms, default)
    every = [default, *sorted({p for ps in wanted.values() for p in ps} - {default})]
    names = needed_base_images(loaded.graph, labels, loaded.rules)
    known = sorted(n for n in names if n in loaded.workspace.images)  # unknown names fail at file:line in analysis
    images = [loaded.workspace.images[n] for n in known]
    variants, variant_bases, unresolved = {}, {}, {}
    for platform in every:
        bases, missing = daemon.resolve(images, platform) if images else ({}, {})
        if platform == default:
            raise_missing(images, missing, daemon.address)
            missing = {}
        infos = analyze(loaded.graph, loaded.workspace, labels, bases, loaded.rules, platform)
        variants[platform], variant_bases[platform], unresolved[platform] = infos, dict(bases), dict(missing)
    _resolve_dockerfile_bases(daemon, variants, variant_bases, unresolved)
    return Analysed(variants[default], variant_bases[default], default, variants, variant_bases, unresolved,
                    wanted)


def _resolve_dockerfile_bases(daemon: Daemon, variants, variant_bases, unresolved) -> None:
    """The images `dockerfile` targets' FROM lines name, resolved for each
    platform (a FROM --platform for the one it names), into that platform's bases."""
    from .execution.bases import try_resolve_bases

    for platform, infos in variants.items():
        wanted: dict[str, list] = {}
        for info in infos.values():
            build = info.dockerfile
            for ref, base in (build.bases.items() if build is not None else ()):
                at = build.base_platforms.get(ref, "")
                at = platform if not at else build_platform() if at == "build" else at  # BUILDPLATFORM: the host
                wanted.setdefault(at, []).append(base)
        for at, images in wanted.items():
            unique = list({b.name: b for b in images}.values())
            found, missing = try_resolve_bases(daemon.client(), unique, at)
            variant_bases[platform].update(found)
            unresolved[platform].update(missing)


def engine_options(epoch: int) -> dict[str, str]:
    """Output-relevant engine options that go into action keys: the epoch
    images are made with is one of them, whichever it is."""
    return {"exporter": "image", "mediatypes": "oci", "source_date_epoch": str(epoch)}


def keys_for(loaded: Loaded, analysed: Analysed, store):
    """Each target's job key (:func:`mbuild.execution.build.job_keys`): its
    key for each platform it is built for, each carrying its platform."""
    from .cache.digests import StatCache
    from .execution.build import compute_keys, job_keys

    stat_cache = StatCache(store.stat_cache_path)
    options = engine_options(source_date_epoch(loaded.workspace))
    try:
        per_platform = {p: compute_keys(loaded.workspace, infos, analysed.variant_bases.get(p, analysed.bases),
                                        stat_cache, options, p)
                        for p, infos in (analysed.variants or {analysed.platform: analysed.infos}).items()}
    finally:
        stat_cache.close()
    return job_keys(per_platform, analysed.target_platforms, analysed.platform)


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
    said = "--remote (or MBUILD_REMOTE_CACHE)" if url else "WORKSPACE.toml cache.remote"
    url = url or workspace.cache.remote
    if not url:
        return None  # (before the imports: a build without a remote does not pay for them)
    from .cache.remote import open_safe_remote
    from .execution.remote import RemoteActions

    def warn(message: str) -> None:
        print(message if message.startswith("mbuild:") else f"mbuild: warning: {message}", file=sys.stderr)

    try:
        limits = {"timeout": workspace.cache.remote_timeout, "min_rate": workspace.cache.remote_min_rate}
        remote = open_safe_remote(url, warn=warn, instance_name=workspace.cache.remote_instance,
                                  headers=dict(workspace.cache.remote_headers),
                                  **{k: v for k, v in limits.items() if v is not None})
    except ValueError as e:
        raise ConfigError(f"{said}: {e}; use grpc://host:port, grpcs://…, http://host:port/…") from None
    return RemoteActions(remote, store, workspace.cache.remote_upload if upload is None else upload)


def execute(loaded: Loaded, targets: Sequence[Label], on_event, jobs: int, no_cache: bool = False,
            remote_url: str | None = None, remote_upload: bool | None = None, options=None,
            platforms: Sequence[str] = (), daemon: Daemon | None = None):
    """Build ``targets``: ``options`` (:class:`mbuild.execution.build.BuildOptions`)
    are the push, tarball, secret and SSH options; ``platforms`` is ``--platform``;
    ``daemon`` one :func:`start_daemon` started (used if it is the workspace's)."""
    from .cache.store import LocalStore
    from .execution.build import BuildOptions, Executor

    if daemon is None or daemon.text != loaded.workspace.buildkit:
        if daemon is not None:
            daemon.close()
        daemon = Daemon(loaded.workspace.buildkit)
    remote = store = None
    try:
        analysed = analyse(loaded, targets, daemon, platforms)
        store = LocalStore(loaded.workspace.cache.dir, loaded.workspace.cache.max_size)
        keys = keys_for(loaded, analysed, store)
        remote = open_remote(loaded.workspace, store, remote_url, remote_upload)
        executor = Executor(loaded.workspace, daemon, analysed.infos, keys,
                            store, analysed.bases, on_event, jobs, epoch=source_date_epoch(loaded.workspace),
                            no_cache=no_cache, remote=remote, options=options or BuildOptions(),
                            platform=analysed.platform, variants=analysed.variants,
                            platform_bases=analysed.variant_bases, unresolved=analysed.unresolved,
                            target_platforms=analysed.target_platforms)
        outcomes = executor.run(targets)
        warn_unpinned(loaded.workspace, set(analysed.bases))  # after the build: never before an error
        store.evict()
    finally:
        if remote is not None:
            remote.remote.close()
        daemon.close()
        if store is not None:
            store.close()  # leave the store's users (a server's child ends with os._exit)
    return outcomes, analysed, daemon


def write_noop_stamp(loaded: Loaded, analysed: Analysed, daemon: Daemon, outcomes, argv: list[str],
                     lines: list[str], started_ns: int) -> None:
    """Record what this build (begun at ``started_ns``) read and made, for the
    no-op fast path and the one-change path (mbuild.fastpath, mbuild.delta)."""
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
    variants = list((analysed.variants or {analysed.platform: analysed.infos}).values())
    skip_extra = [Path(loaded.workspace.output_dir).name]
    dirs = fastpath.glob_dirs(root, list(loaded.graph.packages), lambda d: is_skipped_dir(d, skip_extra))
    for info in (info for infos in variants for info in infos.values()):
        build = info.dockerfile  # analysis reads a Dockerfile (its FROM lines), its ignore file, its context's folders
        if build is not None:
            files.extend(os.path.join(root, p) for p in (build.dockerfile, *build.looked_for))
            dirs.extend(os.path.join(root, d) for d in build.listed_dirs)
    # Every platform's (a rule may name sources by platform); a target's
    # sources include its dependencies': each file once, not once per dependant.
    sources = [os.path.join(root, src) for src in {src for infos in variants for i in infos.values() for src in i.sources}]
    engine = daemon.engine
    if engine is None or engine.host.scheme != "unix":
        return  # the fast path checks images over a unix socket only
    # WORKSPACE.toml images by their pinned ref; a Dockerfile's FROM image ("FROM <ref>[ --platform=P]") by its ref.
    refs = [loaded.workspace.images[name].pinned_ref if name in loaded.workspace.images
            else name.removeprefix("FROM ").split(" --platform=", 1)[0] for name in analysed.bases]
    ids = fastpath.engine_image_ids(refs, engine.host.path)
    if None in ids:
        return
    images = dict(zip(refs, ids))
    outputs: dict[str, str] = {}
    report = {"records": [fastpath.stamped_outcome(o, root, images, outputs) for o in outcomes], "lines": lines}
    fastpath.write_stamp(argv, os.getcwd(), files, dirs, engine.host.path, images, outputs, report, sources,
                         key_graph(analysed, root), started_ns)


def key_graph(analysed: Analysed, root: str) -> dict[str, tuple[list[str], set[str]]]:
    """Each analysed target (by label text): its dependencies, and the source
    files its key covers that its dependencies' keys do not (absolute paths),
    over every platform it was analysed for. A changed source reaches the
    targets that add it and everything that depends on them."""
    out: dict[str, tuple[list[str], set[str]]] = {}
    for infos in (analysed.variants or {analysed.platform: analysed.infos}).values():
        for label, info in infos.items():
            deps, adds = out.setdefault(str(label), ([str(d) for d in info.deps], set()))
            own = set(info.sources).difference(*(infos[d].sources for d in info.deps))
            adds.update(os.path.join(root, src) for src in own)
    return out


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
