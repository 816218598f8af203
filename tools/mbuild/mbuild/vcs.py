"""Git at the IO edge: which files differ from a revision."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .errors import ConfigError


def _git(root: Path, *args: str) -> str:
    try:
        proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise ConfigError("git is not installed; install it to use --since") from None
    if proc.returncode != 0:
        raise ConfigError(f"git {' '.join(args)}: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else 'failed'}")
    return proc.stdout


def changed_files(root: Path, since: str) -> set[str]:
    """Workspace-relative files that differ between ``since`` and the working tree
    (committed, staged, unstaged and untracked changes alike)."""
    try:
        _git(root, "rev-parse", "--git-dir")
    except ConfigError:
        raise ConfigError(f"--since {since}: {root} is not in a git repository; --since compares with a commit, "
                          f"so run it in a git checkout") from None
    try:
        _git(root, "rev-parse", "--verify", "--quiet", f"{since}^{{commit}}")
    except ConfigError:
        raise ConfigError(f"--since {since}: not a commit in {root}; use a branch, tag or sha (e.g. HEAD~1)") from None
    prefix = _git(root, "rev-parse", "--show-prefix").strip()
    out = set()
    for line in _git(root, "diff", "--name-only", "--no-renames", since, "--", ".").splitlines():
        out.add(line)
    for line in _git(root, "ls-files", "--others", "--exclude-standard", "--", ".").splitlines():
        out.add(prefix + line)
    if prefix:
        out = {p[len(prefix):] for p in out if p.startswith(prefix)}
    return out

