"""Walking a local directory the way BuildKit's sender (fsutil) does.

:func:`walk` yields the entries FileSync sends, in the order the receiver
demands: Go ``filepath.WalkDir`` order (depth first, a directory's entries
right after it, names in byte order, the root itself skipped), filtered by
include/exclude patterns as it goes. :func:`to_stat` turns an entry into the
wire ``fsutil.types.Stat`` (Go ``os.FileMode`` bits, uid/gid 0).

No file contents are read here.
"""

from __future__ import annotations

import os
import stat as _st
from dataclasses import dataclass
from typing import Iterable, Iterator, NamedTuple, Sequence

from .dockerignore import IncludeMatcher, Matcher, go_clean

__all__ = [
    "WalkEntry",
    "Filter",
    "walk",
    "to_stat",
    "go_mode",
    "is_regular",
    "resolve_follow_paths",
    "MODE_DIR",
    "MODE_SYMLINK",
    "MODE_DEVICE",
    "MODE_NAMED_PIPE",
    "MODE_SOCKET",
    "MODE_SETUID",
    "MODE_SETGID",
    "MODE_CHAR_DEVICE",
    "MODE_STICKY",
    "MODE_TYPE",
]

# Go os.FileMode bits (io/fs)
MODE_DIR = 1 << 31
MODE_SYMLINK = 1 << 27
MODE_DEVICE = 1 << 26
MODE_NAMED_PIPE = 1 << 25
MODE_SOCKET = 1 << 24
MODE_SETUID = 1 << 23
MODE_SETGID = 1 << 22
MODE_CHAR_DEVICE = 1 << 21
MODE_STICKY = 1 << 20
MODE_IRREGULAR = 1 << 19
# Go's ModeType: dir | symlink | named pipe | socket | device | char device | irregular
MODE_TYPE = MODE_DIR | MODE_SYMLINK | MODE_NAMED_PIPE | MODE_SOCKET | MODE_DEVICE | MODE_CHAR_DEVICE | MODE_IRREGULAR

_TYPE_BITS = {
    _st.S_IFDIR: MODE_DIR,
    _st.S_IFLNK: MODE_SYMLINK,
    _st.S_IFBLK: MODE_DEVICE,
    _st.S_IFCHR: MODE_DEVICE | MODE_CHAR_DEVICE,
    _st.S_IFIFO: MODE_NAMED_PIPE,
    _st.S_IFSOCK: MODE_SOCKET,
    _st.S_IFREG: 0,
}


def go_mode(st_mode: int) -> int:
    """Unix ``st_mode`` as Go ``os.FileMode`` bits (what fsutil puts in ``Stat.mode``)."""
    mode = (st_mode & 0o777) | _TYPE_BITS.get(_st.S_IFMT(st_mode), MODE_IRREGULAR)
    if st_mode & _st.S_ISUID:
        mode |= MODE_SETUID
    if st_mode & _st.S_ISGID:
        mode |= MODE_SETGID
    if st_mode & _st.S_ISVTX:
        mode |= MODE_STICKY
    return mode


def is_regular(go_file_mode: int) -> bool:
    """A Go FileMode with no type bits: a regular file."""
    return go_file_mode & MODE_TYPE == 0


class WalkEntry(NamedTuple):
    """One entry of a walk.

    ``linkname`` is the symlink target for symlinks, the first path of the
    same inode for a repeated hard link (a regular file: send no data for it),
    else "".
    """

    path: str  # relative, "/"-separated
    stat: os.stat_result
    linkname: str


_Stat = None


def to_stat(entry: WalkEntry):
    """The ``fsutil_pb2.Stat`` for an entry (uid/gid 0, as Go clients send)."""
    global _Stat
    if _Stat is None:
        from .proto import fsutil_pb2

        _Stat = fsutil_pb2.Stat
    st = entry.stat
    fmt = _st.S_IFMT(st.st_mode)
    size = 0 if fmt == _st.S_IFDIR or (fmt == _st.S_IFREG and entry.linkname) else st.st_size
    out = _Stat(
        path=entry.path,
        mode=go_mode(st.st_mode),
        size=size,
        modTime=st.st_mtime_ns,
        linkname=entry.linkname,
    )
    if fmt in (_st.S_IFBLK, _st.S_IFCHR):
        out.devmajor = os.major(st.st_rdev)
        out.devminor = os.minor(st.st_rdev)
    return out


