"""Which targets a set of changed files affects. Pure.

A target is affected when a file it reads changed (its sources, or the files
of a filegroup), when a file of its rule's code changed (the rule module or
a workspace module it imports: exactly the files in its key's
``rule_files``), when its package's BUILD file or a .bzl file that package
loads changed, or when anything it depends on is affected. A change to
``WORKSPACE.toml`` or ``.dockerignore`` affects every target.
"""

from __future__ import annotations

from typing import Iterable, Mapping

from .analysis.providers import TargetInfo
from .loading.graph import TargetGraph
from .loading.labels import Label

GLOBAL_FILES = frozenset({"WORKSPACE.toml", ".dockerignore"})


def affected_targets(graph: TargetGraph, infos: Mapping[Label, TargetInfo], changed: Iterable[str]) -> list[Label]:
    changed = set(changed)
    if changed & GLOBAL_FILES:
        return sorted(infos)
    direct: set[Label] = set()
    for label, info in infos.items():
        if any(path in changed for path in info.sources) or any(path in changed for path in info.files) or \
                any(path in changed for path in info.rule.files):
            direct.add(label)
    for name, package in graph.packages.items():
        if package.build_file in changed or any(bzl in changed for bzl in package.bzl_files):
            direct.update(t.label for t in package.targets.values())
    if not direct:
        return []
    return sorted(set(graph.rdeps(list(infos), sorted(direct))) & set(infos))
