"""Facts about Starlark (and TOML) source text found without parsing it.

The parsers recurse once per nesting level: Starlark's (in Rust) overflows
its stack and takes the process down at a few thousand nested brackets,
Python's ``tomllib`` raises RecursionError. So a BUILD or .bzl file is
checked here first, and a file nested deeper than a limit is an error at the
line of the bracket that goes too deep:

* :func:`too_deep` - the first bracket nested deeper than a limit, or None.
  Cheap for ordinary files: it counts brackets with ``str.count`` and stops
  there when there are too few to reach the limit, and otherwise looks at
  the brackets alone; only a file that might be too deep is scanned exactly,
  skipping strings and comments.
* :func:`top_level_statements` - the line each top-level statement starts
  at: how a file whose evaluation crashed is evaluated again one statement
  at a time, to find the statement (see :mod:`mbuild.loading.sandbox`).
* :func:`read_utf8` - a file's text; bytes that are not UTF-8 are an error
  at their line.
"""

from __future__ import annotations

import io
import re
import tokenize
from itertools import accumulate
from typing import NamedTuple

__all__ = ["NotUTF8", "Position", "read_utf8", "too_deep", "top_level_statements"]

_OPEN, _CLOSE = "([{", ")]}"
_DELTA = {**{c: 1 for c in _OPEN}, **{c: -1 for c in _CLOSE}}
_NOT_BRACKET = re.compile(r"[^()\[\]{}]+")
# Strings (triple-quoted first; a prefix letter such as r or b is just text
# before the quote), comments, and the brackets themselves.
_TOKENS = re.compile(
    r'"""(?:\\.|[^\\])*?"""|' r"'''(?:\\.|[^\\])*?'''|"
    r'"(?:\\.|[^"\\\n])*"|' r"'(?:\\.|[^'\\\n])*'|"
    r"#[^\n]*|[()\[\]{}]",
    re.DOTALL,
)
# TOML: literal strings ('...', '''...''') have no escapes.
_TOML_TOKENS = re.compile(
    r'"""(?:\\.|[^\\])*?"""|' r"'''.*?'''|"
    r'"(?:\\.|[^"\\\n])*"|' r"'[^'\n]*'|"
    r"#[^\n]*|[()\[\]{}]",
    re.DOTALL,
)


class Position(NamedTuple):
    """A 1-based line and column."""

    line: int
    column: int


def too_deep(text: str, limit: int, toml: bool = False) -> Position | None:
    """Where ``text`` first nests brackets (``(``, ``[``, ``{``) more than
    ``limit`` deep, outside strings and comments; None if it never does."""
    opening = text.count("(") + text.count("[") + text.count("{")
    if opening <= limit:
        return None
    brackets = _NOT_BRACKET.sub("", text)
    if max(accumulate(map(_DELTA.__getitem__, brackets)), default=0) <= limit:
        return None  # brackets in strings only ever add to this count
    depth = 0
    for m in (_TOML_TOKENS if toml else _TOKENS).finditer(text):
        token = m.group()
        if token in _OPEN:
            depth += 1
            if depth > limit:
                start = m.start()
                line = text.count("\n", 0, start) + 1
                return Position(line, start - (text.rfind("\n", 0, start) + 1) + 1)
        elif token in _CLOSE:
            depth = max(depth - 1, 0)
    return None


def top_level_statements(text: str) -> list[int]:
    """The first line of each top-level statement of a Starlark file (its
    lines are Python's, as far as the tokenizer can tell: where it gives up,
    on text Starlark would not parse either, the rest counts as one)."""
    starts: list[int] = []
    at_start = True
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type in (tokenize.NL, tokenize.COMMENT, tokenize.ENCODING):
                continue
            if tok.type in (tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER):
                continue
            if tok.type == tokenize.NEWLINE:
                at_start = True
                continue
            if at_start:
                at_start = False
                if tok.start[1] == 0:
                    starts.append(tok.start[0])
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    return starts or [1]


class NotUTF8(Exception):
    """Text that is not UTF-8: ``str()`` is ``LINE: not UTF-8 text (...)``
    without the file, which the caller names."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"{line}: {message}")
        self.line, self.message = line, message


def read_utf8(raw: bytes) -> str:
    """``raw`` decoded; NotUTF8 at the line of the first byte that is not
    UTF-8 (editors show lines, not byte offsets)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        column = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        raise NotUTF8(line, f"not UTF-8 text (byte 0x{raw[err.start]:02x} at column {column}); save the file "
                            f"as UTF-8") from None
