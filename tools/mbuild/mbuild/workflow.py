"""The phases wired together for the CLI: load, analyse, execute.

Each function is one step a command needs; the CLI stays a thin layer of
argument parsing and printing.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .analysis.analyze import analyze, needed_base_images
from .analysis.providers import TargetInfo
from .errors import ConfigError
from .loading.graph import TargetGraph, load_graph
from .loading.labels import Label
from .loading.workspace import Workspace, find_workspace, load_workspace
from .rules import SCHEMAS


@dataclass(frozen=True)
class Loaded:
    workspace: Workspace
    graph: TargetGraph
    current_package: str


def load(start: Path, patterns: Sequence[str] | None) -> Loaded:
    """Find the workspace from ``start`` and load the packages ``patterns`` need."""
    root = find_workspace(start)
    workspace = load_workspace(root)
    rel = os.path.relpath(start.resolve(), root)
    current = "" if rel == "." else rel.replace(os.sep, "/")
    skip = [Path(workspace.output_dir).name]
    graph = load_graph(root, SCHEMAS, patterns, current_package=current, skip_dirs=skip)
    return Loaded(workspace, graph, current)


def resolve_labels(loaded: Loaded, patterns: Sequence[str]) -> list[Label]:
    labels: list[Label] = []
    for text in patterns:
        for label in loaded.graph.resolve(text, loaded.current_package):
            if label not in labels:
                labels.append(label)
    if not labels:
        raise ConfigError(f"no targets match {' '.join(patterns)}; list them with: mbuild query //...")
    return labels


def warn_unpinned(workspace: Workspace, names: set[str]) -> None:
    for name in sorted(names):
        image = workspace.images.get(name)
        if image is not None and not image.digest:
            print(f"mbuild: warning: base image {name} ({image.ref}) is not pinned to a digest; "
                  f"run `mbuild lock` to pin it in WORKSPACE.toml", file=sys.stderr)


def analyse(loaded: Loaded, labels: Sequence[Label]) -> dict[Label, TargetInfo]:
    from .execution.images import base_image_configs

    names = needed_base_images(loaded.graph, labels)
    unknown = [n for n in sorted(names) if n not in loaded.workspace.images]
    configs = base_image_configs(loaded.workspace.images[n] for n in sorted(names) if n not in unknown)
    warn_unpinned(loaded.workspace, names - set(unknown))
    return analyze(loaded.graph, loaded.workspace, labels, configs)
