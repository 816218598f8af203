"""Which jobs a build runs, from the requested targets' analysis. Pure.

* A target with a ``Group`` provider (``group``) stands for the targets it names.
* A target with an ``image`` is one solve: every stage it builds on is part
  of the same LLB graph, so BuildKit dedupes and parallelises them.
* A stage-only target (``poetry_install``…) is solved on its own only when no
  requested image already builds it.
* A ``generated`` file waits for the images it names (added to the plan).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from ..analysis.providers import TargetInfo
from ..loading.labels import Label


@dataclass(frozen=True)
class Job:
    label: Label
    kind: str  # "solve" | "write"
    after: tuple[Label, ...] = ()  # jobs that must finish first


def expand_groups(labels: Iterable[Label], infos: Mapping[Label, TargetInfo]) -> list[Label]:
    """Replace targets with a Group provider by the targets it names (recursively), keeping order."""
    out: list[Label] = []
    seen: set[Label] = set()

    def visit(label: Label) -> None:
        if label in seen:
            return
        seen.add(label)
        info = infos[label]
        if info.group is not None:
            for dep in info.group:
                visit(dep)
        else:
            out.append(label)

    for label in labels:
        visit(label)
    return out


def stage_closure(label: Label, infos: Mapping[Label, TargetInfo]) -> set[Label]:
    """The targets with a Stage that ``label``'s LLB builds on, transitively."""
    seen: set[Label] = set()
    todo = [label]
    while todo:
        cur = todo.pop()
        for dep in infos[cur].deps:
            if dep not in seen and infos[dep].stage is not None:
                seen.add(dep)
                todo.append(dep)
    return seen


def plan(requested: Iterable[Label], infos: Mapping[Label, TargetInfo]) -> list[Job]:
    targets = [label for label in expand_groups(requested, infos) if infos[label].buildable]
    wanted = set(targets)
    for label in list(targets):
        gen = infos[label].generated
        if gen is not None:
            for dep in gen.image_deps:
                if dep not in wanted:
                    wanted.add(dep)
                    targets.append(dep)
    covered: set[Label] = set()
    for label in targets:
        if infos[label].image is not None:
            covered |= stage_closure(label, infos)
    jobs = []
    for label in sorted(set(targets)):
        info = infos[label]
        if info.generated is not None:
            jobs.append(Job(label, "write", tuple(info.generated.image_deps)))
        elif info.image is not None or label not in covered:
            jobs.append(Job(label, "solve"))
    return jobs
