"""mbuild's built-in rules: the generic ones every workspace has.

``filegroup`` and ``group`` (:mod:`.files`), ``container_image``
(:mod:`.container`), written against the public rule API like any
workspace's rules, and ``dockerfile`` (:mod:`.dockerfile`), a request to
BuildKit's Dockerfile frontend that the engine runs. Language and deployment rules are workspace code (the
workspace's ``rules/``, listed in WORKSPACE.toml ``rules``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..analysis.registry import RuleRegistry, public_rules
from ..analysis.rule import code_path
from ..api import v1
from . import container, dockerfile, files

_MODULES = (files, container, dockerfile)


def builtin_registry() -> RuleRegistry:
    """A registry holding the built-in rules, each keyed by its module's source."""
    registry = RuleRegistry()
    for module in _MODULES:
        path = code_path(module.__file__)
        digest = "sha256:" + hashlib.sha256(Path(module.__file__).read_bytes()).hexdigest()
        for name, decl in public_rules(vars(module)):
            registry.add(name, decl, {path: digest}, (v1.VERSION,), decl.location)
    return registry
