"""The rules BUILD files can call, by name.

Each rule module declares its rules' schemas (every attribute documented
where it is declared) and pure implementations. ``mbuild help RULE`` prints
the documentation.
"""

from __future__ import annotations

from typing import Mapping

from ..analysis.rule import Rule
from . import compose, container, files, node, python

RULES: Mapping[str, Rule] = {
    r.name: r
    for r in (
        files.FILEGROUP,
        files.GROUP,
        python.POETRY_INSTALL,
        python.PYTHON_IMAGE,
        node.PNPM_INSTALL,
        node.NODE_BUILD,
        node.NODE_IMAGE,
        compose.COMPOSE,
        container.CONTAINER_IMAGE,
    )
}

SCHEMAS = {name: rule.schema for name, rule in RULES.items()}
