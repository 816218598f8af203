"""The warm server's stamps: each command's no-op stamp held decoded, and
watched, so that the process a command is forked into looks again only at
the paths that may have changed since the stamp was written — not at every
file of the workspace (at 10,000 targets, ~7,000 lstat calls and a 1 MB read
on every command, twice).

Why it is exact (the server must never answer from a stale view):

1. After a command's process ends, the server reads its stamp if the file is
   new, and watches (:mod:`mbuild.inotify`) every folder the stamp records
   and every folder holding a file it records, and each of those files.
2. It registers the entry — from then on every event marks the path it names —
   and only then compares every recorded fact with ``lstat`` now, marking the
   paths that differ. A change made before a path's comparison is seen by it;
   one made after the registration reaches the entry as an event.
3. Before forking a command's process, the server reads every queued event (the
   kernel queues an event before the write that causes it returns) and hands
   the process the stamp and a copy of its marked paths
   (:data:`mbuild.fastpath.warm`). The process uses them only if the stamp
   file is still the one the server read; otherwise it reads the file and
   checks everything, as without a server.

A path no watch can vouch for is marked from the start, so it is looked at on
every command: one in a folder that is missing, reached through a symlink or
on a filesystem others can change without this kernel seeing it (NFS, FUSE), or
beyond the server's share of the user's inotify watches. A watched folder
that is removed or moved, or a queue that overflowed, drops every entry: the
next commands check everything until their stamps are read again.
``MBUILD_WATCH=0`` in the server's environment turns watching off.
"""

from __future__ import annotations

import marshal
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from . import fastpath, inotify

ENTRY_LIMIT = 8  # stamps held at once (one per command line and folder), least recently used dropped
_FILE_EVENTS = inotify.MODIFY | inotify.ATTRIB | inotify.CLOSE_WRITE | inotify.DELETE_SELF | inotify.MOVE_SELF


