"""Errors a user can act on.

Every error mbuild shows a user is one of these. The CLI prints ``str(err)`` as
one line (no traceback unless ``--debug``) and exits with ``err.exit_code``:
2 for usage and configuration errors, 1 for build failures.

Messages name the place (``file:line``, a label or an address) and say what to
do, e.g. ``infra/BUILD:12: unknown attribute 'srcz' of python_image; did you
mean 'srcs'?``.
"""

from __future__ import annotations


class MbuildError(Exception):
    """Base of every error meant for the user."""

    exit_code = 1


class ConfigError(MbuildError):
    """Bad input: a BUILD file, WORKSPACE.toml, a label, a CLI argument."""

    exit_code = 2


class BuildFailure(MbuildError):
    """A build step failed, or the engine could not be reached."""

    exit_code = 1


def at(path: str, line: int | None, message: str) -> str:
    """Format ``path:line: message`` (``path: message`` when line is unknown)."""
    return f"{path}:{line}: {message}" if line else f"{path}: {message}"
