"""Four builds of the same targets at once, on one store: each target is
built (solved or rendered) by exactly one of them, the others wait on its
key's lock and take the result; all four report the same digests, and the
store is sound afterwards."""

from __future__ import annotations

import subprocess

import pytest

from mbuild.cache.store import LocalStore

from ..integration.conftest import json_records
from ..integration.workspaces import MBUILD
from .ledger import CONCURRENT_RUNS

pytestmark = pytest.mark.engine

TARGETS = ("//images:app", "//images:tool", "//images:compose")
RUNS = 4


def test_four_concurrent_builds_build_each_target_once(ws, fault_ledger):
    procs = [subprocess.Popen([*MBUILD, "--cache-dir", str(ws.cache), "build", "--json", "--progress", "plain",
                               *TARGETS], cwd=ws.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(RUNS)]
    outputs = [proc.communicate(timeout=300) for proc in procs]
    fault_ledger.count(CONCURRENT_RUNS, RUNS)
    for proc, (_, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-3000:]
    runs = [json_records(out) for out, _ in outputs]
    for label in TARGETS:
        builders = [i for i, records in enumerate(runs) if records[label]["source"] in ("solve", "render")]
        assert len(builders) == 1, f"{label} was built by runs {builders}: {[r[label] for r in runs]}"
        assert all(r[label]["source"] == "local-cache" for i, r in enumerate(runs) if i not in builders), \
            [r[label] for r in runs]
        assert len({(r[label]["manifest_digest"], r[label]["key"], tuple(r[label]["files"])) for r in runs}) == 1
    # The app's slow step ran in one build only (the others never solved it).
    step = "sleep 2 && echo"
    assert sum(any(step in line for line in err.splitlines()) for _, err in outputs) == 1
    assert LocalStore(ws.cache).verify(complete=True) == []
