"""Linux inotify, as the warm server's file watching needs it: folder
watches, their events, and which filesystems report every change.

Written on ``ctypes`` over libc's three inotify calls and ``statfs``: the
standard library has no binding, and the maintained ones (``inotify_simple``,
``watchdog``) would be a dependency for some 60 lines; ``watchdog`` also
brings threads and polling fallbacks a server that must never answer from a
stale view should not have.

Only what a watch can promise is trusted: a folder on a filesystem whose
changes all pass through this kernel (:data:`LOCAL_FILESYSTEMS`; not NFS,
FUSE or 9p, which a remote writer changes without an event), reached
without symlinks (:func:`watchable`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import struct

MODIFY, ATTRIB, CLOSE_WRITE = 0x2, 0x4, 0x8
MOVED_FROM, MOVED_TO, CREATE, DELETE = 0x40, 0x80, 0x100, 0x200
DELETE_SELF, MOVE_SELF = 0x400, 0x800
Q_OVERFLOW, IGNORED = 0x4000, 0x8000
_ONLYDIR, _DONT_FOLLOW, _MASK_ADD = 0x01000000, 0x02000000, 0x20000000
_NONBLOCK, _CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC

# Everything that can change what lstat says of a folder or of an entry in it.
FOLDER_EVENTS = MODIFY | ATTRIB | CLOSE_WRITE | MOVED_FROM | MOVED_TO | CREATE | DELETE | DELETE_SELF | MOVE_SELF
# The watched inode went away or moved: its watch no longer names its path.
SELF_GONE = DELETE_SELF | MOVE_SELF

# statfs f_type of filesystems whose every change is made through this
# kernel, so an inotify watch sees it (linux/magic.h).
LOCAL_FILESYSTEMS = frozenset({
    0xEF53,      # ext2, ext3, ext4
    0x58465342,  # xfs
    0x9123683E,  # btrfs
    0x01021994,  # tmpfs
    0x794C7630,  # overlayfs
    0xF2F52010,  # f2fs
    0x2FC12FC1,  # zfs
})

_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of name

_libc = None


def _lib():
    global _libc
    if _libc is None:
        lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        lib.inotify_init1.argtypes = [ctypes.c_int]
        lib.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        lib.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.statfs.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
        _libc = lib
    return _libc


def available() -> bool:
    """Whether this system has inotify (Linux with a glibc or musl that exposes it)."""
    try:
        return hasattr(_lib(), "inotify_init1")
    except OSError:
        return False


def filesystem_type(path: str) -> int | None:
    """statfs's f_type for ``path`` (the first field on every Linux ABI), or None."""
    buf = ctypes.create_string_buffer(256)  # larger than any struct statfs
    if _lib().statfs(os.fsencode(path), buf) != 0:
        return None
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF


def watchable(folder: str) -> bool:
    """Whether a watch on ``folder`` sees every change of its entries: it is
    reached without symlinks and lies on a local filesystem."""
    try:
        if os.path.realpath(folder) != os.path.normpath(folder):
            return False
    except OSError:
        return False
    return filesystem_type(folder) in LOCAL_FILESYSTEMS


class Inotify:
    """One inotify instance: folder watches, read without blocking."""

    def __init__(self) -> None:
        fd = _lib().inotify_init1(_NONBLOCK | _CLOEXEC)
        if fd < 0:
            e = ctypes.get_errno()
            raise OSError(e, f"inotify_init1: {os.strerror(e)}")
        self.fd = fd

    def watch(self, path: str, mask: int, folder: bool) -> int:
        """A watch descriptor for the inode at ``path`` (a symlink itself, not
        what it points to). One inode has one descriptor: watching it again
        returns the same one, its mask grown by ``mask`` (never narrowed)."""
        flags = mask | _DONT_FOLLOW | _MASK_ADD | (_ONLYDIR if folder else 0)
        wd = _lib().inotify_add_watch(self.fd, os.fsencode(path), flags)
        if wd < 0:
            e = ctypes.get_errno()
            raise OSError(e, f"inotify_add_watch {path}: {os.strerror(e)}")
        return wd

    def unwatch(self, wd: int) -> None:
        _lib().inotify_rm_watch(self.fd, wd)  # (an error: already gone)

    def read(self) -> list[tuple[int, int, str]]:
        """Every event queued now, as (watch descriptor, mask, entry name or '')."""
        out = []
        while True:
            try:
                data = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return out
            except OSError as e:
                if e.errno == errno.EINTR:
                    continue
                raise
            at = 0
            while at + _EVENT.size <= len(data):
                wd, mask, _, size = _EVENT.unpack_from(data, at)
                at += _EVENT.size
                name = data[at:at + size].rstrip(b"\0")
                at += size
                out.append((wd, mask, os.fsdecode(name)))

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Closed(Inotify):
    """An instance with no watches and no events (what is left when a new one cannot be made)."""

    def __init__(self) -> None:
        self.fd = -1

    def watch(self, path: str, mask: int, folder: bool) -> int:
        raise OSError(errno.EBADF, "no inotify instance")

    def unwatch(self, wd: int) -> None:
        pass

    def read(self) -> list[tuple[int, int, str]]:
        return []
