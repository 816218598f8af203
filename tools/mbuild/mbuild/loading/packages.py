"""Finding packages: directories holding a BUILD (or BUILD.bazel) file.

Never descends into ``.git``, ``node_modules``, ``.venv``, ``mbuild-out``,
``__pycache__``, hidden directories (``.*``), directory symlinks, or any extra
directory names given (e.g. a custom output_dir).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

__all__ = ["BUILD_FILE_NAMES", "SKIP_DIRS", "build_file", "discover_packages", "is_skipped_dir"]

# BUILD.bazel wins over BUILD when both exist (as in Bazel).
BUILD_FILE_NAMES = ("BUILD.bazel", "BUILD")
SKIP_DIRS = frozenset({".git", "node_modules", ".venv", "mbuild-out", "__pycache__"})


def is_skipped_dir(name: str, extra: Iterable[str] = ()) -> bool:
    """True for directory names never scanned for packages or globbed."""
    return name in SKIP_DIRS or name.startswith(".") or name in extra


def build_file(root: Path, package: str) -> Path | None:
    """The BUILD file of ``package`` under ``root``, or None if it is not a package."""
    directory = root / package if package else root
    for name in BUILD_FILE_NAMES:
        candidate = directory / name
        if candidate.is_file():
            return candidate
    return None


def discover_packages(root: Path, under: str = "", skip: Iterable[str] = ()) -> list[str]:
    """Sorted package names at or below ``under`` (a package path, "" = all).

    A package name is the directory path relative to ``root`` with '/'
    separators ("" for the root package).
    """
    skip = frozenset(skip)
    start = os.path.join(root, under) if under else os.fspath(root)
    found: list[str] = []
    stack = [(start, under)]
    while stack:
        directory, package = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        is_package = False
        for entry in entries:
            name = entry.name
            if name in BUILD_FILE_NAMES:
                if entry.is_file():
                    is_package = True
            elif entry.is_dir(follow_symlinks=False) and not is_skipped_dir(name, skip):
                stack.append((entry.path, f"{package}/{name}" if package else name))
        if is_package:
            found.append(package)
    found.sort()
    return found
