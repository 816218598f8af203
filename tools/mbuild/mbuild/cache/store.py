"""The local action cache: a content-addressed store on disk.

Layout under the cache folder (``~/.cache/mbuild`` by default)::

    ac/ab/<key>.json      action key -> result record, with its own checksum
    cas/cd/<sha256>       content blobs (generated files, image blobs)
    last/<sha256(label)>  the key of the last build of a label (for explain)
    locks/<key>.lock      held while a process builds that key

Every write goes to a temp file in the same folder and is renamed into
place, so readers never see half an entry. A record whose checksum does not
match, or a blob whose content does not match its name, is a miss (and is
removed), never an error or a wrong result. Size is bounded by LRU eviction
on the entries' access times (touched on every hit).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from ..atomicfile import write_bytes
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


class LocalStore:
    def __init__(self, root: Path, max_size: int | None = None) -> None:
        self.root = Path(root).expanduser()
        self.max_size = max_size

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
            write_bytes(path, data)
        return sha

    def put_blob_file(self, source: Path, sha256: str | None = None) -> str:
        """Copy a file into the CAS (hashing it unless ``sha256`` is given and trusted)."""
        if sha256 is None:
            h = hashlib.sha256()
            with open(source, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
            sha256 = h.hexdigest()
        path = self.blob_path(sha256)
        if not path.exists():
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
        path = self.root / "locks" / f"{key}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    # ------------------------------------------------------------------ size

    def entries(self) -> list[tuple[float, int, Path]]:
        out = []
        for sub in ("ac", "cas"):
            base = self.root / sub
            if not base.exists():
                continue
            for dirpath, _, names in os.walk(base):
                for name in names:
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
        """Remove every entry; returns bytes freed. Locks in use are left alone."""
        freed = self.size()
        for sub in ("ac", "cas", "last"):
            shutil.rmtree(self.root / sub, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.stat_cache_path.unlink()
        return freed


def now() -> float:
    return time.time()
