"""Content digests of workspace files, through a stat cache.

Hashing every source file on every build is the slow part of a no-op build,
so digests are remembered per file with the stat facts that would change if
the file did: size, mtime (ns), ctime (ns) and inode. A file whose facts match
is not reread.

A file changed twice within the clock's resolution keeps its mtime; to stay
correct, a digest is recorded only once the file's mtime is older than the
moment of reading minus a safety margin ("racily clean" files, as git calls
them, are rehashed until they age). ctime also changes on rename-over and
chmod, which mtime alone would miss.

The cache is a SQLite database (stdlib, safe for concurrent processes) in
the cache folder, one row per file: its path, its stat facts packed into one
small blob (compared as bytes, never unpacked) and its digest. A warm digest
of 100,000 files reads them all in one scan. It holds absolute paths, but
nothing derived from it does: only digests reach action keys. Written here
rather than taken from a library because no maintained library offers a
persistent stat cache.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat as statmod
import struct
import time
from pathlib import Path
from typing import Iterable, NamedTuple

from ..loading.sources import SourceChecker

RACY_MARGIN_NS = 2_000_000_000  # mtime granularity on the coarsest filesystems
_CHUNK = 1 << 20
_FACTS = struct.Struct("<qqqQq")  # size, mtime ns, ctime ns, inode (unsigned: may use all 64 bits), mode
_TABLE = "files"  # (the first layout's table, "stat", is dropped on sight)


class FileDigest(NamedTuple):
    """One file's digest (a tuple: 100,000 of them are made per warm build)."""

    path: str  # workspace-relative
    sha256: str  # hex; for symlinks, the digest of the link target text
    size: int
    executable: bool
    symlink: bool = False

    def key_part(self) -> str:
        kind = "l" if self.symlink else ("x" if self.executable else "f")
        return f"{kind}:{self.sha256}"


def hash_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


class StatCache:
    """Digest files of one workspace, rereading only files whose stat changed."""

    def __init__(self, db_path: Path | None) -> None:
        self._db: sqlite3.Connection | None = None
        self._pending: list[tuple] = []
        if db_path is not None:
            from .store import make_store_folder  # (store.py imports this module)

            make_store_folder(db_path.parent)
            try:
                self._db = sqlite3.connect(str(db_path), timeout=30, isolation_level=None)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute(f"CREATE TABLE IF NOT EXISTS {_TABLE} (path TEXT PRIMARY KEY, facts BLOB, digest TEXT)")
                if self._db.execute("SELECT 1 FROM sqlite_master WHERE name = 'stat'").fetchone():
                    self._db.execute("DROP TABLE IF EXISTS stat")
            except sqlite3.Error:
                self._db = None  # a broken cache file means no cache, never a failed build

    def _known(self, paths: list[str]) -> dict[str, tuple[bytes, str]]:
        """path -> (packed facts, digest) of the recorded ``paths`` (maybe more)."""
        if self._db is None or not paths:
            return {}
        try:
            if len(paths) > 2000:  # many files: one scan beats thousands of lookups
                return {row[0]: row[1:] for row in self._db.execute(f"SELECT path, facts, digest FROM {_TABLE}")}
            out: dict[str, tuple[bytes, str]] = {}
            for i in range(0, len(paths), 900):
                chunk = paths[i:i + 900]
                q = f"SELECT path, facts, digest FROM {_TABLE} WHERE path IN ({','.join('?' * len(chunk))})"
                for row in self._db.execute(q, chunk):
                    out[row[0]] = row[1:]
            return out
        except sqlite3.Error:
            return {}

    def digest_files(self, root: Path, relpaths: Iterable[str]) -> dict[str, FileDigest]:
        """Digest each workspace-relative path (files or symlinks).

        A missing file raises FileNotFoundError naming its relative path; a
        path that is not a source file (``..``, under a symlinked folder, a
        directory, excluded by .dockerignore: :mod:`mbuild.loading.sources`)
        raises SourceError, before anything of it is read.
        """
        base = f"{root}/"
        relpaths = list(relpaths)
        known = self._known([base + rel for rel in relpaths])
        aged = time.time_ns() - RACY_MARGIN_NS  # files modified before this may be recorded
        out: dict[str, FileDigest] = {}
        lstat, pack, islink, get = os.lstat, _FACTS.pack, statmod.S_ISLNK, known.get
        checker = SourceChecker(root)
        check_path, check = checker.check_path, checker.check
        for rel in relpaths:
            check_path(rel)
            path = base + rel
            try:
                st = lstat(path)
            except FileNotFoundError:
                raise FileNotFoundError(2, "no such source file", rel) from None
            mode = st.st_mode
            check(rel, mode)
            if islink(mode):
                target = os.readlink(path)
                out[rel] = FileDigest(rel, hashlib.sha256(target.encode()).hexdigest(), len(target), False, True)
                continue
            facts = pack(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, mode)
            row = get(path)
            if row is not None and row[0] == facts:
                digest = row[1]
            else:
                digest = hash_file(path)
                if st.st_mtime_ns < aged:
                    self._pending.append((path, facts, digest))
            out[rel] = FileDigest(rel, digest, st.st_size, bool(mode & 0o111))
        self.flush()
        return out

    def flush(self) -> None:
        if self._db is None or not self._pending:
            self._pending.clear()
            return
        try:
            self._db.executemany(f"INSERT OR REPLACE INTO {_TABLE} VALUES (?,?,?)", self._pending)
        except sqlite3.Error:
            pass
        self._pending.clear()

    def close(self) -> None:
        self.flush()
        if self._db is not None:
            self._db.close()
            self._db = None
