"""From what a rule returned to a :class:`TargetInfo`.

A rule returns a list of providers. Each type may appear once; the built-in
ones are checked here and turned into what the engine works with:

* ``Files`` -> the target's files (and inputs of its key);
* ``Stage`` -> its LLB state; ``Image`` (needs a Stage) -> an
  :class:`ImageOutput`, whose base is found from the state itself: the
  WORKSPACE.toml image its root filesystem starts from, if any;
* ``GeneratedFile`` -> a :class:`FileOutput` under the package's output
  folder, whose render function must be a plain module-level function and
  whose arguments plain data, since both go into the key; its images may be
  dependencies or their dependencies (a compose service wrapping an image);
* ``Group`` -> the targets that building this one builds.

Mistakes are errors at the rule's declaration (``rules/x.py:LINE``), naming
the target.
"""

from __future__ import annotations

import types
from typing import Any, Mapping

from buildkit import llb
from ..errors import ConfigError
from ..loading.labels import Label
from .context import RuleContext
from .providers import (
    DockerfileBuild,
    Files,
    FileOutput,
    GeneratedFile,
    Group,
    Image,
    ImageOutput,
    Provider,
    Stage,
    TargetInfo,
)


def collect(ctx: RuleContext, rule, returned: Any, deps: Mapping[Label, TargetInfo],
            base_sources: Mapping[str, str], analysed: Mapping[Label, TargetInfo] | None = None) -> TargetInfo:
    """The TargetInfo of ``ctx``'s target from the providers ``rule`` returned.
    ``base_sources`` maps each base image's LLB source identifier to its name;
    ``analysed`` holds every target analysed so far (the dependencies'
    dependencies among them), where a GeneratedFile's images are found."""
    label = ctx.label

    def fail(message: str) -> ConfigError:
        return rule.location.error(f"rule {rule.name} (for {label}): {message}")

    if isinstance(returned, Provider):
        returned = [returned]
    if not isinstance(returned, (list, tuple)):
        raise fail(f"the implementation returned {type(returned).__name__}; return a list of providers")
    providers: dict[type, Provider] = {}
    for item in returned:
        if not isinstance(item, Provider):
            raise fail(f"the implementation returned {type(item).__name__} {item!r:.60}; return providers only "
                       f"(mb.Stage(st), mb.Files(...), or types made with mb.provider)")
        if type(item) in providers:
            raise fail(f"the implementation returned two {type(item).__name__} providers; return one")
        providers[type(item)] = item

    files: tuple[str, ...] = ()
    if Files in providers:
        found = providers[Files].files
        if isinstance(found, str) or not all(isinstance(f, str) for f in found):
            raise fail("Files(files) takes a list of workspace-relative path strings")
        files = tuple(sorted(set(found)))
    stage = None
    if Stage in providers:
        stage = providers[Stage].state
        if not isinstance(stage, llb.State):
            raise fail(f"Stage(state) takes an LLB State, got {type(stage).__name__}")
    dockerfile = providers.get(DockerfileBuild)
    image = None
    if Image in providers:
        if stage is None and dockerfile is None:
            raise fail("an Image needs the Stage it exports; return mb.Stage(st) too")
        name = providers[Image].name
        try:
            llb.normalize_image_ref(name)
        except (ValueError, TypeError) as e:
            raise ctx.error(f"image name {name!r}: {e}; use a name like my-app:latest") from None
        base = base_sources.get(_root_source(stage)) if stage is not None else None
        image = ImageOutput(name, base, bool(providers[Image].push))
    group = None
    if Group in providers:
        group = tuple(providers[Group].targets)
        for target in group:
            if target not in deps:
                raise fail(f"Group names {target}, which is not a dependency of {label}")
    generated = None
    if GeneratedFile in providers:
        generated = _file_output(ctx, rule, providers[GeneratedFile], deps, analysed or deps, fail)

    return TargetInfo(
        label=label,
        kind=ctx.kind,
        providers=providers,
        files=files,
        stage=stage,
        image=image,
        generated=generated,
        group=group,
        sources=tuple(sorted(ctx._sources | set(files) | _dockerfile_sources(dockerfile))),
        bases=tuple(ctx._bases[k] for k in sorted(ctx._bases)) +
        (tuple(dockerfile.bases[k] for k in sorted(dockerfile.bases)) if dockerfile else ()),
        deps=tuple(sorted(deps)),
        attrs=ctx._target.attrs,
        rule=rule,
        context=dict(sorted(ctx._facts.items())),
        location=ctx._target.location,
        secrets=dict(sorted(ctx._secrets.items())),
        dockerfile=dockerfile,
        ssh=tuple(sorted(ctx._ssh)),
    )


