"""The errors buildkit-py raises, in one hierarchy.

Every error meant for a caller is a :class:`BuildKitError`. Its message is one
line that names the daemon address, step or feature concerned, so a tool can
show ``str(err)`` as is. Subclasses also derive from the standard exception a
caller that knows only the standard library would catch:

==========================  ====================================================
:class:`InvalidAddress`     a malformed daemon address (``ValueError``)
:class:`LLBError`           a graph that cannot be valid LLB (``ValueError``)
:class:`Unreachable`        the daemon cannot be reached (``ConnectionError``)
:class:`Unsupported`        the daemon lacks a capability or exporter
:class:`SolveError`         a build step failed; carries the step and its log
:class:`DaemonGone`         the daemon went away during a solve
==========================  ====================================================
"""

from __future__ import annotations

from typing import Sequence


class BuildKitError(Exception):
    """Base of every error buildkit-py raises for its caller."""


class InvalidAddress(BuildKitError, ValueError):
    """A daemon address that cannot be parsed, e.g. ``ftp://x``."""


class LLBError(BuildKitError, ValueError):
    """A graph that cannot be expressed as valid LLB: a bad image reference,
    a relative mount target, a named owner on scratch, an empty command…"""


class Unreachable(BuildKitError, ConnectionError):
    """The daemon did not answer. ``reason`` says how: ``"missing"`` (no socket
    there), ``"refused"``, ``"timeout"``, ``"tls"`` (the TLS handshake failed:
    an untrusted server certificate, or the server refused ours) or ``"other"``."""

    def __init__(self, address: object, why: str, reason: str = "other") -> None:
        self.address = address
        self.why = why
        self.reason = reason
        super().__init__(f"cannot reach BuildKit at {address}: {why}")


class Unsupported(BuildKitError):
    """The daemon is too old, or set up without, a feature the request uses.

    ``engine`` describes the daemon with its version, as
    :meth:`buildkit.client.Client.engine` does (``Docker engine 26.1.5``,
    ``BuildKit v0.13.2``): the message names the engine, its address and
    the feature.
    """

    def __init__(self, feature: str, address: object, engine: str = "BuildKit", hint: str = "") -> None:
        self.feature = feature
        self.engine = engine or "BuildKit"
        message = f"{self.engine} at {address} does not support {feature}"
        super().__init__(f"{message}; {hint}" if hint else message)


class DaemonGone(BuildKitError):
    """The daemon closed the connection during a solve (restarted or crashed)."""


class SolveError(BuildKitError):
    """A step failed: carries the step's name, command, exit code and log tail."""

    def __init__(self, step: str, error: str, command: str | None = None, step_exit_code: int | None = None,
                 log_tail: Sequence[str] = ()) -> None:
        self.step = step
        self.error = error
        self.command = command
        self.step_exit_code = step_exit_code  # the failed command's own exit code
        self.log_tail = list(log_tail)
        head = f"step {step!r} failed"
        if step_exit_code is not None:
            head += f" with exit code {step_exit_code}"
        super().__init__(f"{head}: {error}")

    def report(self) -> str:
        """A multi-line report: the step, its command, exit code and the log tail."""
        lines = [str(self)]
        if self.command:
            lines.append(f"  command: {self.command}")
        if self.log_tail:
            lines.append("  last log lines:")
            lines.extend(f"    {line}" for line in self.log_tail)
        return "\n".join(lines)