@dataclass(frozen=True)
class Filter:
    """One set of include/exclude patterns and follow paths (all in ``.dockerignore`` syntax).

    Several filters can apply to one walk; an entry is sent only if every
    filter keeps it.
    """

    include: Sequence[str] = ()
    exclude: Sequence[str] = ()
    follow_paths: Sequence[str] = ()

    def __bool__(self) -> bool:
        return bool(self.include or self.exclude or self.follow_paths)


# ------------------------------------------------------------- follow paths

_WILDCARDS = "*?[\\"


def resolve_follow_paths(root: str | os.PathLike[str], paths: Iterable[str], max_links: int = 255) -> list[str]:
    """fsutil's ``FollowLinks``: ``paths`` plus the targets of symlinks on them.

    Each path is walked component by component; where a component is a
    symlink, its target (relative to the link's directory; an absolute target
    relative to ``root``) is followed with the rest of the path. The result
    (links and final paths, root-relative) is used as include patterns so the
    daemon gets e.g. a Dockerfile that is a symlink together with its target.
    A wildcard in a component is matched against that directory's entries.
    """
    root = os.fspath(root)
    resolved: set[str] = set()
    budget = [max_links]

    def lstat_link(rel: str) -> str | None:
        try:
            st = os.lstat(os.path.join(root, rel))
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not _st.S_ISLNK(st.st_mode):
            return None
        return os.readlink(os.path.join(root, rel))

    def link_targets(rel: str) -> list[str] | None:
        """Root-relative targets if ``rel`` (possibly with a wildcard last part) names symlinks."""
        base = rel.rsplit("/", 1)[-1]
        parent = rel[: -len(base) - 1] if "/" in rel else ""
        if any(c in base for c in _WILDCARDS):
            m = IncludeMatcher([base])
            try:
                names = sorted(os.listdir(os.path.join(root, parent) if parent else root), key=os.fsencode)
            except (FileNotFoundError, NotADirectoryError):
                return None
            out: list[str] = []
            for name in names:
                if m.match_step(name)[0]:
                    sub = f"{parent}/{name}" if parent else name
                    link = lstat_link(sub)
                    if link is not None:
                        out.append(_link_target(parent, link))
            return out or None
        link = lstat_link(rel)
        if link is None:
            return None
        return [_link_target(parent, link)]

    def add(p: str) -> None:
        p = go_clean("./" + p.replace(os.sep, "/")).lstrip("/")
        if p in ("", ".") or p.startswith("../") or p == "..":
            return
        parts = p.split("/")
        for i in range(len(parts)):
            current = "/".join(parts[: i + 1])
            rest = "/".join(parts[i + 1 :])
            targets = link_targets(current)
            if (not rest or targets) and current in resolved:
                return
            if targets:
                resolved.add(current)
                for t in targets:
                    budget[0] -= 1
                    if budget[0] < 0:
                        raise OSError(f"too many levels of symbolic links resolving {p!r}")
                    add(f"{t}/{rest}" if rest else t)
                return
            if not rest:
                resolved.add(current)
                return

    for p in paths:
        add(p)
    return sorted(resolved)


def _link_target(parent: str, link: str) -> str:
    if link.startswith("/"):
        return go_clean(link).lstrip("/")
    return go_clean("/" + (f"{parent}/{link}" if parent else link)).lstrip("/")


# --------------------------------------------------------------------- walk


class _CompiledFilter:
    __slots__ = ("inc", "exc")

    def __init__(self, root: str, f: Filter) -> None:
        include = list(f.include)
        if f.follow_paths:
            include = list(dict.fromkeys(include + resolve_follow_paths(root, f.follow_paths)))
        self.inc = IncludeMatcher(include) if include else None
        self.exc = Matcher(f.exclude) if f.exclude else None
        if self.inc is not None and not self.inc:
            self.inc = None
        if self.exc is not None and not self.exc:
            self.exc = None


_KEEP, _SKIP, _PRUNE = 0, 1, 2


def _listdir(path: str) -> list[os.DirEntry[str]]:
    with os.scandir(path) as it:
        entries = list(it)
    entries.sort(key=lambda e: os.fsencode(e.name))
    return entries


