"""Writing a file so that readers see the old content or the new, never half."""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator


def write_bytes(path: Path, data: bytes, *, mode: int | None = None, durable: bool = False) -> None:
    """Write ``data`` to a temp file beside ``path`` and rename it into place.

    ``mode`` sets the permissions (temp files start at 0600); ``durable``
    syncs the data to disk before the rename.
    """
    with writing(path, mode=mode, durable=durable) as f:
        f.write(data)


@contextlib.contextmanager
def writing(path: Path, *, mode: int | None = None, durable: bool = False, umasked: bool = False,
            suffix: str = "") -> Iterator[BinaryIO]:
    """The open temp file beside ``path``; renamed into place when the block
    ends, removed if it raises.

    ``mode`` and ``durable`` as for :func:`write_bytes`; ``umasked`` gives the
    file the permissions ``open()`` would (0666 less the umask: a file the
    user made) instead of 0600, without reading the process-wide umask (which
    would change it, for every thread, while it is read).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if umasked:
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(6)}{suffix}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    else:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            if durable:
                f.flush()
                os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
