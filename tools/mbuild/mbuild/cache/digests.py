"""Content digests of workspace files, through a stat cache.

Hashing every source file on every build is the slow part of a no-op build,
so digests are remembered per file with the stat facts that would change if
the file did: size, mtime (ns), ctime (ns) and inode. A file whose facts match
is not reread.

A file changed twice within the clock's resolution keeps its mtime; to stay
correct, an entry is trusted only if the file's mtime is older than the
moment its digest was recorded minus a safety margin ("racily clean" files,
as git calls them, are rehashed until they age). ctime also changes on
rename-over and chmod, which mtime alone would miss.

The cache is a SQLite database (stdlib, safe for concurrent processes) in
the cache folder. It holds absolute paths, but nothing derived from it does:
only digests reach action keys. Written here rather than taken from a
library because no maintained library offers a persistent stat cache.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat as statmod
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

RACY_MARGIN_NS = 2_000_000_000  # mtime granularity on the coarsest filesystems
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class FileDigest:
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
            db_path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._db = sqlite3.connect(str(db_path), timeout=30, isolation_level=None)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute(
                    "CREATE TABLE IF NOT EXISTS stat (path TEXT PRIMARY KEY, size INTEGER, mtime INTEGER,"
                    " ctime INTEGER, ino INTEGER, mode INTEGER, digest TEXT, recorded INTEGER)"
                )
            except sqlite3.Error:
                self._db = None  # a broken cache file means no cache, never a failed build

    def _known(self, paths: list[str]) -> dict[str, tuple]:
        if self._db is None or not paths:
            return {}
        out: dict[str, tuple] = {}
        try:
            if len(paths) > 2000:  # many files: one scan beats thousands of lookups
                wanted = set(paths)
                for row in self._db.execute(
                        "SELECT path, size, mtime, ctime, ino, mode, digest, recorded FROM stat"):
                    if row[0] in wanted:
                        out[row[0]] = row[1:]
                return out
            for i in range(0, len(paths), 900):
                chunk = paths[i:i + 900]
                q = "SELECT path, size, mtime, ctime, ino, mode, digest, recorded FROM stat WHERE path IN (%s)" % (
                    ",".join("?" * len(chunk)))
                for row in self._db.execute(q, chunk):
                    out[row[0]] = row[1:]
        except sqlite3.Error:
            return {}
        return out

    def digest_files(self, root: Path, relpaths: Iterable[str]) -> dict[str, FileDigest]:
        """Digest each workspace-relative path (files or symlinks).

        A missing file raises FileNotFoundError naming its relative path.
        """
        base = f"{root}/"
        absolute = {rel: base + rel for rel in relpaths}
        known = self._known(list(absolute.values()))
        now = time.time_ns()
        out: dict[str, FileDigest] = {}
        for rel, path in absolute.items():
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                raise FileNotFoundError(2, "no such source file", rel) from None
            if statmod.S_ISLNK(st.st_mode):
                target = os.readlink(path)
                out[rel] = FileDigest(rel, hashlib.sha256(target.encode()).hexdigest(), len(target), False, True)
                continue
            row = known.get(path)
            facts = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_mode)
            if row is not None and tuple(row[:5]) == facts and st.st_mtime_ns < row[6] - RACY_MARGIN_NS:
                digest = row[5]
            else:
                digest = hash_file(path)
                self._pending.append((path, *facts, digest, now))
            out[rel] = FileDigest(rel, digest, st.st_size, bool(st.st_mode & 0o111))
        self.flush()
        return out

    def flush(self) -> None:
        if self._db is None or not self._pending:
            self._pending.clear()
            return
        try:
            self._db.executemany("INSERT OR REPLACE INTO stat VALUES (?,?,?,?,?,?,?,?)", self._pending)
        except sqlite3.Error:
            pass
        self._pending.clear()

    def close(self) -> None:
        self.flush()
        if self._db is not None:
            self._db.close()
            self._db = None
