"""Mounts for :meth:`State.run`: ``bind``, ``cache``, ``tmpfs``, ``secret``, ``ssh``.

A mount is a plain immutable value; ``run`` turns its source State into an
op input. Targets must be absolute.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import LLBError

if TYPE_CHECKING:  # pragma: no cover
    from .state import State

BIND, CACHE, TMPFS, SECRET, SSH = "bind", "cache", "tmpfs", "secret", "ssh"
SHARING = {"shared": 0, "private": 1, "locked": 2}  # CacheSharingOpt
DEFAULT_SSH_DEST = "/run/buildkit/ssh_agent.0"


@dataclass(frozen=True)
class Mount:
    kind: str
    dest: str
    source: Any = None  # a State, or None (scratch / no input)
    selector: str = ""
    readonly: bool = False
    id: str = ""  # cache / secret / ssh id
    sharing: str = "shared"
    size: int = 0  # tmpfs bytes, 0 = default
    uid: int = 0
    gid: int = 0
    mode: int = 0
    optional: bool = False

    def __post_init__(self) -> None:
        if not self.dest.startswith("/"):
            raise LLBError(f"mount target {self.dest!r} must be an absolute path")
        if self.kind == CACHE and self.sharing not in SHARING:
            raise LLBError(f"cache mount sharing {self.sharing!r}: want one of {', '.join(SHARING)}")
        if self.kind in (CACHE, SECRET, SSH) and not self.id:
            raise LLBError(f"{self.kind} mount at {self.dest} needs an id")
        if self.kind == TMPFS and self.size < 0:
            raise LLBError("tmpfs size must be >= 0")

    @property
    def has_output(self) -> bool:
        """Only writable bind mounts (the root included) produce results."""
        return self.kind == BIND and not self.readonly


def bind(dest: str, source: "State", selector: str = "", readonly: bool = False) -> Mount:
    """Mount ``source`` (its ``selector`` subdirectory) at ``dest``. A writable
    bind mount is an output: read it back with ``ExecState.get_mount(dest)``."""
    return Mount(BIND, dest, source=source, selector=selector, readonly=readonly)


def cache(dest: str, id: str, sharing: str = "shared", source: "State | None" = None,
          selector: str = "") -> Mount:
    """A persistent cache directory shared between builds (``sharing``:
    shared, private or locked). ``source`` seeds it when first created."""
    return Mount(CACHE, dest, source=source, selector=selector, id=id, sharing=sharing)


def tmpfs(dest: str, size: int = 0) -> Mount:
    return Mount(TMPFS, dest, size=size)


def secret(dest: str, id: str, uid: int = 0, gid: int = 0, mode: int = 0o400,
           optional: bool = False) -> Mount:
    """The session secret ``id`` as a file at ``dest``."""
    return Mount(SECRET, dest, id=id, uid=uid, gid=gid, mode=mode, optional=optional)


def ssh(dest: str = DEFAULT_SSH_DEST, id: str = "default", uid: int = 0, gid: int = 0,
        mode: int = 0o600, optional: bool = False) -> Mount:
    """The session's SSH agent ``id`` as a socket at ``dest``; the first SSH
    mount also becomes ``SSH_AUTH_SOCK`` unless the env sets it."""
    return Mount(SSH, dest, id=id, uid=uid, gid=gid, mode=mode, optional=optional)
