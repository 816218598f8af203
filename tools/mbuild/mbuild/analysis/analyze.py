"""Analysis: targets become actions.

Runs each needed target's rule implementation once, dependencies first, and
returns every :class:`TargetInfo`. The rule registry is a parameter (this
module knows no rule by name); what analysis needs of a rule comes from its
schema (``base_image`` attributes, the providers a label attribute requires)
and from the providers it returns. Pure: base image configs and digests are
passed in (resolved at the IO edge, :mod:`mbuild.execution.bases`).
"""

from __future__ import annotations

from typing import Iterable, Mapping

from buildkit.llb import host_platform, normalize_image_ref

from ..errors import MbuildError
from ..loading.graph import TargetGraph
from ..loading.labels import Label
from ..loading.workspace import Workspace
from .code_errors import error_in_rule_code
from .collect import collect
from .context import RuleContext
from .providers import ResolvedBase, TargetInfo
from .registry import RuleRegistry


def base_image_names(target, rules: RuleRegistry) -> list[tuple[str, str]]:
    """(attribute, image name) for each non-empty ``base_image`` attribute of ``target``."""
    schema = rules[target.kind].schema
    return [(key, target.attrs[key]) for key, attr in schema.attrs.items()
            if attr.type == "base_image" and target.attrs[key]]


def needed_base_images(graph: TargetGraph, labels: Iterable[Label], rules: RuleRegistry) -> set[str]:
    """Names of WORKSPACE.toml images the targets' closure may start from."""
    names = set()
    for label in graph.topological_order(labels):
        names.update(name for _, name in base_image_names(graph.targets[label], rules))
    return names


def analyze(graph: TargetGraph, workspace: Workspace, labels: Iterable[Label], bases: Mapping[str, ResolvedBase],
            rules: RuleRegistry, platform: str | None = None) -> dict[Label, TargetInfo]:
    """Analyse ``labels`` and everything they depend on, in dependency order,
    for ``platform`` (default: the host's)."""
    platform = platform or str(host_platform())
    base_sources = _base_sources(workspace, bases)
    infos: dict[Label, TargetInfo] = {}
    for label in graph.topological_order(labels):
        target = graph.targets[label]
        rule = rules[target.kind]
        deps = {d: infos[d] for d in target.deps}
        _check_schema_facts(target, rule, workspace, deps, rules)
        ctx = RuleContext(target, rule.schema, workspace, deps, bases, platform)
        try:
            returned = rule.implementation(ctx)
        except MbuildError:
            raise
        except Exception as e:  # noqa: BLE001 - a bug in rule code: name its line
            raise error_in_rule_code(e, label, rule.files, target_at=target.location) from None
        infos[label] = collect(ctx, rule, returned, deps, base_sources, infos)
    return infos


def _check_schema_facts(target, rule, workspace: Workspace, deps: Mapping[Label, TargetInfo],
                        rules: RuleRegistry) -> None:
    """Base image names exist; label attributes name targets with the providers they require."""
    for key, name in base_image_names(target, rules):
        if name not in workspace.images:
            known = ", ".join(sorted(workspace.images)) or "none"
            raise target.location.error(f"{target.label}: attribute '{key}': unknown base image {name!r}; "
                                        f"WORKSPACE.toml [images] has: {known}")
    for key, attr in rule.schema.attrs.items():
        if not attr.providers:
            continue
        value = target.attrs[key]
        for dep in (value,) if isinstance(value, Label) else value or ():
            info = deps[dep]
            missing = [p.__name__ for p in attr.providers if p not in info.providers]
            if missing:
                raise target.location.error(f"{target.label}: attribute '{key}' of {target.kind}: {dep} "
                                            f"({info.kind}) does not provide {', '.join(missing)}")


def _base_sources(workspace: Workspace, bases: Mapping[str, ResolvedBase]) -> dict[str, str]:
    """LLB source identifier -> base image name, for each WORKSPACE.toml image
    as the context makes it (pinned to its resolved digest, or as declared)."""
    out = {}
    for name, image in workspace.images.items():
        resolved = bases.get(name)
        ref = f"{image.ref}@{resolved.digest}" if resolved else image.pinned_ref
        try:
            out["docker-image://" + normalize_image_ref(ref)] = name
        except ValueError:
            continue  # a ref BuildKit could not use either: the solve says so
    return out
