""".dockerignore syntax, matched the way BuildKit's file sender matches it.

BuildKit's sender (fsutil) filters with ``moby/patternmatcher``. The rules:

* A pattern is a ``/``-separated path, cleaned like Go's ``filepath.Clean``
  (so ``./a``, ``a/`` and ``a//b/..`` are ``a``). ``*`` and ``?`` do not cross
  ``/``; ``**`` matches any number of directories, ``[...]`` is a class
  (``^`` negates), ``\\`` escapes the next character.
* A pattern matches a path if it matches the path **or any ancestor** of it, so
  an excluded directory takes its whole subtree along.
* Patterns are applied in order and the **last match wins**; a leading ``!``
  makes an exception that re-includes what it matches.
* A trailing ``/`` does not restrict a pattern to directories (Go cleans it
  away): ``node_modules/`` also excludes a regular file of that name.
* An excluded directory is still entered when an exception could match
  something inside it (:meth:`Matcher.may_contain_exception`).

Written here, not taken from the docker SDK (``docker.utils.build``), so the
client needs no SDK, and because the SDK's matcher differs from
moby/patternmatcher in ways that change which files are sent:

1. It matches case-insensitively (``fnmatch`` lower-cases both sides); Go is
   case-sensitive on Linux, and so is this module.
2. It silently appends ``!.dockerignore``, a rule of the classic ``docker
   build`` tarball; BuildKit adds nothing.
3. It tests only the ancestor that has as many components as the pattern, so
   ``**/node_modules`` does not exclude ``a/b/node_modules/x``. We test the path
   and every ancestor, incrementally during a walk, like Go's
   ``MatchesUsingParentResults`` (including its skip of patterns that cannot
   change the result).
4. It drops a leading ``..``; Go keeps it, so such a pattern never matches.
5. It has no ``\\`` escapes, and reads ``[!a]`` as negation and ``[^a]`` as
   literal; Go is the other way round. The translation here follows Go.
6. Go's fast paths decide some matches without a regex: a pattern without
   wildcards, classes or escapes is compared literally, ``x**`` at the
   end is a plain prefix test and a literal pattern after a leading ``**`` a
   plain suffix test (``**foo`` matches ``a/xfoo``). Those are reproduced.
7. Python's ``$`` also matches before a trailing newline; we anchor with
   ``\\Z``.

Lists without ``!`` exceptions (include lists above all: a build tool may send one
pattern per source file, thousands for a large package) are matched through
an index: literal patterns in a set, their parent directories in another, so
a walk costs per entry about what one pattern costs, not one per pattern.
The order of such a list cannot change a result, which is what makes the
index exact.

Not reproduced: Go's oddities for ``!`` patterns that ``filepath.Clean``
would rewrite.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence


__all__ = [
    "read_dockerignore",
    "parse_dockerignore",
    "go_clean",
    "Matcher",
    "IncludeMatcher",
]

_BOM = "\ufeff"


def go_clean(p: str) -> str:
    """Go's ``path.Clean`` for ``/``-separated paths."""
    if not p:
        return "."
    rooted = p.startswith("/")
    out: list[str] = []
    for part in p.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(part)
    s = "/".join(out)
    if rooted:
        return "/" + s
    return s or "."


def _normalise(pattern: str) -> str:
    """One pattern as ``ignorefile.ReadAll`` leaves it ("" if it is blank)."""
    pattern = pattern.strip()
    if not pattern:
        return ""
    invert = pattern[0] == "!"
    if invert:
        pattern = pattern[1:].strip()
    if pattern:
        pattern = go_clean(pattern)
        if len(pattern) > 1 and pattern[0] == "/":
            pattern = pattern[1:]
    return "!" + pattern if invert else pattern


def parse_dockerignore(text: str) -> list[str]:
    """The patterns of a ``.dockerignore`` text.

    Lines starting with ``#`` (in column 0) are comments; blank lines are
    skipped; whitespace around a pattern and a UTF-8 BOM are removed; each
    pattern is cleaned and a leading ``/`` (also ``./``) dropped, ``!`` kept.
    """
    out: list[str] = []
    for i, line in enumerate(text.split("\n")):
        if line.endswith("\r"):
            line = line[:-1]
        if i == 0 and line.startswith(_BOM):
            line = line[1:]
        if line.startswith("#"):
            continue
        p = _normalise(line)
        if p:
            out.append(p)
    return out


