"""Cold: the first build on a new machine, for both sides."""

from __future__ import annotations

from scenarios.base import OnFreshEngine


class Cold(OnFreshEngine):
    name = "cold"
    title = "cold: fresh engine, empty caches"
    max_ratio = 0.9
    target = "cold ≤ 0.9"
    notes = ("Each run (either side) on a **fresh private engine** (`scripts/private_engine.py`: its own "
             "containerd and dockerd; empty content store, snapshots and BuildKit cache, cache mounts "
             "included), the base images loaded first (untimed); mbuild with a new empty `--cache-dir`. "
             "Both download from PyPI and npm. Engine start-up and base loading are not timed.")
