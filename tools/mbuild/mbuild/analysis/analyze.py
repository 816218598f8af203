"""Analysis: targets become actions.

Runs each needed target's rule implementation once, dependencies first, and
returns every :class:`TargetInfo` with its action key. Pure: base image
configs and digests are passed in (resolved at the IO edge,
:mod:`mbuild.execution.images`).
"""

from __future__ import annotations

from typing import Iterable, Mapping

from ..loading.graph import TargetGraph
from ..loading.labels import Label
from ..loading.workspace import Workspace
from .context import RuleContext
from .providers import ResolvedBase, TargetInfo


def needed_base_images(graph: TargetGraph, labels: Iterable[Label]) -> set[str]:
    """Names of WORKSPACE.toml images the targets' closure may start from."""
    names = set()
    for label in graph.topological_order(labels):
        base = graph.targets[label].attrs.get("base")
        if isinstance(base, str) and base:
            names.add(base)
    return names


def analyze(graph: TargetGraph, workspace: Workspace, labels: Iterable[Label],
            bases: Mapping[str, ResolvedBase], platform: str | None = None) -> dict[Label, TargetInfo]:
    """Analyse ``labels`` and everything they depend on, in dependency order."""
    from ..rules import RULES

    infos: dict[Label, TargetInfo] = {}
    for label in graph.topological_order(labels):
        target = graph.targets[label]
        deps = {d: infos[d] for d in target.deps}
        ctx = RuleContext(target, workspace, deps, bases, platform)
        infos[label] = RULES[target.kind].implementation(ctx)
    return infos
