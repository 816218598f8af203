"""The one error type the LLB builder raises (defined in :mod:`buildkit.errors`)."""

from __future__ import annotations

from ..errors import LLBError

__all__ = ["LLBError"]
