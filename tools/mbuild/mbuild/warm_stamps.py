"""The warm server's stamps: each command's no-op stamp held decoded, and
watched, so that the process a command is forked into looks again only at
the paths that may have changed since the stamp was written — not at every
file of the workspace (at 10,000 targets, ~7,000 lstat calls and a 1 MB read
on every command, twice).

Why it is exact (the server must never answer from a stale view):

1. After a command's process ends, the server reads its stamp if the file is
   new, and watches (:mod:`mbuild.inotify`) every folder the stamp records,
   every folder holding a file it records, each of those files (its inode:
   a write through a hard link elsewhere reaches no folder's watch), and every
   folder above them up to ``/`` (renamed or removed, they take the paths
   below with them).
2. It registers the entry — from then on every event marks the recorded
   paths it names — and only then compares every recorded fact with
   ``lstat`` now, marking the paths that differ. A change made before a
   path's comparison is seen by it; one made after the registration reaches
   the entry as an event. A stamp written anew is compared only where the one
   held before it cannot vouch: paths it marked, or recorded otherwise.
3. Before forking a command's process, the server reads every queued event (the
   kernel queues an event before the write that causes it returns) and hands
   the process the stamp and a copy of its marked paths
   (:data:`mbuild.fastpath.warm`). The process uses them only if the stamp
   file is still the one the server read; otherwise it reads the file and
   checks everything, as without a server.

A path no watch can vouch for is marked for good, so it is looked at on
every command: one in a folder that is missing, reached through a symlink or
on a filesystem others can change without this kernel seeing it (NFS, FUSE), or
beyond the server's share of the user's inotify watches, or whose watch went
away. A watched folder removed or moved (its watch would follow it, naming
other entries by the old path), or an overflowing queue, drops every entry and
every watch: the next commands check everything until their stamps are read
again. So does a watch lost while a stamp was being read. Not seen, as by
every inotify watcher: a filesystem mounted over a watched folder, and writes
through a shared memory mapping. ``MBUILD_WATCH=0`` in the server's
environment turns watching off.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from . import fastpath, inotify

ENTRY_LIMIT = 8  # stamps held at once (one per command line and folder), least recently used dropped
_FILE_EVENTS = inotify.MODIFY | inotify.ATTRIB | inotify.CLOSE_WRITE | inotify.SELF_GONE
FOLDER, FILE, ABOVE = "folder", "file", "above"  # what a watch is for


def identity(path: str) -> tuple | None:
    """What tells one stamp file from the next (each is written anew and renamed into place)."""
    try:
        return _identity(os.stat(path))
    except OSError:
        return None


def _identity(st: os.stat_result) -> tuple:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


@dataclass
class _Entry:
    identity: tuple
    doc: dict
    marked: set[str] = field(default_factory=set)
    ready: bool = False  # its facts have all been compared

    def mark(self, paths) -> None:
        files, folders = self.doc["files"], self.doc["dirs"]
        self.marked.update(p for p in paths if p in files or p in folders)


class WarmStamps:
    """The stamps one server holds, with the watches that keep them exact."""

    def __init__(self, watch_budget: int) -> None:
        self._budget = watch_budget
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._loading: dict[str, threading.Event] = {}
        self._reset()

    def _reset(self) -> None:
        """No entries and no watches: a fresh inotify instance (called with the
        lock held, or at start). Without one, nothing is held from then on."""
        self._entries.clear()
        self._watched: dict[tuple[str, str], tuple[int, int]] = {}  # (path, what for) -> (wd, inode)
        self._by_wd: dict[int, set[tuple[str, str]]] = {}  # one inode, one wd: hard links share it
        self._unwatchable: set[str] = set()
        self._epoch = getattr(self, "_epoch", 0) + 1  # a stamp read across a reset or a lost watch is dropped
        old = getattr(self, "_inotify", None)
        if old is not None:
            old.close()
        try:
            self._inotify = inotify.Inotify()
        except OSError:
            if old is None:
                raise  # at start: no watching at all (open() says None)
            self._inotify = inotify.Closed()
            self._budget = 0  # nothing is watched, so every path is marked: never stale

    @classmethod
    def open(cls) -> "WarmStamps | None":
        """Stamps for a server, or None when this system cannot watch files (or ``MBUILD_WATCH=0``)."""
        if os.environ.get("MBUILD_WATCH") == "0" or not inotify.available():
            return None
        try:
            return cls(_watch_budget())
        except OSError:
            return None

    def close(self) -> None:
        with self._lock:
            self._inotify.close()

    # ------------------------------------------------------------------ forking a command

    def snapshot(self, path: str) -> tuple[tuple, dict, frozenset[str]] | None:
        """The stamp at ``path`` as held, for a command about to be forked:
        (the file's identity, its document, the paths that may have changed)."""
        with self._lock:
            loading = self._loading.get(path)
        if loading is not None:
            loading.wait(0.5)  # a stamp written by the previous command is being read: worth the wait
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
                self._reset()
                return
            for wd, mask, name in events:
                if mask & inotify.Q_OVERFLOW:
                    self._reset()  # events were lost: nothing held can be vouched for
                    return
                for where, what in list(self._by_wd.get(wd, ())):
                    if what != FILE and mask & (inotify.SELF_GONE | inotify.IGNORED):
                        self._reset()  # the watch would follow the folder, naming other entries by this path
                        return
                    if mask & (inotify.SELF_GONE | inotify.IGNORED):
                        self._forget(wd)  # a file's inode gone or moved: its path is looked at from now on
                    if what == FOLDER:
                        paths = (os.path.join(where, name), where) if name else (where,)
                    else:
                        paths = (where,) if what == FILE else ()
                    for entry in self._entries.values():
                        entry.mark(paths)

    def _forget(self, wd: int) -> None:
        """Drop watch ``wd``: its paths are marked in every entry (no watch vouches for them now)."""
        paths = self._by_wd.pop(wd, set())
        for key in paths:
            if self._watched.get(key, (None,))[0] == wd:
                del self._watched[key]
        for entry in self._entries.values():
            entry.mark(p for p, _ in paths)
        self._inotify.unwatch(wd)
        self._epoch += 1

    # ------------------------------------------------------------------ after a command

    def expect(self, path: str) -> None:
        """Say that the stamp at ``path`` is about to be read again (a command
        that may have written it has ended): the next snapshot waits for it."""
        with self._lock:
            self._loading.setdefault(path, threading.Event())

    def refresh(self, path: str) -> None:
        """Hold the stamp at ``path`` as it is now (nothing to do if already held)."""
        with self._lock:
            done = self._loading.setdefault(path, threading.Event())
        try:
            self._refresh(path)
        except OSError:
            with self._lock:
                self._entries.pop(path, None)
        finally:
            with self._lock:
                if self._loading.get(path) is done:
                    del self._loading[path]
            done.set()

    def _refresh(self, path: str) -> None:
        try:
            f = open(path, "rb")
        except OSError:
            with self._lock:
                self._entries.pop(path, None)
            return
        with f, fastpath.collector_paused():
            now = _identity(os.fstat(f.fileno()))
            with self._lock:
                held = self._entries.get(path)
            if held is not None and held.identity == now:
                return
            doc = fastpath.decode_stamp(f.read())
            if doc is None:
                return
            files, folders = doc["files"], doc["dirs"]
            self.drain()  # (a watch lost before now is known lost)
            with self._lock:
                epoch = self._epoch
            parents = folders.keys() | {os.path.dirname(p) for p in files}
            unwatched = self._watch(parents, FOLDER) | self._watch(files.keys(), FILE)
            blind = bool(self._watch(_above(parents - unwatched), ABOVE))  # a folder above cannot be watched
            with self._lock:
                if self._epoch != epoch:
                    return  # a watch was lost meanwhile: read again after the next command
                # What to compare with lstat now: every path, unless the stamp
                # held before (whose entry got every event up to this moment)
                # vouches for it: unmarked there, and recorded the same.
                before = self._entries.get(path)
                if before is not None and not before.ready:
                    before = None
                suspects = [*files, *folders] if before is None else [
                    p for old, new in ((before.doc["files"], files), (before.doc["dirs"], folders))
                    for p, facts in new.items() if p in before.marked or old.get(p, ...) != facts]
                entry = _Entry(now, doc)
                entry.mark(p for p in files if blind or p in unwatched or os.path.dirname(p) in unwatched)
                entry.mark(d for d in folders if blind or d in unwatched)
                self._entries[path] = entry
                self._entries.move_to_end(path)
                while len(self._entries) > ENTRY_LIMIT:
                    self._entries.popitem(last=False)
            # Compared only now that events reach the entry (see the module's docstring).
            recorded = {**files, **folders}
            entry.mark(p for p in suspects if fastpath.lstat_facts(p) != recorded[p])
            entry.ready = True

    def _watch(self, paths, what: str) -> set[str]:
        """Watch the inode now at each of ``paths`` (once); the paths no watch vouches for."""
        unwatched = set()
        mask = inotify.FOLDER_EVENTS if what == FOLDER else _FILE_EVENTS if what == FILE else inotify.SELF_GONE
        for p in paths:
            if what != FILE and p in self._unwatchable:
                unwatched.add(p)
                continue
            try:
                inode = os.lstat(p).st_ino
            except OSError:
                unwatched.add(p)  # missing (a file recorded as absent): looked at every time
                continue
            held = self._watched.get((p, what))
            if held is not None and held[1] == inode:
                continue
            if held is not None:  # another inode at this path: its old watch's events may not be read yet
                with self._lock:
                    if what == FILE:
                        self._forget(held[0])  # marked in every entry; a stamp being read is dropped
                    else:
                        self._reset()  # the old watch follows the folder elsewhere, as a drain would find
                held = None
            if what == FOLDER and not inotify.watchable(p):
                self._unwatchable.add(p)
                unwatched.add(p)
                continue
            if len(self._by_wd) >= self._budget:
                unwatched.add(p)
                continue
            with self._lock:
                try:
                    wd = self._inotify.watch(p, mask, folder=what != FILE)
                except OSError:
                    unwatched.add(p)  # gone meanwhile, or no watches left
                    continue
                self._watched[(p, what)] = (wd, inode)
                self._by_wd.setdefault(wd, set()).add((p, what))
        return unwatched


def _above(folders) -> set[str]:
    """Every folder above ``folders``, up to ``/``."""
    out: set[str] = set()
    for folder in folders:
        parent = os.path.dirname(folder)
        while parent not in out and parent != folder:
            out.add(parent)
            folder, parent = parent, os.path.dirname(parent)
    return out


def _watch_budget() -> int:
    """How many watches one server may hold: a quarter of the user's limit
    (editors and other tools watch too), at most 200,000."""
    try:
        with open("/proc/sys/fs/inotify/max_user_watches") as f:
            limit = int(f.read())
    except (OSError, ValueError):
        limit = 8192
    return min(limit // 4, 200_000)
