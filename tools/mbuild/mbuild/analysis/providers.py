"""What analysis knows of a target: the typed results rules return.

A rule implementation turns its attributes and its dependencies'
:class:`TargetInfo` into its own. Fields a rule does not produce stay empty:

* ``files``: workspace files the target stands for (``filegroup``);
* ``stage``: an LLB state (a filesystem plus image config) that dependents
  build on; a stage is solved as part of the images that use it;
* ``image``: the stage is exported as a named image into the engine;
* ``generated``: a file written under the output folder once the images it
  names are built (``compose``).

``sources``, ``bases`` and ``deps`` are the action's inputs: the workspace
files it reads itself, the base images it starts from, and the targets whose
results it uses. The action key is computed from them (see
:mod:`mbuild.analysis.keys`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ..loading.labels import Label
from ..loading.workspace import BaseImage


@dataclass(frozen=True)
class ResolvedBase:
    """A base image as the engine has it: the digest it resolved to and its config."""

    name: str
    digest: str
    config: Mapping[str, Any]
    diff_ids: tuple[str, ...] = ()  # the image's layers, uncompressed digests


@dataclass(frozen=True)
class ImageOutput:
    """An image to load into the engine under ``name``."""

    name: str
    container_name: str | None = None
    ports: tuple[str, ...] = ()
    base: str | None = None  # WORKSPACE.toml image the final stage starts from


@dataclass(frozen=True)
class BuiltImage:
    """What execution reports for a built image; generated files render from it."""

    label: Label
    name: str
    manifest_digest: str
    image: ImageOutput


@dataclass(frozen=True)
class GeneratedFile:
    """A file under the output folder, rendered from the images it depends on."""

    path: str  # relative to the output folder, e.g. "infra/docker-compose.yml"
    render: Callable[[Mapping[Label, BuiltImage]], bytes] = field(compare=False)
    image_deps: tuple[Label, ...] = ()


@dataclass(frozen=True)
class TargetInfo:
    label: Label
    kind: str
    files: tuple[str, ...] = ()
    stage: Any = None  # buildkit.llb.State
    image: ImageOutput | None = None
    generated: GeneratedFile | None = None
    sources: tuple[str, ...] = ()
    bases: tuple[BaseImage, ...] = ()
    deps: tuple[Label, ...] = ()
    attrs: Mapping[str, Any] = field(default_factory=dict)
    rule_version: str = ""
    location: Any = None  # the BUILD file line that declared the target

    @property
    def buildable(self) -> bool:
        """Whether executing this target does work (solve or write)."""
        return self.stage is not None or self.generated is not None
