"""The fault suite, bounded in time and run in CI with the rest of ``tests``:

* hostile remotes in both protocols (test_hostile_remote.py);
* kill -9 at random, seeded moments of builds, cache writes, uploads and
  restores, each followed by a build with the same digests and a sound
  store (test_kill.py);
* four concurrent builds of the same targets (test_concurrent_builds.py);
* the engine's dockerd killed mid-build and restarted, on a private engine
  (test_engine_restart.py);
* planted secrets found in no layer, log, cache record or --json
  (test_planted_secrets.py).

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
