"""The side-by-side scenarios, in the order they run and appear in the report.

Adding a scenario: a :class:`scenarios.base.Scenario` subclass (or an
:class:`~scenarios.warm.Edit` for "one line in some file"), listed here.
bench/README.md explains it.
"""

from __future__ import annotations

from scenarios.affected import Affected
from scenarios.base import Context, Result, Scenario
from scenarios.cold import Cold
from scenarios.remote import RemoteFresh, RemoteShared
from scenarios.warm import Edit, NoOp

SCENARIOS: list[Scenario] = [
    Cold(),
    NoOp(),
    Edit("api", "one line in apps/api (Python app source)", "apps/api/api/server.py", "#"),
    Edit("pycore", "one line in libs/py-core", "libs/py-core/py_core/__init__.py", "#"),
    Edit("lock", "comment line in poetry.lock", "poetry.lock", "#"),
    Edit("web", "one line in apps/web (Node app source)", "apps/web/src/main.ts", "//"),
    RemoteFresh(),
    RemoteShared(),
    Affected(),
]
BY_NAME = {s.name: s for s in SCENARIOS}

__all__ = ["BY_NAME", "SCENARIOS", "Context", "Result", "Scenario"]
