"""A rule: a schema (documented attributes) plus a pure implementation.

Rules live in :mod:`mbuild.rules`. An implementation receives a
:class:`~mbuild.analysis.context.RuleContext` and returns a
:class:`~mbuild.analysis.providers.TargetInfo` (via ``ctx.result(...)``). It
does no IO: files, base images and dependencies come through the context.

``version`` is part of every action key of the rule: bump it whenever the
implementation's output changes for the same inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from ..loading.schema import RuleSchema

if TYPE_CHECKING:
    from .context import RuleContext
    from .providers import TargetInfo


@dataclass(frozen=True)
class Rule:
    schema: RuleSchema
    implementation: "Callable[[RuleContext], TargetInfo]"
    version: str = "1"

    @property
    def name(self) -> str:
        return self.schema.name
