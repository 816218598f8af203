"""The rule registry: every rule BUILD files can call, by name.

Loading gets the registry's schemas (``registry.schemas``) and analysis the
registry itself: both take it as a parameter, neither imports a rule. The
registry is made from mbuild's built-in rules (:mod:`mbuild.rules`) and the
workspace's rule modules (:mod:`mbuild.analysis.rule_modules`).

A module exports each of its public globals (a name not starting with ``_``)
bound to a rule declaration, under that name, as Bazel names a rule after
the variable it is assigned to. A rule name must be unique in the registry,
a valid BUILD-file function name, and must not hide a Starlark built-in.
"""

from __future__ import annotations

import re
from typing import Any, Iterator, Mapping

from ..errors import ConfigError
from ..loading.build_files import BUILTIN_NAMES
from ..loading.schema import Location, RuleSchema
from .rule import Rule, RuleDecl

_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
# Starlark's own functions: a rule of that name would hide them in BUILD files.
_STARLARK_NAMES = frozenset({
    "all", "any", "bool", "call_stack", "dict", "dir", "enumerate", "fail", "filter", "getattr", "hasattr",
    "hash", "int", "json", "len", "list", "load", "map", "max", "min", "partial", "print", "range", "repr",
    "reversed", "sorted", "str", "struct", "tuple", "type", "zip",
})


def public_rules(namespace: Mapping[str, Any]) -> list[tuple[str, RuleDecl]]:
    """The rules a module exports: (name, declaration) for each public global bound to one."""
    return [(name, value) for name, value in namespace.items()
            if not name.startswith("_") and isinstance(value, RuleDecl)]


class RuleRegistry(Mapping[str, Rule]):
    """Rule name -> :class:`Rule`. ``code_files`` holds every workspace file
    of rule code that was loaded (path -> sha256), for the no-op fast path."""

    def __init__(self) -> None:
        self._rules: dict[str, Rule] = {}
        self.code_files: dict[str, str] = {}

    def add(self, name: str, decl: RuleDecl, files: Mapping[str, str], api: tuple[str, ...],
            exported_at: Location) -> None:
        """Register ``decl`` under ``name``; ``exported_at`` is where an error about the name points."""
        if not _NAME_RE.fullmatch(name) or name in BUILTIN_NAMES or name in _STARLARK_NAMES:
            raise exported_at.error(f"rule name {name!r} cannot be called from BUILD files (a Starlark or "
                                    f"mbuild built-in, or not a plain name); rename it")
        previous = self._rules.get(name)
        if previous is not None:
            if previous.decl is decl:
                return  # the same rule, exported by a second module that imports it
            raise exported_at.error(f"rule {name!r} is already defined at {previous.location}; rename one of them")
        schema = RuleSchema(name, decl.doc, dict(decl.attrs))
        self._rules[name] = Rule(schema, decl, dict(files), tuple(api))

    @property
    def schemas(self) -> dict[str, RuleSchema]:
        """Rule name -> schema: what loading needs to check BUILD files."""
        return {name: rule.schema for name, rule in self._rules.items()}

    def __getitem__(self, name: str) -> Rule:
        return self._rules[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._rules)

    def __len__(self) -> int:
        return len(self._rules)

    def unknown(self, name: str) -> ConfigError:
        """The error for a rule name the registry does not hold."""
        import difflib

        close = difflib.get_close_matches(name, list(self._rules), n=1)
        hint = f"did you mean {close[0]}?" if close else f"known rules: {', '.join(sorted(self._rules))}"
        return ConfigError(f"unknown rule {name!r}; {hint}")
