"""File actions for :meth:`State.file`: mkdir, mkfile, rm, symlink, copy.

An action is an immutable value with paths as written; ``State.file``
resolves relative paths against the State's working directory and turns the
copy source into an op input. ``mode``/``timestamp`` of ``None`` go on the
wire as -1 ("keep"), never 0 (which would mean mode 0 / the epoch).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, replace
from typing import Any, Sequence, Union

from ..proto import ops_pb2
from . import caps as C
from .config import clean_path, resolve_path
from .errors import LLBError

UserRef = Union[int, str]  # uid/gid, or a name looked up in the base's /etc/passwd|group
OwnerSpec = Union[None, str, int, "tuple[UserRef, UserRef]", "Owner"]


@dataclass(frozen=True)
class Owner:
    user: UserRef | None = None
    group: UserRef | None = None

    @property
    def is_named(self) -> bool:
        return isinstance(self.user, str) or isinstance(self.group, str)

    def to_pb(self, name_input: int) -> ops_pb2.ChownOpt:
        opt = ops_pb2.ChownOpt()
        for ref, target in ((self.user, opt.user), (self.group, opt.group)):
            if ref is None:
                continue
            if isinstance(ref, str):
                target.byName.name = ref
                target.byName.input = name_input
                target.byName.SetInParent()
            else:
                target.byID = ref  # written even when 0: the oneof is set explicitly
        return opt


def _user_ref(part: str | int) -> UserRef:
    if isinstance(part, int):
        if part < 0:
            raise LLBError(f"invalid uid/gid {part}")
        return part
    part = part.strip()
    if not part:
        raise LLBError("empty user or group in owner")
    if part == "root":
        return 0
    if part.isdigit():
        return int(part)
    return part


def parse_owner(owner: OwnerSpec) -> Owner | None:
    """``"1000:1000"``, ``"node:node"``, ``"node"``, ``1000`` or ``(uid, gid)``."""
    if owner is None or isinstance(owner, Owner):
        return owner
    if isinstance(owner, bool):
        raise LLBError(f"invalid owner {owner!r}")
    if isinstance(owner, int):
        return Owner(_user_ref(owner))
    if isinstance(owner, tuple) and len(owner) == 2:
        return Owner(_user_ref(owner[0]), _user_ref(owner[1]))
    if isinstance(owner, str):
        user, sep, group = owner.partition(":")
        return Owner(_user_ref(user), _user_ref(group) if sep else None)
    raise LLBError(f"invalid owner {owner!r}: want 'user[:group]' or (uid, gid)")


def _timestamp(ts: Any) -> int:
    if ts is None:
        return -1
    if isinstance(ts, _dt.datetime):
        if ts.tzinfo is None:
            raise LLBError("timestamp datetime must be timezone-aware")
        delta = ts - _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
        return (delta.days * 86400 + delta.seconds) * 10**9 + delta.microseconds * 1000
    if isinstance(ts, int) and not isinstance(ts, bool):
        return ts
    raise LLBError(f"invalid timestamp {ts!r}: want nanoseconds (int) or an aware datetime")


def normalize_target(workdir: str, p: str, keep_slash: bool = False) -> str:
    """Resolve ``p`` against ``workdir``; with ``keep_slash`` a trailing ``/``
    or ``/.`` survives (it tells copy to put things *into* a directory)."""
    if not p:
        raise LLBError("empty path in file action")
    out = resolve_path(workdir, p)
    if keep_slash:
        if p.endswith("/") and not out.endswith("/"):
            out += "/"
        elif p.endswith("/."):
            out = (out if out == "/" else out + "/") + "."
    return out


@dataclass(frozen=True)
class Mkdir:
    path: str
    mode: int = 0o755
    parents: bool = False
    owner: Owner | None = None
    timestamp: int | None = None

    def fill(self, fa: ops_pb2.FileAction, name_input: int) -> None:
        m = fa.mkdir
        m.path, m.mode, m.makeParents = self.path, self.mode & 0o777, self.parents
        if self.owner:
            m.owner.CopyFrom(self.owner.to_pb(name_input))
        m.timestamp = _timestamp(self.timestamp)

    def resolved(self, workdir: str) -> "Mkdir":
        return replace(self, path=normalize_target(workdir, self.path))

    caps = frozenset()


@dataclass(frozen=True)
class Mkfile:
    path: str
    data: bytes = b""
    mode: int = 0o644
    owner: Owner | None = None
    timestamp: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.data, str):
            object.__setattr__(self, "data", self.data.encode())

    def fill(self, fa: ops_pb2.FileAction, name_input: int) -> None:
        m = fa.mkfile
        m.path, m.mode, m.data = self.path, self.mode & 0o777, self.data
        if self.owner:
            m.owner.CopyFrom(self.owner.to_pb(name_input))
        m.timestamp = _timestamp(self.timestamp)
        fa.mkfile.SetInParent()

    def resolved(self, workdir: str) -> "Mkfile":
        return replace(self, path=normalize_target(workdir, self.path))

    caps = frozenset()


@dataclass(frozen=True)
class Rm:
    path: str
    allow_not_found: bool = False
    allow_wildcard: bool = False

    def fill(self, fa: ops_pb2.FileAction, name_input: int) -> None:
        r = fa.rm
        r.path, r.allowNotFound, r.allowWildcard = self.path, self.allow_not_found, self.allow_wildcard
        fa.rm.SetInParent()

    def resolved(self, workdir: str) -> "Rm":
        return replace(self, path=normalize_target(workdir, self.path))

    @property
    def caps(self) -> frozenset:
        return frozenset({C.FILE_RM_WILDCARD}) if self.allow_wildcard else frozenset()

    owner = None  # rm has no owner


@dataclass(frozen=True)
class Symlink:
    target: str  # what the link points to; kept as written (may be relative)
    path: str  # where the link is created
    owner: Owner | None = None
    timestamp: int | None = None

    def fill(self, fa: ops_pb2.FileAction, name_input: int) -> None:
        s = fa.symlink
        s.oldpath, s.newpath = self.target, self.path
        if self.owner:
            s.owner.CopyFrom(self.owner.to_pb(name_input))
        s.timestamp = _timestamp(self.timestamp)

    def resolved(self, workdir: str) -> "Symlink":
        if not self.target:
            raise LLBError("symlink target must not be empty")
        return replace(self, path=normalize_target(workdir, self.path))

    caps = frozenset({C.FILE_SYMLINK_CREATE})


@dataclass(frozen=True)
class Copy:
    source: Any  # the State copied from (None once resolved: see FileNode.sources)
    src: str
    dest: str
    owner: Owner | None = None
    mode: int | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    create_dest_path: bool = True
    allow_wildcard: bool = True
    allow_empty_wildcard: bool = True
    follow_symlinks: bool = True
    dir_copy_contents: bool = True
    attempt_unpack: bool = False
    always_replace_existing_dest_paths: bool = False
    timestamp: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "include", tuple(self.include))
        object.__setattr__(self, "exclude", tuple(self.exclude))

    def fill(self, fa: ops_pb2.FileAction, name_input: int) -> None:
        c = fa.copy
        c.src, c.dest = self.src, self.dest
        if self.owner:
            c.owner.CopyFrom(self.owner.to_pb(name_input))
        c.mode = -1 if self.mode is None else self.mode
        c.followSymlink = self.follow_symlinks
        c.dirCopyContents = self.dir_copy_contents
        c.attemptUnpackDockerCompatibility = self.attempt_unpack
        c.createDestPath = self.create_dest_path
        c.allowWildcard = self.allow_wildcard
        c.allowEmptyWildcard = self.allow_empty_wildcard
        c.timestamp = _timestamp(self.timestamp)
        c.include_patterns.extend(self.include)
        c.exclude_patterns.extend(self.exclude)
        c.alwaysReplaceExistingDestPaths = self.always_replace_existing_dest_paths

    def resolved(self, workdir: str) -> "Copy":
        if not self.src:
            raise LLBError("copy source path must not be empty")
        src_dir = self.source.config.cwd if self.source is not None else "/"
        src = clean_path(self.src)
        src = src if src.startswith("/") else resolve_path(src_dir, src)
        return replace(self, source=None, src=src,
                       dest=normalize_target(workdir, self.dest, keep_slash=True))

    @property
    def caps(self) -> frozenset:
        out = set()
        if self.include or self.exclude:
            out.add(C.FILE_COPY_INCLUDE_EXCLUDE_PATTERNS)
        if self.always_replace_existing_dest_paths:
            out.add(C.FILE_COPY_ALWAYS_REPLACE_EXISTING_DEST_PATHS)
        return frozenset(out)


FileAction = Union[Mkdir, Mkfile, Rm, Symlink, Copy]


def _ts(ts: Any) -> int | None:
    """Validate early: an int of nanoseconds, an aware datetime, or None."""
    return None if ts is None else _timestamp(ts)


def _check_mode(mode: int | None) -> None:
    if mode is not None and not (0 <= mode <= 0o7777):
        raise LLBError(f"invalid file mode {mode:#o}")


def mkdir(path: str, mode: int = 0o755, parents: bool = False, owner: OwnerSpec = None,
          timestamp: Any = None) -> Mkdir:
    _check_mode(mode)
    return Mkdir(path, mode, parents, parse_owner(owner), _ts(timestamp))


def mkfile(path: str, data: bytes | str, mode: int = 0o644, owner: OwnerSpec = None,
           timestamp: Any = None) -> Mkfile:
    _check_mode(mode)
    return Mkfile(path, data, mode, parse_owner(owner), _ts(timestamp))


def rm(path: str, allow_not_found: bool = False, allow_wildcard: bool = False) -> Rm:
    return Rm(path, allow_not_found, allow_wildcard)


def symlink(target: str, path: str, owner: OwnerSpec = None, timestamp: Any = None) -> Symlink:
    return Symlink(target, path, parse_owner(owner), _ts(timestamp))


def copy(source: Any, src: str, dest: str, owner: OwnerSpec = None, mode: int | None = None,
         include: Sequence[str] = (), exclude: Sequence[str] = (), create_dest_path: bool = True,
         allow_wildcard: bool = True, allow_empty_wildcard: bool = True, follow_symlinks: bool = True,
         dir_copy_contents: bool = True, attempt_unpack: bool = False,
         always_replace_existing_dest_paths: bool = False, timestamp: Any = None) -> Copy:
    """Copy ``src`` of ``source`` (a State) to ``dest``. Defaults are those of
    a Dockerfile ``COPY``: create the destination, expand wildcards, copy a
    directory's contents."""
    _check_mode(mode)
    if isinstance(include, str) or isinstance(exclude, str):
        raise LLBError("include/exclude must be lists of patterns, not a string")
    return Copy(source, src, dest, parse_owner(owner), mode, tuple(include), tuple(exclude),
                create_dest_path, allow_wildcard, allow_empty_wildcard, follow_symlinks,
                dir_copy_contents, attempt_unpack, always_replace_existing_dest_paths, _ts(timestamp))
