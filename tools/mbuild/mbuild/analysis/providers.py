"""Providers: the typed results a rule gives its dependants and the engine.

A rule implementation returns a list of provider instances (Bazel's
providers, Pants' typed results). Its dependants read them by type
(``ctx.dep(label)[PoetryVenv]``); a few built-in ones also tell the engine
what to do:

* :class:`Files` - workspace files the target stands for (``filegroup``);
  they become inputs of the target's key;
* :class:`Stage` - an LLB state (a filesystem plus image config) dependants
  build on; solved as part of the images that use it, or on its own;
* :class:`Image` - the stage is exported into the engine as a named image;
* :class:`GeneratedFile` - a file written under the output folder once the
  images it names are built (``compose``), by a render function whose code,
  arguments and the images' digests are all in its key;
* :class:`Group` - building the target means building these targets;
* :class:`Service` - how an image runs as a service (compose name, container
  name, published ports), for rules that write deployment files; the engine
  does not read it.

A rule defines its own with :func:`provider`. Analysis turns what a rule
returned into a :class:`TargetInfo` (:mod:`mbuild.analysis.collect`): the
engine-level :class:`ImageOutput` and :class:`FileOutput`, the action's
inputs (``sources``, ``bases``, ``deps``) and every provider for dependants.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, make_dataclass
from typing import Any, Callable, Mapping

from ..errors import ConfigError, MbuildError
from ..loading.labels import Label
from ..loading.schema import Location
from ..loading.workspace import BaseImage


class Provider:
    """Base of every provider type. Instances are immutable; dependants read
    them by type. ``__provider_fields__`` documents each field."""

    __provider_fields__: Mapping[str, str] = {}


def _documented(cls: type, doc: str, fields: Mapping[str, str]) -> type:
    cls.__doc__ = doc
    cls.__provider_fields__ = dict(fields)
    return cls


def provider(name: str, doc: str, fields: Mapping[str, str]) -> type:
    """A new provider type: ``PoetryVenv = provider("PoetryVenv", "A venv in a
    stage.", {"path": "Absolute path of the venv."})``; instances take every
    field as a keyword argument (``PoetryVenv(path="/app/.venv")``)."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"provider name {name!r} must be an identifier, like PoetryVenv")
    if not isinstance(doc, str) or not doc.strip():
        raise ValueError(f"provider {name} needs a doc string saying what it carries")
    if not isinstance(fields, Mapping) or not fields:
        raise ValueError(f"provider {name} needs fields: a dict of field name -> doc string")
    for key, text in fields.items():
        if not isinstance(key, str) or not key.isidentifier() or key.startswith("_"):
            raise ValueError(f"provider {name}: field {key!r} must be an identifier not starting with '_'")
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"provider {name}: field {key} needs a doc string")
    cls = make_dataclass(name, [(key, Any) for key in fields], bases=(Provider,), frozen=True, kw_only=True)
    cls.__module__ = sys._getframe(1).f_globals.get("__name__", cls.__module__)
    return _documented(cls, doc, fields)


# ---------------------------------------------------------------------------
# the built-in providers


@dataclass(frozen=True)
class Files(Provider):
    files: tuple[str, ...]


@dataclass(frozen=True)
class Stage(Provider):
    state: Any  # buildkit.llb.State


@dataclass(frozen=True)
class Image(Provider):
    name: str
    push: bool = False


@dataclass(frozen=True)
class Service(Provider):
    name: str
    container_name: str = ""
    ports: tuple[str, ...] = ()


@dataclass(frozen=True)
class GeneratedFile(Provider):
    path: str
    render: Callable[..., Any] = field(compare=False)
    args: Any = None
    images: tuple[Label, ...] = ()


@dataclass(frozen=True)
class Group(Provider):
    targets: tuple[Label, ...]


_documented(Files, "Workspace files the target stands for; they are inputs of its key.",
            {"files": "Workspace-relative paths, sorted."})
_documented(Stage, "An LLB state (filesystem and image config) that dependants build on.",
            {"state": "The state (mbuild.api.v1.State)."})
_documented(Image, "Export the target's Stage into the engine as a named image.",
            {"name": "Image name, like my-app:latest.",
             "push": "Push it to the registry its name names on every build (as --push does)."})
_documented(Service, "How an image runs as a service, for rules that write deployment files.",
            {"name": "Service name (compose service).", "container_name": "Container name; empty: none.",
             "ports": "Published port mappings, like 8000:8000."})
_documented(GeneratedFile, "A file written under the output folder after the images it names are built.",
            {"path": "Path under the target's package output folder, like docker-compose.yml.",
             "render": "A module-level function render(args, images) -> str or bytes; images maps each "
                       "label of `images` to its BuiltImage.",
             "args": "Plain data (str, int, bool, None, Label, lists, dicts with string keys) the render "
                     "function gets; part of the key.",
             "images": "Labels of Image targets the file names (dependencies, or dependencies of "
                       "dependencies); built first."})
