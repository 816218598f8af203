"""Writing files under the output folder: atomically, never half-written."""

from __future__ import annotations

from pathlib import Path

from ..atomicfile import write_bytes


def write_atomic(path: Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` (synced, mode 0644); False if it already held it."""
    try:
        if path.read_bytes() == data:
            return False
    except OSError:
        pass
    write_bytes(path, data, mode=0o644, durable=True)
    return True
