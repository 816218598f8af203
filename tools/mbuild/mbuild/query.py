"""``mbuild query``: a small subset of Bazel's query language.

Expressions::

    //pkg:name, //pkg:all, //pkg/..., :name    a target pattern (see loading/labels.py)
    deps(X)            X and everything X depends on, transitively
    deps(X, N)         ... at most N edges away (deps(X, 0) = X, deps(X, 1) = X + direct deps)
    rdeps(U, X)        targets in the transitive closure of U that depend on X (X included)
    rdeps(U, X, N)     ... at most N edges away
    kind(REGEX, X)     targets of X whose rule kind matches REGEX (re.search)
    filter(REGEX, X)   targets of X whose label matches REGEX (re.search)
    attr(NAME, REGEX, X)  targets of X with an attribute NAME whose value matches
                       REGEX (re.search); a list reads "[a, b]", a dict "{k: v}",
                       a label "//pkg:name", a bool "True"/"False", as in Bazel
    somepath(X, Y)     the targets on one dependency path from a target of X to
                       a target of Y (empty if there is none)
    allpaths(X, Y)     the targets on every dependency path from X to Y
    X + Y, X union Y           union
    X - Y, X except Y          difference
    X ^ Y, X intersect Y       intersection
    ( X )                      grouping

Set operators are left-associative with equal precedence (as in Bazel), so
``a + b - c`` is ``(a + b) - c``; use parentheses otherwise. ``-`` must be
preceded by a space when it follows a word (``//a:x-y`` is one label).
Parentheses and function calls nest at most ``MAX_NESTING`` deep; a chain of
operators may be as long as it likes.
Words may be quoted with ' or " (needed for regexes with special characters).

Use: ``graph = load_graph(root, schemas, query_patterns(text))`` then
``evaluate_query(text, graph)``.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

from mbuild.errors import ConfigError
from mbuild.loading.labels import Label

if TYPE_CHECKING:
    from mbuild.loading.graph import TargetGraph

__all__ = [
    "Expr",
    "PatternExpr",
    "FuncExpr",
    "SetExpr",
    "parse_query",
    "query_patterns",
    "evaluate_query",
]


@dataclass(frozen=True)
class PatternExpr:
    """A target pattern word."""

    text: str
    pos: int


@dataclass(frozen=True)
class FuncExpr:
    """A function (``deps``, ``rdeps``, ``kind``, ``filter``, ``attr``, ``somepath``, ``allpaths``) with its arguments
    (expressions, or str / int for word / depth arguments)."""

    name: str
    args: tuple[Union["Expr", str, int], ...]
    pos: int


@dataclass(frozen=True)
class SetExpr:
    """``left OP right`` with OP one of '+', '-', '^'."""

    op: str
    left: "Expr"
    right: "Expr"
    pos: int


Expr = Union[PatternExpr, FuncExpr, SetExpr]

# name -> argument kinds: "e" expression, "w" word (regex), "n" optional integer
_FUNCTIONS: dict[str, tuple[str, ...]] = {
    "deps": ("e", "n"),
    "rdeps": ("e", "e", "n"),
    "kind": ("w", "e"),
    "filter": ("w", "e"),
    "attr": ("w", "w", "e"),
    "somepath": ("e", "e"),
    "allpaths": ("e", "e"),
}
MAX_NESTING = 100  # parentheses and calls inside each other
_OPS = {"+": "+", "union": "+", "-": "-", "except": "-", "^": "^", "intersect": "^"}
_WORD_START = re.compile(r"[A-Za-z0-9_/:.*@~$]")
_WORD_CHARS = re.compile(r"[A-Za-z0-9_/:.*@~$\-=#%&!\[\]{}|?]*")


@dataclass(frozen=True)
class _Token:
    kind: str  # "word", "qword", "op", "(", ")", ",", "end"
    text: str
    pos: int


class _QueryError(Exception):
    def __init__(self, pos: int, message: str) -> None:
        super().__init__(message)
        self.pos = pos


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c in "(),":
            tokens.append(_Token(c, c, i))
            i += 1
        elif c in "+-^":
            tokens.append(_Token("op", c, i))
            i += 1
        elif c in "\"'":
            end = text.find(c, i + 1)
            if end < 0:
                raise _QueryError(i, f"unterminated quote {c}")
            tokens.append(_Token("qword", text[i + 1 : end], i))
            i = end + 1
        elif _WORD_START.match(c):
            m = _WORD_CHARS.match(text, i + 1)
            end = m.end() if m else i + 1
            word = text[i:end]
            tokens.append(_Token("op" if word in _OPS else "word", word, i))
            i = end
        else:
            raise _QueryError(i, f"unexpected character {c!r}")
    tokens.append(_Token("end", "", n))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.i = 0
        self.depth = 0  # parentheses and calls open around the current token

    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def expect(self, kind: str, what: str) -> _Token:
        tok = self.tok
        if tok.kind != kind:
            raise _QueryError(tok.pos, f"expected {what}, found {_describe(tok)}")
        return self.take()

    def parse(self) -> Expr:
        expr = self.expr()
        if self.tok.kind != "end":
            raise _QueryError(self.tok.pos, f"expected an operator (+, -, ^) or the end, found {_describe(self.tok)}")
        return expr

    def expr(self) -> Expr:
        left = self.primary()
        while self.tok.kind == "op":
            op = self.take()
            right = self.primary()
            left = SetExpr(_OPS[op.text], left, right, op.pos)
        return left

    def primary(self) -> Expr:
        tok = self.tok
        if tok.kind == "(" or (tok.kind == "word" and self.tokens[self.i + 1].kind == "("):
            if self.depth == MAX_NESTING:
                raise _QueryError(tok.pos, f"parentheses and calls nested more than {MAX_NESTING} deep; "
                                           f"write the expression flatter (X + Y + Z needs none)")
            self.depth += 1
            try:
                return self.group() if tok.kind == "(" else self.call()
            finally:
                self.depth -= 1
        if tok.kind in ("word", "qword"):
            self.take()
            return PatternExpr(tok.text, tok.pos)
        raise _QueryError(tok.pos, f"expected a target pattern, a function or '(', found {_describe(tok)}")

    def group(self) -> Expr:
        self.take()
        inner = self.expr()
        self.expect(")", "')'")
        return inner

    def call(self) -> FuncExpr:
        name_tok = self.take()
        name = name_tok.text
        spec = _FUNCTIONS.get(name)
        if spec is None:
            close = difflib.get_close_matches(name, list(_FUNCTIONS), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; known functions: {', '.join(_FUNCTIONS)}"
            raise _QueryError(name_tok.pos, f"unknown function '{name}'{hint}")
        self.expect("(", "'('")
        args: list[Expr | str | int] = []
        for index, kind in enumerate(spec):
            if kind == "n":
                if self.tok.kind != ",":
                    break
                self.take()
                tok = self.tok
                if tok.kind != "word" or not tok.text.isdigit():
                    raise _QueryError(tok.pos, f"{name}() depth must be a non-negative integer, found {_describe(tok)}")
                self.take()
                args.append(int(tok.text))
                continue
            if index:
                self.expect(",", f"',' ({name}() takes {_arity(spec)} arguments)")
            if kind == "w":
                tok = self.tok
                if tok.kind not in ("word", "qword"):
                    what = "an attribute name" if name == "attr" and index == 0 else "a regular expression"
                    raise _QueryError(tok.pos, f"{name}() expects {what} as argument {index + 1}, "
                                               f"found {_describe(tok)}")
                self.take()
                args.append(tok.text)
            else:
                args.append(self.expr())
        self.expect(")", f"')' ({name}() takes {_arity(spec)} arguments)")
        return FuncExpr(name, tuple(args), name_tok.pos)


def _arity(spec: tuple[str, ...]) -> str:
    required = sum(1 for k in spec if k != "n")
    return f"{required} or {len(spec)}" if required != len(spec) else str(required)


def _describe(tok: _Token) -> str:
    if tok.kind == "end":
        return "the end of the expression"
    return f"'{tok.text}'"


def parse_query(text: str) -> Expr:
    """Parse a query expression; ConfigError showing the column on bad syntax."""
    try:
        return _Parser(text).parse()
    except _QueryError as err:
        shown = text if len(text) <= 200 else f"{text[:100]}…"
        raise ConfigError(f"invalid query at column {err.pos + 1}: {err}: {shown!r}") from None


def query_patterns(expr: Expr | str) -> list[str]:
    """The target patterns an expression mentions, in order without repeats
    (load these with load_graph before evaluating)."""
    if isinstance(expr, str):
        expr = parse_query(expr)
    found: dict[str, None] = {}
    stack: list[Expr | str | int] = [expr]  # not recursive: a chain of operators is as deep as it is long
    while stack:
        e = stack.pop()
        if isinstance(e, PatternExpr):
            found[e.text] = None
        elif isinstance(e, SetExpr):
            stack += [e.right, e.left]
        elif isinstance(e, FuncExpr):
            stack += reversed([arg for index, arg in enumerate(e.args) if _FUNCTIONS[e.name][index] == "e"])
    return list(found)


def evaluate_query(expr: Expr | str, graph: "TargetGraph", current_package: str = "") -> list[Label]:
    """Evaluate against ``graph`` (which must hold the packages of
    ``query_patterns(expr)``); returns sorted labels."""
    if isinstance(expr, str):
        expr = parse_query(expr)
    return sorted(_eval(expr, graph, current_package))


def _eval(e: Expr, graph: "TargetGraph", pkg: str) -> set[Label]:
    if isinstance(e, PatternExpr):
        return set(graph.resolve(e.text, pkg))
    if isinstance(e, SetExpr):
        chain: list[SetExpr] = []  # a + b + c is ((a + b) + c): walked, not recursed into
        while isinstance(e, SetExpr):
            chain.append(e)
            e = e.left
        result = _eval(e, graph, pkg)
        for node in reversed(chain):
            right = _eval(node.right, graph, pkg)
            result = result | right if node.op == "+" else result - right if node.op == "-" else result & right
        return result
    name, args = e.name, e.args
    if name == "deps":
        depth = args[1] if len(args) > 1 else None
        return set(graph.deps_closure(_eval(args[0], graph, pkg), depth))  # type: ignore[arg-type]
    if name == "rdeps":
        depth = args[2] if len(args) > 2 else None
        universe = _eval(args[0], graph, pkg)  # type: ignore[arg-type]
        return set(graph.rdeps(universe, _eval(args[1], graph, pkg), depth))  # type: ignore[arg-type]
    if name in ("somepath", "allpaths"):
        sources, sinks = _eval(args[0], graph, pkg), _eval(args[1], graph, pkg)  # type: ignore[arg-type]
        return (_some_path if name == "somepath" else _all_paths)(graph, sources, sinks)
    if name == "attr":
        attr, regex = args[0], _regex(args[1], name, e.pos)  # type: ignore[arg-type]
        targets = _eval(args[2], graph, pkg)  # type: ignore[arg-type]
        return {t for t in targets
                if attr in graph.targets[t].attrs and regex.search(_attr_text(graph.targets[t].attrs[attr]))}
    regex = _regex(args[0], name, e.pos)  # type: ignore[arg-type]
    targets = _eval(args[1], graph, pkg)  # type: ignore[arg-type]
    if name == "kind":
        return {t for t in targets if regex.search(graph.targets[t].kind)}
    return {t for t in targets if regex.search(str(t))}


def _attr_text(value: object) -> str:
    """An attribute value as Bazel's query prints it for ``attr()``."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_attr_text(v) for v in value) + "]"
    if isinstance(value, dict) or hasattr(value, "items"):
        return "{" + ", ".join(f"{_attr_text(k)}: {_attr_text(v)}" for k, v in value.items()) + "}"
    return "" if value is None else str(value)


def _some_path(graph: "TargetGraph", sources: set[Label], sinks: set[Label]) -> set[Label]:
    """One shortest path (breadth first over dependency edges), as a set."""
    parent: dict[Label, Label | None] = {s: None for s in sorted(sources)}
    queue = list(parent)
    for node in queue:  # the list grows as it is walked: a breadth-first queue
        if node in sinks:
            path = set()
            cur: Label | None = node
            while cur is not None:
                path.add(cur)
                cur = parent[cur]
            return path
        for dep in graph.deps(node):
            if dep not in parent:
                parent[dep] = node
                queue.append(dep)
    return set()


def _all_paths(graph: "TargetGraph", sources: set[Label], sinks: set[Label]) -> set[Label]:
    """Targets both reachable from ``sources`` and reaching ``sinks``."""
    reachable = set(graph.deps_closure(sources))
    reaching = set(graph.rdeps(reachable, sinks & reachable))
    return reachable & reaching


def _regex(text: str, name: str, pos: int) -> re.Pattern[str]:
    try:
        return re.compile(text)
    except re.error as err:
        raise ConfigError(f"invalid regular expression {text!r} in {name}() at column {pos + 1}: {err}") from None
