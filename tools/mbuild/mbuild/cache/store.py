"""The local action cache: a content-addressed store on disk.

Layout under the cache folder (``~/.cache/mbuild`` by default)::

    ac/ab/<key>.json      action key -> result record, with its own checksum
    cas/cd/<sha256>       content blobs (generated files, image blobs)
    last/<sha256(label)>  the key of the last build of a label (for explain)
    locks/<key>.lock      held while a process builds that key
    users/<pid>-<random>  one per process using the store (see below)
    statcache.sqlite      file digests (mbuild.cache.digests)

Every write goes to a temp file in the same folder and is renamed into
place, so readers never see half an entry. A record whose checksum does not
match, or a blob whose content does not match its name, is a miss (and is
removed), never an error or a wrong result. Size is bounded by LRU eviction
on the entries' access times (touched on every hit).

Temporaries all have names that start with a dot: ``.NAME.XXXX`` beside an
entry (:func:`mbuild.atomicfile.write_bytes`), ``.tmp-*`` and ``.*.part``
in ``cas/`` (copies, downloads), and at the top any dot name, such as
``.remote-*/`` (a remote result staged until it checks out) and
``.restore-*.tar`` (an image archive for ``docker load``); a writer that
makes one there must have called :meth:`LocalStore.use` first. A process killed while writing leaves them behind; they
are never read as entries, and they are swept (:meth:`LocalStore.use`) by
the next process that finds itself alone with the store: every process
using the store holds a shared lock on its folder (a ``flock``, released by
the kernel when the process dies, however it dies) and has a session file
in ``users/`` that it removes when it leaves; only a process that gets the
lock exclusively and finds a session file (of a process that is gone)
removes temporaries, so it never takes one from a process still writing
it, and a store no process died in is not scanned. :meth:`LocalStore.verify` checks a store entry by
entry.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import tempfile
import threading
import time
import weakref
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from ..atomicfile import write_bytes
from ..errors import ConfigError
from .digests import hash_file
from .keys import canonical


@dataclass(frozen=True)
class ActionRecord:
    key: str
    label: str
    kind: str
    image: str | None = None
    manifest_digest: str | None = None
    files: Mapping[str, str] = field(default_factory=dict)  # output path -> sha256 (blob in CAS)
    blobs: tuple = ()  # OCI blobs ({"digest","size","mediaType"}) kept for restoring the image
    inputs: Mapping[str, Any] = field(default_factory=dict)  # the key document, for explain
    created: float = 0.0

    def to_json(self) -> dict:
        doc = asdict(self)
        doc["blobs"] = list(self.blobs)
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> "ActionRecord":
        doc = dict(doc)
        doc["blobs"] = tuple(doc.get("blobs") or ())
        return cls(**doc)


def make_store_folder(path: Path) -> None:
    """Create the store's folder ``path`` (with its parents); one that cannot
    be made (under a file, on a read-only or virtual file system) is a
    configuration error naming it, not a failed build."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cache folder {path}: cannot create it ({err.strerror}); point --cache-dir, "
                          f"MBUILD_CACHE_DIR or [cache] dir in WORKSPACE.toml at a folder mbuild can write") from None


