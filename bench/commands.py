"""The two sides' command lines: ``docker buildx bake`` and ``mbuild``."""

from __future__ import annotations

from pathlib import Path

from settings import CACHE_REPO, MBUILD, MBUILD_LABEL, REGISTRY

BAKE_TARGETS = ("python", "node")  # bench/docker-bake.hcl


def bake(*extra: str, bake_file: Path | None = None) -> list[str]:
    """``docker buildx bake`` of bench/docker-bake.hcl (run from bench/, or pass ``bake_file``)."""
    cmd = ["docker", "buildx", "bake", "--progress", "plain"]
    if bake_file:
        cmd += ["-f", str(bake_file)]
    return cmd + list(extra)


def cache_from() -> list[str]:
    """bake options: import each target's registry cache."""
    return [a for t in BAKE_TARGETS for a in
            ("--set", f"{t}.cache-from=type=registry,ref={REGISTRY}/{CACHE_REPO}:{t}")]


def cache_to() -> list[str]:
    """bake options: export each target's whole cache (mode=max) to the registry."""
    return [a for t in BAKE_TARGETS for a in
            ("--set", f"{t}.cache-to=type=registry,ref={REGISTRY}/{CACHE_REPO}:{t},mode=max")]


def mbuild(cache_dir: Path, *args: str) -> list[str]:
    """Any mbuild command, with its own ``--cache-dir`` (never the user's ~/.cache/mbuild)."""
    return [str(MBUILD), "--cache-dir", str(cache_dir), *args]


def mbuild_build(cache_dir: Path, *extra: str, label: str = MBUILD_LABEL) -> list[str]:
    return mbuild(cache_dir, "build", "--progress", "plain", *extra, label)
