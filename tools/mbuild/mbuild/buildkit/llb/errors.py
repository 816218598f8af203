"""The one error type the LLB builder raises."""

from __future__ import annotations

from ...errors import ConfigError


class LLBError(ConfigError, ValueError):
    """A graph that cannot be expressed as valid LLB: a bad image reference,
    a relative mount target, a named owner on scratch, an empty command…

    It is a :class:`ConfigError` (the user can act on it) and a ``ValueError``
    (code that only knows the standard library can still catch it).
    """
