"""A bug in rule code, shown the way a BUILD file error is: one line at its file:line.

Rule code is the workspace's own code: an exception escaping a rule
implementation (or a GeneratedFile's render function) is reported at the
innermost line of rule code the traceback passes through, naming the target,
as a ConfigError (exit 2); a value LLB refuses (``LLBError``: a port like
``80000``, an empty env name) at the target's BUILD line instead, since it
almost always comes from an attribute. ``--debug`` still shows the whole
traceback.
"""

from __future__ import annotations

from typing import Iterable

from buildkit.errors import LLBError

from ..errors import ConfigError, at, innermost_frame
from ..loading.labels import Label
from ..loading.schema import Location


def _rule_file(filename: str, rule_files: Iterable[str]) -> str | None:
    for path in rule_files:
        if filename == path or filename.endswith("/" + path):
            return path
    return None


def error_in_rule_code(exc: BaseException, what: Label | str, rule_files: Iterable[str],
                       doing: str = "analysing", target_at: Location | None = None) -> ConfigError:
    """The one-line error for ``exc``, raised by rule code while ``doing``
    ``what`` (a target's label, or the module being loaded). ``target_at``:
    the target's BUILD line, where an invalid LLB value is reported."""
    rule_files = tuple(rule_files)
    where = innermost_frame(exc, lambda filename: _rule_file(filename, rule_files))
    text = " ".join(str(exc).split()) or "(no message)"
    if target_at is not None and isinstance(exc, LLBError):
        # A value BuildKit cannot take (a port, an owner, an env name): it
        # comes from the target's attributes far more often than from a bug.
        raised = f" (raised at {where[0]}:{where[1]})" if where else ""
        return target_at.error(f"{what}: {text}; check the target's attributes{raised}")
    message = f"{type(exc).__name__} while {doing} {what}: {text}; fix the rule code"
    if where is None:
        return ConfigError(f"{what}: {message}")
    return ConfigError(at(where[0], where[1], message))