_documented(Group, "Building the target means building these targets.", {"targets": "The labels."})

BUILTIN_PROVIDERS = (Files, Stage, Image, Service, GeneratedFile, Group)  # DockerfileBuild: the built-in rule's


# ---------------------------------------------------------------------------
# what the engine works with


@dataclass(frozen=True)
class ResolvedBase:
    """A base image as the engine has it: the digest it resolved to and its config."""

    name: str
    digest: str
    config: Mapping[str, Any]
    diff_ids: tuple[str, ...] = ()  # the image's layers, uncompressed digests


@dataclass(frozen=True)
class ImageOutput:
    """An image to load into the engine under ``name``; ``base`` is the
    WORKSPACE.toml image its filesystem starts from (its layers are the
    base's, left as they are), when it starts from one."""

    name: str
    base: str | None = None
    push: bool = False  # pushed on every build, not only with --push


@dataclass(frozen=True)
class DockerfileBuild(Provider):
    """A Dockerfile built by BuildKit's Dockerfile frontend (a `dockerfile`
    target): paths are workspace-relative; ``bases`` maps each image its
    FROM lines name (as written, ARGs expanded) to the ``BaseImage`` it is
    resolved as; ``context_files`` are the context's files after its
    .dockerignore (inputs of the key)."""

    dockerfile: str
    context: str
    ignore_file: str | None
    target: str
    build_args: Mapping[str, str]
    bases: Mapping[str, Any]  # FROM image ref -> BaseImage (named "FROM <ref>[ --platform=P]")
    context_files: tuple[str, ...]
    base_platforms: Mapping[str, str] = field(default_factory=dict)  # ref -> "build" or a platform (FROM --platform)
    labels: Mapping[str, str] = field(default_factory=dict)
    # What analysis read to make this, beyond the key's sources: the ignore
    # files it looked for (there or not) and the context's folders it listed.
    looked_for: tuple[str, ...] = ()
    listed_dirs: tuple[str, ...] = ()


@dataclass(frozen=True)
class BuiltImage:
    """An image as built: what a GeneratedFile's render function gets for each of its images."""

    label: Label
    name: str
    manifest_digest: str
    image: ImageOutput


@dataclass(frozen=True)
class FileOutput:
    """A GeneratedFile as the engine writes it: ``path`` is relative to the
    output folder (the package folder included)."""

    path: str
    image_deps: tuple[Label, ...]
    function: Callable[..., Any] = field(compare=False)
    args: Any
    label: Label
    rule_files: tuple[str, ...] = ()

    def render(self, images: Mapping[Label, BuiltImage]) -> bytes:
        from .code_errors import error_in_rule_code

        built = {label: images[label] for label in self.image_deps}
        try:
            data = self.function(self.args, built)
        except MbuildError:
            raise
        except Exception as e:  # noqa: BLE001 - a bug in rule code: name its line
            raise error_in_rule_code(e, self.label, self.rule_files, "rendering") from None
        if isinstance(data, str):
            return data.encode()
        if isinstance(data, bytes):
            return data
        raise ConfigError(f"{self.label}: the render function {self.function.__name__} returned "
                          f"{type(data).__name__}; return str or bytes")


@dataclass(frozen=True)
class TargetInfo:
    """What analysis knows of a target: its providers, what the engine does
    with it, and its action's inputs (``sources``: workspace files it reads
    itself; ``bases``: base images it starts from; ``deps``: targets whose
    results it uses; ``context``: workspace facts the rule read)."""

    label: Label
    kind: str
    providers: Mapping[type, Provider] = field(default_factory=dict)
    files: tuple[str, ...] = ()
    stage: Any = None  # buildkit.llb.State
    image: ImageOutput | None = None
    generated: FileOutput | None = None
    group: tuple[Label, ...] | None = None
    sources: tuple[str, ...] = ()
    bases: tuple[BaseImage, ...] = ()
    deps: tuple[Label, ...] = ()
    attrs: Mapping[str, Any] = field(default_factory=dict)
    rule: Any = None  # mbuild.analysis.rule.Rule
    context: Mapping[str, Any] = field(default_factory=dict)
    location: Location | None = None  # the BUILD file line that declared the target
    secrets: Mapping[str, str] = field(default_factory=dict)  # build secret id -> declared source (its steps')
    ssh: tuple[str, ...] = ()  # SSH agent ids its steps use
    dockerfile: Any = None  # mbuild.analysis.providers.DockerfileBuild, for a `dockerfile` target

    @property
    def buildable(self) -> bool:
        """Whether executing this target does work (solve or write)."""
        return self.stage is not None or self.generated is not None or self.dockerfile is not None