def walk(
    root: str | os.PathLike[str],
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    follow_paths: Sequence[str] = (),
    *,
    filters: Sequence[Filter] = (),
) -> Iterator[WalkEntry]:
    """The entries under ``root`` that FileSync sends, in fsutil's order.

    ``include``/``exclude``/``follow_paths`` form one :class:`Filter`;
    ``filters`` adds more (an entry must pass all). Semantics, as fsutil:

    * excluded directories are pruned, unless a ``!`` exception could match
      inside; then they are read, and sent only if something inside is sent;
    * with include patterns, a matching directory brings its subtree and the
      parents of included entries are sent too; a directory nothing could
      match inside is not read;
    * symlinks are not followed; sockets are skipped; entries that vanish
      during the walk are skipped; unreadable directories fail the walk
      unless filtered out;
    * a regular file whose inode was already sent gets ``linkname`` = the
      first path (a hard link).

    The root itself is resolved through symlinks and not yielded.
    """
    root_path = os.path.realpath(os.fspath(root))
    if not os.path.isdir(root_path):
        raise NotADirectoryError(f"not a directory: {os.fspath(root)}")
    compiled = [c for c in (_CompiledFilter(root_path, f) for f in (Filter(include, exclude, follow_paths), *filters))
                if c.inc is not None or c.exc is not None]

    S_IFMT = _st.S_IFMT
    IFDIR, IFREG, IFLNK, IFSOCK = _st.S_IFDIR, _st.S_IFREG, _st.S_IFLNK, _st.S_IFSOCK
    seen_inodes: dict[tuple[int, int], str] = {}
    nfilters = len(compiled)
    root_states = tuple((0, 0) for _ in compiled)

    # A frame per open directory: [entries iterator, "rel/" prefix, filter states,
    # the directory's own entry while it is held back (sent only if needed)].
    stack: list[list] = [[iter(_listdir(root_path)), "", root_states, None]]
    held = 0  # how many frames hold their entry back

    while stack:
        frame = stack[-1]
        e = next(frame[0], None)
        if e is None:
            stack.pop()
            if frame[3] is not None:
                held -= 1
            continue
        rel = frame[1] + e.name
        try:
            st = e.stat(follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            continue
        fmt = S_IFMT(st.st_mode)
        if fmt == IFSOCK:
            continue
        isdir = fmt == IFDIR

        skip = False
        states = None
        if nfilters:
            action = _KEEP
            states = []
            for f, (inc_state, exc_state) in zip(compiled, frame[2]):
                if f.inc is not None:
                    m, inc_state = f.inc.match_step(rel, inc_state)
                    if not m:
                        if not isdir or f.inc.may_contain_match(rel):
                            action = max(action, _SKIP)
                        else:
                            action = _PRUNE
                            break
                if f.exc is not None:
                    m, exc_state = f.exc.match_step(rel, exc_state)
                    if m:
                        if isdir and f.exc.may_contain_exception(rel):
                            action = max(action, _SKIP)
                        elif isdir:
                            action = _PRUNE
                            break
                        else:
                            action = _SKIP
                states.append((inc_state, exc_state))
            if action == _PRUNE:
                continue
            skip = action == _SKIP
            if skip and not isdir:
                continue

        if isdir:
            try:
                children = _listdir(e.path)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except PermissionError:
                if skip:
                    continue  # fsutil ignores permission errors on filtered-out entries
                raise
            entry = WalkEntry(rel, st, "")
            if skip:
                stack.append([iter(children), rel + "/", tuple(states), entry])
                held += 1
                continue
            if held:
                held = yield from _release(stack)
            yield entry
            stack.append([iter(children), rel + "/", tuple(states) if states is not None else (), None])
            continue

        linkname = ""
        if fmt == IFLNK:
            try:
                linkname = os.readlink(e.path)
            except FileNotFoundError:
                continue
        elif fmt == IFREG and st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            first = seen_inodes.get(key)
            if first is None:
                seen_inodes[key] = rel
            else:
                linkname = first
        if held:
            held = yield from _release(stack)
        yield WalkEntry(rel, st, linkname)


def _release(stack: list[list]) -> Iterator[WalkEntry]:
    """Yield the held-back directories on the current path, outermost first."""
    for frame in stack:
        if frame[3] is not None:
            yield frame[3]
            frame[3] = None
    return 0