def read_dockerignore(path: str | os.PathLike[str]) -> list[str]:
    """The patterns of the ``.dockerignore`` file at ``path`` ([] if it is missing)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    return parse_dockerignore(data.decode("utf-8", "surrogateescape"))


# ------------------------------------------------------------------ patterns

_EXACT, _PREFIX, _SUFFIX, _REGEX = range(4)
_FSUTIL_PATTERN_CHARS = "*[]?^\\"


def _match_type(p: str) -> int:
    """How Go's patternmatcher would test ``p`` (its compile step, in outline)."""
    kind = _EXACT
    i, n, first = 0, len(p), True
    while i < n:
        ch = p[i]
        i += 1
        if ch == "*":
            if i < n and p[i] == "*":
                i += 1
                if i < n and p[i] == "/":
                    i += 1
                if i >= n:
                    kind = _PREFIX if kind == _EXACT else _REGEX
                else:
                    kind = _REGEX
                if first:
                    kind = _SUFFIX
            else:
                kind = _REGEX
        elif ch == "?" or ch in "[]":
            kind = _REGEX
        elif ch == "\\":
            if i < n:
                i += 1
                kind = _REGEX
        first = False
    return kind


def _check_syntax(pat: str) -> None:
    """Reject what Go's ``filepath.Match`` calls a bad pattern (patternmatcher does too)."""
    i, n = 0, len(pat)
    while i < n:
        c = pat[i]
        if c == "\\":
            if i + 1 >= n:
                raise ValueError(f"syntax error in pattern {pat!r}: trailing backslash")
            i += 2
        elif c == "[":
            i += 1
            if i < n and pat[i] == "^":
                i += 1
            count = 0
            while True:
                if i >= n:
                    raise ValueError(f"syntax error in pattern {pat!r}: unclosed character class")
                if pat[i] == "]" and count:
                    i += 1
                    break
                if pat[i] in "-]":
                    raise ValueError(f"syntax error in pattern {pat!r}: bad character class")
                i += 2 if pat[i] == "\\" else 1
                if i < n and pat[i] == "-":
                    i += 1
                    if i >= n or pat[i] == "]":
                        raise ValueError(f"syntax error in pattern {pat!r}: bad range")
                    i += 2 if pat[i] == "\\" else 1
                count += 1
        else:
            i += 1


_REGEX_SPECIAL = frozenset(".+()|{}$")  # literal in Go globs, special in regexes


def _glob_regex(pat: str) -> re.Pattern[str]:
    """``pat`` as an anchored regex, translated as moby/patternmatcher does:
    ``*`` and ``?`` stop at ``/``, ``**`` spans directories (``**/`` too),
    ``\\`` escapes the next character, ``[...]`` passes through as a class
    (``^`` negates, as in Go)."""
    out: list[str] = []
    i, n = 0, len(pat)
    in_class = False
    while i < n:
        c = pat[i]
        if in_class:
            if c == "]":
                in_class = False
            elif c == "\\" and i + 1 < n:
                out.append(re.escape(pat[i + 1]))
                i += 2
                continue
            elif c in "[&~|":  # literal inside a Go class; Python would read set syntax
                out.append("\\" + c)
                i += 1
                continue
            out.append(c)
        elif c == "*":
            if i + 1 < n and pat[i + 1] == "*":
                i += 2
                if i < n and pat[i] == "/":
                    i += 1
                out.append(".*" if i >= n else "(.*/)?")
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "\\":
            out.append(re.escape(pat[i + 1]) if i + 1 < n else "\\\\")
            i += 2
            continue
        elif c == "[":
            in_class = True
            out.append(c)
        elif c == "]":
            out.append("\\]")  # Go passes a stray "]" into its regex as a literal
        elif c in _REGEX_SPECIAL:
            out.append("\\" + c)
        else:
            out.append(re.escape(c) if not c.isalnum() and c != "/" else c)
        i += 1
    return re.compile("".join(out) + r"\Z")