def identity(path: str) -> tuple | None:
    """What tells one stamp file from the next (each is written anew and renamed into place)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


@dataclass
class _Entry:
    identity: tuple
    doc: dict
    marked: set[str] = field(default_factory=set)
    ready: bool = False  # its facts have all been compared


class WarmStamps:
    """The stamps one server holds, with the watches that keep them exact."""

    def __init__(self, watches: inotify.Inotify, watch_budget: int) -> None:
        self._inotify = watches
        self._budget = watch_budget
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._loading: dict[str, threading.Event] = {}
        self._watched: dict[str, int] = {}  # path -> watch descriptor
        self._by_wd: dict[int, tuple[str, bool]] = {}  # watch descriptor -> (path, is a folder)
        self._inodes: dict[str, int] = {}  # file -> the inode its watch is on
        self._unwatchable: set[str] = set()

    @classmethod
    def open(cls) -> "WarmStamps | None":
        """Stamps for a server, or None when this system cannot watch files (or ``MBUILD_WATCH=0``)."""
        if os.environ.get("MBUILD_WATCH") == "0" or not inotify.available():
            return None
        try:
            watches = inotify.Inotify()
        except OSError:
            return None
        return cls(watches, _watch_budget())

    def close(self) -> None:
        self._inotify.close()

    # ------------------------------------------------------------------ forking a command

    def snapshot(self, path: str) -> tuple[tuple, dict, frozenset[str]] | None:
        """The stamp at ``path`` as held, for a command about to be forked:
        (the file's identity, its document, the paths that may have changed)."""
        with self._lock:
            loading = self._loading.get(path)
        if loading is not None:
            loading.wait(1.0)  # a stamp written by the previous command is being read: worth the wait
        self.drain()
        with self._lock:
            entry = self._entries.get(path)
            if entry is None or not entry.ready:
                return None
            self._entries.move_to_end(path)
            return entry.identity, entry.doc, frozenset(entry.marked)

    def drain(self) -> None:
        """Mark the paths that every queued event names."""
        with self._lock:
            try:
                events = self._inotify.read()
            except OSError:
                self._entries.clear()
                return
            for wd, mask, name in events:
                if mask & inotify.Q_OVERFLOW:
                    self._entries.clear()  # events were lost
                    continue
                watched = self._by_wd.get(wd)
                if watched is None:
                    continue
                where, folder = watched
                if mask & inotify.IGNORED:
                    del self._by_wd[wd]
                    if self._watched.get(where) == wd:
                        del self._watched[where]
                        self._inodes.pop(where, None)
                if folder and mask & inotify.LOST:
                    self._entries.clear()  # the watch no longer names this path
                    continue
                paths = (os.path.join(where, name), where) if name else (where,)
                for entry in self._entries.values():
                    entry.marked.update(paths)

    # ------------------------------------------------------------------ after a command

    def refresh(self, path: str) -> None:
        """Hold the stamp at ``path`` as it is now (nothing to do if already held)."""
        with self._lock:
            if path in self._loading:
                return
            done = self._loading[path] = threading.Event()
        try:
            self._refresh(path)
        finally:
            with self._lock:
                del self._loading[path]
            done.set()

    def _refresh(self, path: str) -> None:
        now = identity(path)
        with self._lock:
            held = self._entries.get(path)
        if held is not None and held.identity == now:
            return
        if now is None:
            with self._lock:
                self._entries.pop(path, None)
            return
        with fastpath.collector_paused():
            try:
                with open(path, "rb") as f:
                    doc = marshal.loads(f.read())
            except (OSError, ValueError, EOFError, TypeError):
                return
            if not isinstance(doc, dict) or doc.get("version") != fastpath.STAMP_VERSION:
                return
            if not set(fastpath.tool_files()) <= doc["files"].keys():
                return  # written before one of mbuild's modules was added: never answers
            files, folders = doc["files"], doc["dirs"]
            unwatched = self._watch(folders.keys() | {os.path.dirname(p) for p in files}, folder=True)
            unwatched |= self._watch(files.keys(), folder=False)
            self.drain()
            with self._lock:
                # What to compare with lstat now: every path, unless the stamp
                # held before (whose entry got every event up to this moment)
                # vouches for it: unmarked there, and recorded the same.
                before = self._entries.get(path) if held is not None else None
                if before is not None and not before.ready:
                    before = None
                suspects = []
                for old, new in ((before.doc["files"], files), (before.doc["dirs"], folders)) if before else ():
                    suspects.extend(p for p, facts in new.items() if p in before.marked or old.get(p, ...) != facts)
                entry = _Entry(now, doc, {p for p in files if p in unwatched or os.path.dirname(p) in unwatched})
                entry.marked.update(d for d in folders if d in unwatched)
                self._entries[path] = entry
                self._entries.move_to_end(path)
                while len(self._entries) > ENTRY_LIMIT:
                    self._entries.popitem(last=False)
            # Compared only now that events reach the entry (see the module's docstring).
            if before is None:
                suspects = [*files, *folders]
            recorded = {**files, **folders}
            for p in suspects:
                if fastpath.lstat_facts(p) != recorded[p]:
                    entry.marked.add(p)
            entry.ready = True

    def _watch(self, paths, folder: bool) -> set[str]:
        """Watch each of ``paths`` not watched yet (a file: not this inode of it); the ones no watch vouches for."""
        unwatched = set()
        for p in paths:
            if folder and p in self._watched:
                continue
            if folder and (p in self._unwatchable or not inotify.watchable(p)):
                self._unwatchable.add(p)
                unwatched.add(p)
                continue
            if not folder:
                try:
                    inode = os.lstat(p).st_ino
                except OSError:
                    unwatched.add(p)  # recorded as missing: looked at every time (there are few)
                    continue
                if self._inodes.get(p) == inode:
                    continue
            if len(self._by_wd) >= self._budget:
                unwatched.add(p)
                continue
            try:
                wd = self._inotify.watch_folder(p) if folder else self._inotify.watch_file(p, _FILE_EVENTS)
            except OSError:
                unwatched.add(p)  # gone meanwhile, or no watches left
                continue
            with self._lock:
                self._watched[p] = wd
                self._by_wd[wd] = (p, folder)
                if not folder:
                    self._inodes[p] = inode
        return unwatched


def _watch_budget() -> int:
    """How many watches one server may hold: a quarter of the user's limit
    (editors and other tools watch too), at most 200,000."""
    try:
        with open("/proc/sys/fs/inotify/max_user_watches") as f:
            limit = int(f.read())
    except (OSError, ValueError):
        limit = 8192
    return min(limit // 4, 200_000)