class LocalStore:
    def __init__(self, root: Path, max_size: int | None = None) -> None:
        self.root = Path(root).expanduser()
        self.max_size = max_size
        self._use_fd: int | None = None  # see use()
        self._session: Path | None = None
        self._use_close = None  # leaves once: at close() or when the store is collected
        self._use_lock = threading.Lock()

    # ------------------------------------------------------------------ users

    def use(self) -> None:
        """Count this process among the store's users until :meth:`close`
        (or the process ends): a shared ``flock`` on the store folder, and
        a session file ``users/<pid>-<random>`` removed on leaving. A
        process killed -9 leaves its session file; the next process that
        finds itself alone with the store (it gets the lock exclusively)
        and finds a session file of a process that is gone sweeps the
        temporaries and lock files left behind, before it writes anything.
        Called by every method that writes (or locks a key), so a process
        holds the store before it makes a temporary; idempotent. A folder
        that cannot be locked (a file system without ``flock``) is used all
        the same, and never swept."""
        with self._use_lock:
            if self._use_fd is not None:
                return
            make_store_folder(self.root)
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            session = self.root / "users" / f"{os.getpid()}-{secrets.token_hex(4)}"
            self._use_fd, self._use_close = fd, weakref.finalize(self, _leave, fd, session)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pass  # others use the store: their temporaries may be in use
            except OSError:
                return
            else:
                if self._left_behind():
                    self._sweep()
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_SH)  # waits while another process sweeps
            session.parent.mkdir(exist_ok=True)
            session.touch()
            self._session = session

    def close(self) -> None:
        """Stop counting this process among the store's users."""
        with self._use_lock:
            close, self._use_fd, self._use_close, self._session = self._use_close, None, None, None
        if close is not None:
            close()

    def _left_behind(self) -> bool:
        """Whether a process that is gone may have left temporaries: a
        session file (the caller holds the store exclusively, so no live
        process has one), or no ``users/`` yet (a store older than them)."""
        users = self.root / "users"
        return not users.is_dir() or bool(_names(users))

    def _sweep_if_alone(self) -> None:
        """:meth:`_sweep` if no other process uses the store now (the caller
        makes no temporary meanwhile and holds no key lock)."""
        self.use()
        with self._use_lock:
            fd = self._use_fd
            if fd is None:
                return
            try:  # (converting a lock is not atomic; this process writes nothing in between)
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                with contextlib.suppress(OSError):
                    fcntl.flock(fd, fcntl.LOCK_SH)
                return
            try:
                self._sweep()
            finally:
                with contextlib.suppress(OSError):
                    fcntl.flock(fd, fcntl.LOCK_SH)

    def _sweep(self) -> None:
        """Remove every temporary, lock file and other session file; the
        caller holds the store exclusively, so no process is writing one,
        holding a key, or alive with a session."""
        users = self.root / "users"
        others = [users / n for n in _names(users) if users / n != self._session]
        for path in [*self.temporaries(), *self._lock_files(), *others]:
            try:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
            except OSError:
                continue  # gone already, or left for the next sweep

    def temporaries(self) -> list[Path]:
        """The store's temporaries (see the module docstring): in use by a
        process writing them, or left by one that was killed."""
        found = [self.root / name for name in _names(self.root) if name[0] == "."]
        for sub in ("ac", "cas"):
            for shard in _names(self.root / sub):
                found.extend(self.root / sub / shard / n for n in _names(self.root / sub / shard) if n[0] == ".")
        found.extend(self.root / "last" / n for n in _names(self.root / "last") if n[0] == ".")
        return found

    @contextlib.contextmanager
    def temporary_dir(self, prefix: str) -> Iterator[Path]:
        """A folder for an operation's temporaries (an export's archive, a
        download being checked), inside the store as a dot-folder, removed
        afterwards: what a killed process leaves there is swept like any
        temporary of the store's, never left in TMPDIR."""
        self.use()
        path = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{prefix}-"))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def _lock_files(self) -> list[Path]:
        return [self.root / "locks" / n for n in _names(self.root / "locks") if n.endswith(".lock")]

    # ------------------------------------------------------------------ paths

    def _ac(self, key: str) -> Path:
        return self.root / "ac" / key[:2] / f"{key}.json"

    def blob_path(self, sha256: str) -> Path:
        return self.root / "cas" / sha256[:2] / sha256

    def _last(self, workspace: str, label: str) -> Path:
        h = hashlib.sha256(f"{workspace}\0{label}".encode()).hexdigest()
        return self.root / "last" / f"{h}.json"

    @property
    def stat_cache_path(self) -> Path:
        return self.root / "statcache.sqlite"

    # ------------------------------------------------------------------ records

    def get(self, key: str) -> ActionRecord | None:
        path = self._ac(key)
        try:
            raw = path.read_bytes()
            doc = json.loads(raw)
            record = doc["record"]
            if hashlib.sha256(canonical(record)).hexdigest() != doc["sha256"] or record.get("key") != key:
                raise ValueError("checksum mismatch")
            result = ActionRecord.from_json(record)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            with contextlib.suppress(OSError):
                path.unlink()  # corrupt or truncated: a miss, and gone
            return None
        for sha in result.files.values():
            if not self.has_blob(sha):
                return None
        with contextlib.suppress(OSError):
            os.utime(path)  # LRU: a hit is a use
        return result

    def put(self, record: ActionRecord, workspace: str) -> None:
        self.use()
        body = record.to_json()
        doc = {"record": body, "sha256": hashlib.sha256(canonical(body)).hexdigest()}
        write_bytes(self._ac(record.key), canonical(doc))
        write_bytes(self._last(workspace, record.label), canonical({"key": record.key}))

    def last(self, workspace: str, label: str) -> ActionRecord | None:
        try:
            key = json.loads(self._last(workspace, label).read_bytes())["key"]
        except (OSError, ValueError, KeyError):
            return None
        return self.get(key)

    # ------------------------------------------------------------------ blobs

    def put_blob_bytes(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        path = self.blob_path(sha)
        if not path.exists():
            self.use()
            write_bytes(path, data)
        return sha

    def put_blob_file(self, source: Path, sha256: str | None = None) -> str:
        """Copy a file into the CAS (hashing it unless ``sha256`` is given and trusted)."""
        if sha256 is None:
            sha256 = hash_file(source)
        path = self.blob_path(sha256)
        if not path.exists():
            self.use()
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            os.close(fd)
            shutil.copyfile(source, tmp)
            os.replace(tmp, path)
        return sha256

    def has_blob(self, sha256: str) -> bool:
        return self.blob_path(sha256).exists()

    def read_blob(self, sha256: str) -> bytes | None:
        """A blob's bytes, or None when missing or not matching its name."""
        path = self.blob_path(sha256)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if hashlib.sha256(data).hexdigest() != sha256:
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        return data

    # ------------------------------------------------------------------ locking

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Held while building ``key``: a second process waits, then finds the result."""
        self.use()
        path = self.root / "locks" / f"{key}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    # ------------------------------------------------------------------ checking

    def verify(self, complete: bool = False) -> list[str]:
        """Check every entry; returns the problems found, one line each
        (``path: what``), empty for a sound store:

        * a record that does not parse, fails its checksum, is filed under
          another key or in another shard, or names a blob by a bad digest;
        * a blob whose content is not its name (or filed in another shard);
        * a ``last/`` pointer that does not parse;
        * a temporary (half written: a process is writing it, or was killed
          while it did);
        * with *complete*, a record whose files, manifest or image config
          are not in the store (eviction takes them legitimately; a store
          nothing was evicted from has them all, as records are written
          after their blobs).

        A miss is never a problem: get() treats all of these as misses
        already. This reads every blob (a scan, for tests and audits)."""
        problems = [f"{p.relative_to(self.root)}: temporary (half written)" for p in self.temporaries()]
        for path in self._files("ac"):
            problems += [f"{path.relative_to(self.root)}: {why}" for why in self._record_problems(path, complete)]
        for path in self._files("cas"):
            rel = path.relative_to(self.root)
            if path.parent.name != path.name[:2]:
                problems.append(f"{rel}: blob in the wrong shard")
            elif hash_file(path) != path.name:
                problems.append(f"{rel}: content does not match its name")
        for path in self._files("last", sharded=False):
            try:
                key = json.loads(path.read_bytes())["key"]
                if not _is_digest(key):
                    raise ValueError(key)
            except (OSError, ValueError, KeyError, TypeError):
                problems.append(f"{path.relative_to(self.root)}: not a last-build pointer")
        return problems

    def _files(self, sub: str, sharded: bool = True) -> list[Path]:
        """The entries of ``ac``, ``cas`` or ``last`` (not temporaries)."""
        folders = [self.root / sub / shard for shard in sorted(_names(self.root / sub))] if sharded \
            else [self.root / sub]
        return [f / n for f in folders for n in sorted(_names(f)) if not n.startswith(".")]

    def _record_problems(self, path: Path, complete: bool) -> list[str]:
        try:
            doc = json.loads(path.read_bytes())
            body = doc["record"]
            if hashlib.sha256(canonical(body)).hexdigest() != doc["sha256"]:
                return ["checksum mismatch"]
            record = ActionRecord.from_json(body)
        except (OSError, ValueError, KeyError, TypeError) as e:
            return [f"does not parse ({type(e).__name__})"]
        if path != self._ac(record.key):
            return [f"record of key {record.key!r} filed here"]
        blobs = [b.get("digest", "") if isinstance(b, dict) else b for b in record.blobs]
        named = [*record.files.values(), *(d.split(":", 1)[-1] for d in blobs)]
        bad = [n for n in named if not _is_digest(n)]
        if bad or any(not str(d).startswith("sha256:") for d in blobs):
            return [f"names a blob by a bad digest ({(bad or blobs)[0]!r})"]
        needed = [*record.files.values(), *(d.split(":", 1)[1] for d in blobs[:2])] if complete else []
        return [f"lacks blob {sha} (a {'file' if sha in record.files.values() else 'manifest or config'})"
                for sha in needed if not self.has_blob(sha)]

    # ------------------------------------------------------------------ size

    def entries(self) -> list[tuple[float, int, Path]]:
        """(last use, size, path) of every record and blob; temporaries are
        not entries (evicting one would fail the process writing it)."""
        out = []
        for sub in ("ac", "cas"):
            base = self.root / sub
            if not base.exists():
                continue
            for dirpath, _, names in os.walk(base):
                for name in names:
                    if name.startswith("."):
                        continue
                    p = Path(dirpath) / name
                    try:
                        st = p.stat()
                    except OSError:
                        continue
                    out.append((max(st.st_atime, st.st_mtime), st.st_size, p))
        return out

    def size(self) -> int:
        return sum(size for _, size, _ in self.entries())

    def evict(self, max_size: int | None = None) -> int:
        """Remove least recently used entries until the store fits; returns bytes freed."""
        limit = self.max_size if max_size is None else max_size
        if limit is None:
            return 0
        entries = sorted(self.entries())
        total = sum(size for _, size, _ in entries)
        freed = 0
        for _, size, path in entries:
            if total <= limit:
                break
            with contextlib.suppress(OSError):
                path.unlink()
                total -= size
                freed += size
        return freed

    def clean(self) -> int:
        """Remove every entry; returns bytes freed. Temporaries and lock
        files go too when no other process uses the store (else they may be
        in use: locks in use are left alone)."""
        freed = self.size()
        for sub in ("ac", "cas", "last"):
            shutil.rmtree(self.root / sub, ignore_errors=True)
        for suffix in ("", "-wal", "-shm"):  # a WAL left beside a new database would be replayed into it
            with contextlib.suppress(OSError):
                Path(f"{self.stat_cache_path}{suffix}").unlink()
        if self.root.exists():
            self._sweep_if_alone()
        return freed


def now() -> float:
    return time.time()


def _is_digest(text: object) -> bool:
    return isinstance(text, str) and len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def _names(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except OSError:  # not there (yet), or not a folder
        return []


def _leave(fd: int, session: Path) -> None:
    """End a process's use of a store: its session file, then its lock."""
    with contextlib.suppress(OSError):
        session.unlink()
    with contextlib.suppress(OSError):
        os.close(fd)