class _Pattern:
    __slots__ = ("text", "exclusion", "kind", "match", "never", "comps", "unbounded", "head",
                 "comp_match", "stripped")

    def __init__(self, text: str, exclusion: bool) -> None:
        self.text = text
        self.exclusion = exclusion
        _check_syntax(text)
        self.kind = kind = _match_type(text)
        self.match: Callable[[str], object]
        self.never = text.split("/", 1)[0] == ".." or text in (".", "/")
        if self.never:
            self.match = lambda path: False  # Go keeps these; they never match
        elif kind == _EXACT:
            self.match = text.__eq__
        elif kind == _PREFIX:
            self.match = _prefix_matcher(text[:-2])
        elif kind == _SUFFIX:
            self.match = _suffix_matcher(text[2:])
        else:
            self.match = _glob_regex(text).match
        # For "could this match anything below a directory?"
        self.comps = text.split("/")
        star = next((k for k, c in enumerate(self.comps) if "**" in c), None)
        self.unbounded = star is not None
        self.head = self.comps if star is None else self.comps[:star]
        if kind == _REGEX:
            self.comp_match = [_component_matcher(c) for c in self.head]
        else:
            self.comp_match = [c.__eq__ for c in self.head]
        s = text
        if s.endswith("/**"):
            s = s[:-3]
        if s.endswith("/*"):
            s = s[:-2]
        self.stripped = s

    def could_match_below(self, dparts: Sequence[str]) -> bool:
        """Could this pattern match some path strictly inside the directory ``dparts``?

        Sound (never False when a match is possible). A match inside needs a
        pattern at least one component deeper than the directory (or a ``**``)
        whose leading components match the directory's.
        """
        k = len(dparts)
        if self.never:
            return False
        if not self.unbounded and len(self.comps) <= k:
            return False
        for i in range(min(k, len(self.head))):
            if not self.comp_match[i](dparts[i]):
                return False
        return True


def _prefix_matcher(prefix: str) -> Callable[[str], bool]:
    return lambda path: path.startswith(prefix)


def _suffix_matcher(suffix: str) -> Callable[[str], bool]:
    alt = suffix[1:] if suffix.startswith("/") else None

    def match(path: str) -> bool:
        return path.endswith(suffix) or path == alt

    return match


def _component_matcher(comp: str) -> Callable[[str], object]:
    if not any(c in comp for c in "*?[]\\"):
        return comp.__eq__
    return _glob_regex(comp).match


def _dir_and_parents(path: str) -> Iterator[str]:
    """``a/b/c`` -> ``a/b/c``, ``a/b``, ``a``."""
    while path:
        yield path
        path = path.rpartition("/")[0]


class _Index:
    """Exception-free patterns, matched without a scan of the literal ones."""

    __slots__ = ("literal", "literal_parents", "others", "others_match", "fsutil_literal", "fsutil_prefixes")

    def __init__(self, pats: Sequence[_Pattern]) -> None:
        literal = [q.text for q in pats if q.kind == _EXACT and not q.never]
        self.literal = frozenset(literal)
        self.literal_parents = frozenset(d for t in literal for d in _dir_and_parents(t.rpartition("/")[0]))
        self.others = [q for q in pats if not (q.kind == _EXACT and not q.never)]
        self.others_match = [q.match for q in self.others]
        # fsutil's own test (see Matcher._could_match_below), precomputed
        self.fsutil_literal = not any(c in q.stripped for q in pats for c in _FSUTIL_PATTERN_CHARS)
        self.fsutil_prefixes = frozenset(d for q in pats for d in _dir_and_parents(q.stripped))

    def match(self, path: str) -> bool:
        return path in self.literal or any(m(path) for m in self.others_match)

    def could_match_below(self, d: str, dparts: Sequence[str]) -> bool:
        if self.fsutil_literal and d not in self.fsutil_prefixes:
            return False
        return d in self.literal_parents or any(q.could_match_below(dparts) for q in self.others)


