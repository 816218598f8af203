"""Errors a user can act on.

Every error mbuild shows a user is one of these. The CLI prints ``str(err)`` as
one line (no traceback unless ``--debug``) and exits with ``err.exit_code``:
2 for usage and configuration errors, 1 for build failures.

Messages name the place (``file:line``, a label or an address) and say what to
do, e.g. ``infra/BUILD:12: unknown attribute 'srcz' of python_image; did you
mean 'srcs'?``.
"""

from __future__ import annotations

from typing import Callable


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


def innermost_frame(exc: BaseException, place: Callable[[str], str | None]) -> tuple[str, int] | None:
    """Where in someone's code ``exc`` was raised: the innermost frame of its
    traceback whose file ``place`` names (``place`` maps a frame's file to
    the path to report, or None to pass over it), as (path, line)."""
    found = None
    tb = exc.__traceback__
    while tb is not None:
        path = place(tb.tb_frame.f_code.co_filename)
        if path is not None:
            found = (path, tb.tb_lineno)
        tb = tb.tb_next
    return found


# What a BuildKit client error means for the user, and what to do about it.
_ELSEWHERE = "`buildkit` in WORKSPACE.toml, --buildkit, or DOCKER_HOST / `docker context use` for docker://"
_UNREACHABLE_ADVICE = {
    "tls": "check that DOCKER_CERT_PATH (ca.pem, cert.pem, key.pem) belongs to that engine's --tlscacert "
           "and that its CA signed cert.pem",
    "missing": f"start the engine (scripts/env-up), or point mbuild at another one: {_ELSEWHERE}",
    "refused": f"start the engine or buildkitd there, or point mbuild at another one: {_ELSEWHERE}",
}
_UNREACHABLE_DEFAULT = f"check that the engine runs and answers there, or point mbuild at another one: {_ELSEWHERE}"


def from_buildkit(err: Exception) -> MbuildError:
    """The mbuild error for a :class:`buildkit.errors.BuildKitError`: a bad
    address or graph is a usage error (exit 2), anything else a build failure."""
    from buildkit import errors as bk

    if isinstance(err, (bk.InvalidAddress, bk.LLBError)):
        return ConfigError(str(err))
    if isinstance(err, bk.Unreachable):
        return BuildFailure(f"{err}; {_UNREACHABLE_ADVICE.get(err.reason, _UNREACHABLE_DEFAULT)}")
    if isinstance(err, bk.DaemonGone):
        return BuildFailure(f"{err}; the build can be run again once the engine is back")
    failure = BuildFailure(str(err))
    if isinstance(err, bk.SolveError) and err.step.startswith("docker-image://"):
        image = err.step.removeprefix("docker-image://")
        failure = BuildFailure(f"{err}; BuildKit could not load the image {image}: load it into the engine "
                               "(docker load), or run `mbuild lock` against a registry that has it")
    if isinstance(err, bk.SolveError):
        failure.report = err.report  # the multi-line report: command, exit code, log tail
        failure.solve_error = err
    return failure
