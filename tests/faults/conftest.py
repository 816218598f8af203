"""The fault suite: hostile remotes (test_hostile_remote.py) and, alongside,
the kill -9, concurrency and engine-restart tests. Bounded in time and run
in CI with the rest of ``tests``.

Every fault test records what it did in the session's :mod:`.ledger`
(fixture ``fault_ledger``); the counts and timings are printed at the end of
the run, bad bytes accepted among them (which must stay 0).

The small offline workspace of the engine tests (``ws``, from
``tests/integration``) is available here too.
"""

from __future__ import annotations

import pytest

from ..integration.conftest import ws  # noqa: F401  - the small workspace fixture, shared
from .ledger import LEDGER, FaultLedger


@pytest.fixture(scope="session")
def fault_ledger() -> FaultLedger:
    LEDGER.used = True
    return LEDGER


def pytest_terminal_summary(terminalreporter) -> None:
    if not LEDGER.used:
        return
    terminalreporter.section("fault suite")
    for line in LEDGER.summary():
        terminalreporter.write_line(line)