def _dockerfile_sources(build: DockerfileBuild | None) -> set[str]:
    """A `dockerfile` target's own inputs: the Dockerfile, its ignore file and the context's files."""
    if build is None:
        return set()
    return {build.dockerfile, *([build.ignore_file] if build.ignore_file else []), *build.context_files}


def _file_output(ctx: RuleContext, rule, gen: GeneratedFile, deps: Mapping[Label, TargetInfo],
                 analysed: Mapping[Label, TargetInfo], fail) -> FileOutput:
    path = gen.path
    if not isinstance(path, str) or not path or path.startswith("/") or \
            any(p in ("", ".", "..") for p in path.split("/")):
        raise fail(f"GeneratedFile path {path!r} must be relative to the package's output folder, without '..'")
    fn = gen.render
    if not isinstance(fn, types.FunctionType) or fn.__closure__ or "<locals>" in fn.__qualname__:
        raise fail("GeneratedFile render must be a function defined at the top level of a module (not a lambda "
                   "or closure): its code is in the key, its inputs are `args`")
    bad = _not_plain(gen.args)
    if bad is not None:
        raise fail(f"GeneratedFile args must be plain data (str, int, float, bool, None, Label, lists, "
                   f"dicts with string keys), got {bad}")
    images = tuple(gen.images)
    closure = _closure(deps, analysed) if any(target not in deps for target in images) else deps
    for target in images:
        info = analysed.get(target) if target in closure else None
        if info is None or info.image is None:
            raise fail(f"GeneratedFile images names {target}, which is not a dependency (or a dependency's "
                       f"dependency) with an Image")
    package = ctx.package
    return FileOutput(
        path=f"{package}/{path}" if package else path,
        image_deps=images,
        function=fn,
        args=gen.args,
        label=ctx.label,
        rule_files=tuple(rule.files),
    )


def _closure(deps: Mapping[Label, TargetInfo], analysed: Mapping[Label, TargetInfo]) -> set[Label]:
    """The labels of ``deps`` and of everything they depend on."""
    seen: set[Label] = set()
    todo = list(deps)
    while todo:
        label = todo.pop()
        if label not in seen and label in analysed:
            seen.add(label)
            todo.extend(analysed[label].deps)
    return seen


def _not_plain(value: Any) -> str | None:
    """None when ``value`` is plain data, else a description of what is not."""
    if value is None or isinstance(value, (str, int, float, bool, Label)):
        return None
    if isinstance(value, (list, tuple)):
        for item in value:
            bad = _not_plain(item)
            if bad:
                return bad
        return None
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"a dict key {key!r}"
            bad = _not_plain(item)
            if bad:
                return bad
        return None
    return f"{type(value).__name__} {value!r:.40}"


def _root_source(state: llb.State) -> str | None:
    """The identifier of the source a state's root filesystem starts from
    (``docker-image://…``), following exec roots, file-op bases, the bottom
    layer of a merge and the lower side of a diff; None for scratch."""
    from buildkit.llb.ops import DiffNode, ExecNode, FileNode, MergeNode, SourceNode

    out = state.output
    while out is not None:
        node = out.node
        if isinstance(node, SourceNode):
            return node.identifier
        if isinstance(node, ExecNode):
            if out.index != 0:
                return None  # another mount's result, not the root filesystem
            out = next((m.source for m in node.mounts if m.dest == "/"), None)
        elif isinstance(node, FileNode):
            out = node.base
        elif isinstance(node, MergeNode):
            out = node.layers[0] if node.layers else None
        elif isinstance(node, DiffNode):
            out = node.lower
        else:
            return None
    return None
