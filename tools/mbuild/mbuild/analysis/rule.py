"""Rules: what a rule module declares, and the rule as the registry holds it.

A rule module (``mbuild/rules/`` for the built-ins, the workspace's
``rules/*.py`` for its own) declares each rule with ``mbuild.api.v1.rule``,
which returns a :class:`RuleDecl`: the documented attributes and a pure
implementation. The registry (:mod:`mbuild.analysis.registry`) names it after
the module-level variable it is bound to and adds what action keys need of
its code: the files of the module and of every workspace module it imports
(path -> sha256) and the API versions they import. Nothing is versioned by
hand: a change to any of those files changes the keys of the rule's targets.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

from ..loading.schema import Attr, Location, RuleSchema

if TYPE_CHECKING:
    from .context import RuleContext

_MBUILD_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def code_path(filename: str) -> str:
    """A file of rule code as keys and messages name it: workspace-relative for
    workspace modules (they are compiled under that name), ``mbuild/rules/…``
    for mbuild's built-ins."""
    if os.path.isabs(filename) and filename.startswith(_MBUILD_PARENT + os.sep):
        return os.path.relpath(filename, _MBUILD_PARENT).replace(os.sep, "/")
    return filename


def function_name(fn: Callable[..., Any]) -> str:
    """``rules/compose.py:render_compose``: a module-level function as keys name it."""
    return f"{code_path(fn.__code__.co_filename)}:{fn.__qualname__}"


@dataclass(frozen=True, eq=False)
class RuleDecl:
    """A rule as its module declares it (compared by identity).

    ``module`` is the name of the declaring module (its workspace path, e.g.
    ``rules/python.py``, or ``mbuild/rules/files.py`` for a built-in) and
    ``location`` the line of the ``rule(...)`` call, for messages and docs.
    """

    implementation: "Callable[[RuleContext], Any]"
    doc: str
    attrs: Mapping[str, Attr]
    module: str
    location: Location


@dataclass(frozen=True, eq=False)
class Rule:
    """A named rule in a registry: its schema, implementation and code identity.

    ``files`` maps each file of the rule's code (its module and the workspace
    modules that module imports, transitively) to ``sha256:<hex>`` of its
    bytes; ``api`` lists the API versions that code imports (``("v1",)``).
    """

    schema: RuleSchema
    decl: RuleDecl
    files: Mapping[str, str]
    api: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.schema.name

    @property
    def implementation(self) -> "Callable[[RuleContext], Any]":
        return self.decl.implementation

    @property
    def module(self) -> str:
        return self.decl.module

    @property
    def location(self) -> Location:
        return self.decl.location
