"""Workspace source files: the files a build can read, and why a path is not one.

A build reads workspace files only through BuildKit's FileSync, which sends
the workspace root filtered by ``.dockerignore`` and sends a symlink as a
symlink, never what it points to. So a path names a source file only if

* it is workspace-relative and plain: no ``..``, ``.`` or empty segment, no
  leading ``/`` (a ``..`` would reach another package around its
  visibility, or a file outside the workspace);
* no directory on the way is a symlink (``linkdir/f`` with ``linkdir ->
  /tmp/x``: what BuildKit sends is the link, so ``linkdir/f`` would be hashed
  from outside the workspace and missing from the image);
* it is a regular file or a symlink, not a directory or a device;
* ``.dockerignore`` does not exclude it (an excluded file is never sent: it
  must not be read, hashed or recorded in a key either, so a secret's hash
  never reaches a cache).

``glob()`` never lists what this excludes (:class:`IgnoreFile` is how);
a path named explicitly that breaks a rule is an error saying which
(:class:`SourceChecker`, used when files are digested).
"""

from __future__ import annotations

import os
import stat as statmod
from pathlib import Path
from typing import NamedTuple

from buildkit.dockerignore import Matcher, parse_dockerignore

from mbuild.errors import ConfigError, at

__all__ = ["IGNORE_FILE", "IgnoreFile", "SourceChecker", "SourceError", "path_problem"]

IGNORE_FILE = ".dockerignore"


class SourceError(ConfigError):
    """A path a target reads that is not a source file; ``reason`` says why."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"source file {path} {reason}")
        self.path = path
        self.reason = reason


class _Pattern(NamedTuple):
    text: str  # as parse_dockerignore leaves it (cleaned, "!" kept)
    line: int


def path_problem(path: str) -> str | None:
    """Why ``path`` is not a plain workspace-relative path, or None."""
    if not path:
        return "is an empty path"
    if path.startswith("/"):
        return "is an absolute path; name files relative to the package"
    if "\\" in path:
        return "holds a backslash; separate folders with '/'"
    parts = path.split("/")
    if ".." in parts:
        return "leaves its folder with '..'; a target names its own package's files, and another package's by a label of it"
    if "" in parts or "." in parts:
        return "has an empty or '.' path segment; write it as a plain path like 'dir/file'"
    return None


class IgnoreFile:
    """The workspace's ``.dockerignore``: what is never sent to a build."""

    def __init__(self, patterns: tuple[_Pattern, ...] = ()) -> None:
        self.patterns = patterns
        self.matcher: Matcher | None = Matcher(p.text for p in patterns) if patterns else None
        self._folders: dict[str, tuple[bool, int]] = {"": (False, 0)}  # folder -> (excluded, match state)

    @classmethod
    def load(cls, root: Path) -> "IgnoreFile":
        """Read ``root/.dockerignore`` (none: nothing is excluded). An invalid
        pattern is an error at its line, as BuildKit would fail the transfer."""
        try:
            data = (Path(root) / IGNORE_FILE).read_bytes()
        except FileNotFoundError:
            return cls()
        except OSError as err:
            raise ConfigError(f"{IGNORE_FILE}: cannot read: {err.strerror}; fix its permissions") from None
        patterns = []
        for number, raw in enumerate(data.decode("utf-8", "surrogateescape").split("\n"), 1):
            for text in parse_dockerignore(raw):  # one line: no pattern, or one
                try:
                    Matcher([text])
                except ValueError as err:
                    raise ConfigError(at(IGNORE_FILE, number, f"{err}; fix the pattern (Go filepath.Match "
                                                              f"syntax)")) from None
                patterns.append(_Pattern(text, number))
        return cls(tuple(patterns))

    def excluded(self, path: str) -> bool:
        """Whether ``path`` (plain, workspace-relative) is excluded: matched
        as BuildKit's sender does, folder by folder (each folder once)."""
        if self.matcher is None:
            return False
        return self.matcher.match_step(path, self._folder(path.rpartition("/")[0])[1])[0]

    def _folder(self, folder: str) -> tuple[bool, int]:
        found = self._folders.get(folder)
        if found is None:
            parent = self._folder(folder.rpartition("/")[0])
            assert self.matcher is not None
            found = self._folders[folder] = self.matcher.match_step(folder, parent[1])
        return found

    def why_excluded(self, path: str) -> str:
        """``.dockerignore:LINE (pattern)``: the pattern that excludes ``path``."""
        for pattern in reversed(self.patterns):
            if not pattern.text.startswith("!") and Matcher([pattern.text]).matches(path):
                return f"{IGNORE_FILE}:{pattern.line} ({pattern.text})"
        return IGNORE_FILE


class SourceChecker:
    """Checks paths named as sources against the workspace, caching what it
    learns about directories (a large filegroup has few)."""

    def __init__(self, root: Path, ignore: IgnoreFile | None = None) -> None:
        self.root = os.fspath(root)
        self.ignore = ignore if ignore is not None else IgnoreFile.load(Path(root))
        self._dirs: dict[str, str | None] = {"": None}

    def check(self, path: str, mode: int) -> None:
        """Raise :class:`SourceError` unless ``path`` (whose ``lstat`` mode is
        ``mode``) is a source file; call :meth:`check_path` first."""
        if statmod.S_ISDIR(mode):
            raise SourceError(path, f'is a directory; name its files, e.g. glob(["{path.rpartition("/")[2]}/**"])')
        if not (statmod.S_ISREG(mode) or statmod.S_ISLNK(mode)):
            raise SourceError(path, "is not a regular file (a device, socket or pipe); remove it from the srcs")
        if self.ignore.excluded(path):
            raise SourceError(path, f"is excluded by {self.ignore.why_excluded(path)}, so a build never gets it; "
                                    f"remove it from the target's srcs (or the pattern, if images need the file)")

    def check_path(self, path: str) -> None:
        """Raise :class:`SourceError` if ``path`` is not plain or goes through
        a symlinked directory (no ``lstat`` of ``path`` itself)."""
        why = path_problem(path)
        if why is not None:
            raise SourceError(path, why)
        folder = path.rpartition("/")[0]
        why = self._dirs.get(folder, "")
        if why == "":
            why = self._dir_problem(folder)
        if why is not None:
            raise SourceError(path, why)

    def _dir_problem(self, folder: str) -> str | None:
        parent = folder.rpartition("/")[0]
        why = self._dirs.get(parent, "")
        if why == "":
            why = self._dir_problem(parent)
        if why is None:
            full = os.path.join(self.root, folder)
            try:
                st = os.lstat(full)
            except OSError:
                why = None  # missing: the file's own lstat says so
            else:
                if statmod.S_ISLNK(st.st_mode):
                    why = (f"is under {folder}, a symlink to {os.readlink(full)}; a build gets the link, not "
                           f"what it points to: name the files where they are, inside the workspace")
                elif not statmod.S_ISDIR(st.st_mode):
                    why = f"is under {folder}, which is a file, not a folder"
        self._dirs[folder] = why
        return why
