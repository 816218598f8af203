"""The fault suite's counts and timings, printed at the end of every pytest
run that includes ``tests/faults`` (``pytest_terminal_summary`` in
``conftest.py``), so CI logs show what the suite did and what it let through.

A test adds to the session's ledger through the ``fault_ledger`` fixture::

    def test_kill_during_upload(fault_ledger, ...):
        ...
        fault_ledger.count(KILLS)
        fault_ledger.count(BAD_BYTES, found)      # 0 is counted too; assert found == 0 as well
        fault_ledger.timing("kill -9", "upload", rebuild=(seconds, 120))
        fault_ledger.note(f"kill -9 seed {seed} (MBUILD_FAULT_SEED={seed} repeats it)")

:data:`COUNTS` are always printed, in this order and 0 when nothing added
to them (a count of 0 kills is news too); any other name is printed after
them, then the notes (a seed, what the kills hit). The summary looks like::

    fault suite: 0 kills, 0 concurrent runs, 0 engine restarts, 34 hostile-remote cases, 0 bad bytes accepted (must be 0), 0 planted-secret leaks (must be 0)
    fault suite: kill -9 seed 1234 (MBUILD_FAULT_SEED=1234 repeats it)
    fault suite timings (seconds, against their limit):
      hostile-remote  http slow             remote 2.00 / 3.00   build 3.91 / 14.2

A timing's *limit* is what the test held it to; the line shows both so a
slow creep is visible long before the limit is reached.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

KILLS = "kills"
CONCURRENT_RUNS = "concurrent runs"
ENGINE_RESTARTS = "engine restarts"
HOSTILE_REMOTE_CASES = "hostile-remote cases"
BAD_BYTES = "bad bytes accepted"
SECRET_LEAKS = "planted-secret leaks"
COUNTS = (KILLS, CONCURRENT_RUNS, ENGINE_RESTARTS, HOSTILE_REMOTE_CASES, BAD_BYTES, SECRET_LEAKS)
MUST_BE_ZERO = frozenset({BAD_BYTES, SECRET_LEAKS})


@dataclass
class Timing:
    group: str  # e.g. "hostile-remote"
    case: str  # e.g. "grpc slow"
    measures: tuple[tuple[str, float, float], ...]  # (what, seconds, limit)


@dataclass
class FaultLedger:
    """Counts and timings of one pytest session (thread-safe)."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    timings: list[Timing] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    used: bool = False  # a fault test asked for the ledger: print the summary
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counts[name] = self.counts.get(name, 0) + n

    def timing(self, group: str, case: str, **measures: tuple[float, float]) -> None:
        """Record ``what=(seconds, limit)`` pairs for one case, e.g.
        ``remote=(2.01, 3.0), build=(3.9, 14.2)``."""
        with self._lock:
            self.timings.append(Timing(group, case, tuple((k, s, lim) for k, (s, lim) in measures.items())))

    def note(self, text: str) -> None:
        """A line printed after the counts."""
        with self._lock:
            self.notes.append(text)

    def summary(self) -> list[str]:
        """The lines pytest prints at the end of the run."""
        with self._lock:
            parts = [f"{n} {name}" + (" (must be 0)" if name in MUST_BE_ZERO else "")
                     for name, n in self.counts.items()]
            lines = ["fault suite: " + ", ".join(parts), *(f"fault suite: {note}" for note in self.notes)]
            if self.timings:
                lines.append("fault suite timings (seconds, against their limit):")
                width = max(len(t.case) for t in self.timings)
                for t in self.timings:
                    cells = "   ".join(f"{what} {s:.2f} / {lim:.2f}" for what, s, lim in t.measures)
                    lines.append(f"  {t.group:<15} {t.case:<{width}}   {cells}")
            return lines


LEDGER = FaultLedger()  # the session's; tests get it through the fault_ledger fixture