class Matcher:
    """An ordered list of ``.dockerignore`` patterns: the exclude side of a filter.

    ``Matcher(["*.env", "node_modules", "!keep.env"])``. Patterns are
    normalised as in :func:`parse_dockerignore` (whitespace, ``./``, leading
    ``/``, trailing ``/``); an invalid glob raises :class:`ValueError`, as
    BuildKit fails the transfer.
    """

    def __init__(self, patterns: Iterable[str]) -> None:
        pats: list[_Pattern] = []
        for raw in patterns:
            p = _normalise(raw)
            if not p:
                continue
            exclusion = p[0] == "!"
            if exclusion:
                p = p[1:]
                if not p:
                    raise ValueError('illegal exclusion pattern: "!"')
            pats.append(_Pattern(p, exclusion))
        self.patterns: tuple[str, ...] = tuple(("!" if q.exclusion else "") + q.text for q in pats)
        self._pats = pats
        # (bit, exclusion, match) per pattern, for the hot loop
        self._hot = [(1 << i, q.exclusion, q.match) for i, q in enumerate(pats)]
        self.has_exceptions = any(q.exclusion for q in pats)
        self._index = None if self.has_exceptions else _Index(pats)

    def __bool__(self) -> bool:
        return bool(self._pats)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self.patterns)!r})"

    # --- incremental matching (used by the walker)

    def match_step(self, path: str, parent_state: int = 0) -> tuple[bool, int]:
        """Match ``path`` given its parent directory's state (0 at the top).

        Returns (matched, state); pass ``state`` on when matching the
        entries of ``path`` if it is a directory.
        """
        if self._index is not None:  # no exceptions: any match, in any order
            if parent_state or self._index.match(path):
                return True, 1
            return False, 0
        matched = False
        state = 0
        for bit, exclusion, match in self._hot:
            if parent_state & bit:
                state |= bit
                matched = not exclusion
                continue
            if exclusion != matched:
                continue  # cannot change the outcome
            if match(path):
                state |= bit
                matched = not exclusion
        return matched, state

    def matches(self, relpath: str) -> bool:
        """Whether the pattern list matches ``relpath`` (a ``/``-separated path)."""
        relpath = go_clean(relpath.replace(os.sep, "/")).lstrip("/")
        if relpath in ("", "."):
            return False
        state = 0
        matched = False
        parts = relpath.split("/")
        for i in range(len(parts)):
            matched, state = self.match_step("/".join(parts[: i + 1]), state)
        return matched

    def excluded(self, relpath: str, is_dir: bool = False) -> bool:
        """Whether ``relpath`` is excluded.

        ``is_dir`` is accepted for symmetry: as in Go, a pattern's trailing
        ``/`` is cleaned away, so directories and files match alike.
        """
        return self.matches(relpath)

    def _could_match_below(self, dir_relpath: str, exclusion: bool) -> bool:
        d = go_clean(dir_relpath.replace(os.sep, "/")).strip("/")
        if d in ("", "."):
            return any(q.exclusion == exclusion for q in self._pats)
        dparts = d.split("/")
        if self._index is not None:
            return not exclusion and self._index.could_match_below(d, dparts)
        dslash = d + "/"
        wanted = [q for q in self._pats if q.exclusion == exclusion]
        if not wanted:
            return False
        # fsutil's own test: if every such pattern is a literal path (after
        # dropping a trailing /** or /*), the directory must be a prefix of one.
        if not any(c in q.stripped for q in wanted for c in _FSUTIL_PATTERN_CHARS):
            if not any((q.stripped + "/").startswith(dslash) for q in wanted):
                return False
        return any(q.could_match_below(dparts) for q in wanted)

    def may_contain_exception(self, dir_relpath: str) -> bool:
        """Whether a ``!`` exception could re-include something inside this directory.

        When False, an excluded directory can be skipped without reading it.
        """
        return self._could_match_below(dir_relpath, exclusion=True)


class IncludeMatcher(Matcher):
    """The include side of a filter (``include-patterns``, same syntax).

    A path is included if the patterns match it or one of its ancestors, so a
    matching directory brings its whole subtree. Parents of included entries
    are sent even when not matched themselves (that is the walker's job).
    """

    def included(self, relpath: str, is_dir: bool = False) -> bool:
        return self.matches(relpath)

    def may_contain_match(self, dir_relpath: str) -> bool:
        """Whether anything inside this (not included) directory could be included.

        When False the directory need not be read.
        """
        return self._could_match_below(dir_relpath, exclusion=False)
