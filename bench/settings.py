"""Where things are, and the fixed names the bench uses.

Everything the bench creates on the shared machine is named here, so the
cleanup can find it: the bake tags, the registry cache repository, the
temporary folder prefix.
"""

from __future__ import annotations

import os
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"

# The mbuild being measured: this checkout's .venv (scripts/env-up makes it,
# with tools/mbuild and tools/buildkit-py installed in edit mode), so the
# code measured is this checkout's committed code. cli.py checks that.
MBUILD = ROOT / ".venv" / "bin" / "mbuild"
MBUILD_PY = ROOT / ".venv" / "bin" / "python"
MEASURED_PACKAGES = {"mbuild": ROOT / "tools" / "mbuild", "buildkit": ROOT / "tools" / "buildkit-py"}
# bench/run's own virtualenv: pyinstrument (its site-packages go on the
# PYTHONPATH of the profiled mbuild process).
BENCH_VENV = BENCH / ".venv"

# The servers of scripts/env-up.
REAPI = "grpc://127.0.0.1:50051"
REGISTRY = "127.0.0.1:5000"
CACHE_REPO = "mbuild-bench/cache"  # bake's registry cache, deleted at the end

# The two sides' outputs on an engine.
BAKE_FILE = BENCH / "docker-bake.hcl"
BAKE_TAGS = ["mbuild-bench-bake-python:latest", "mbuild-bench-bake-node:latest"]
PROJECT_TAGS = ["ai-mono-python:latest", "ai-mono-node:latest"]
MBUILD_LABEL = "//infra:compose"
# The base images the seed Dockerfiles and WORKSPACE.toml name; a fresh
# engine gets these from the shared engine (see engines.py).
BASES = ["python:3.11", "python:3.11-slim", "node:22-slim"]

TMP_PARENT = "/var/tmp"  # the run's temporary folder: mbuild-bench.XXXX (logs, caches, engines)
RUN_TIMEOUT = 900  # one build; a hang is a failed run, not a stuck bench

# Byte-code caching as on a developer's machine: this environment may set
# PYTHONDONTWRITEBYTECODE=1, which makes every mbuild run recompile all of its
# modules (~0.1 s more per run). The cache goes to bench/.venv/pycache, not
# into the source tree.
PYCACHE = BENCH_VENV / "pycache"


def base_env() -> dict[str, str]:
    """The environment every timed process starts from (the caller adds its own)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    return env
