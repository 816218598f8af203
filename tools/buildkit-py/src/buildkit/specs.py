"""What the buildx-style spec parsers share (``--secret``, ``--ssh``)."""

from __future__ import annotations

from typing import Iterable, TypeVar

T = TypeVar("T")


def by_id(values: Iterable[T], what: str, error: type[Exception]) -> dict[str, T]:
    """``values`` keyed by their ``id``, in order; an id given twice raises
    ``error("<what> '<id>' is given twice")``."""
    out: dict[str, T] = {}
    for value in values:
        key = value.id  # type: ignore[attr-defined]
        if key in out:
            raise error(f"{what} {key!r} is given twice")
        out[key] = value
    return out
