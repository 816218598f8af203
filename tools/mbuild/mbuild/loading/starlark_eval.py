"""Evaluating one BUILD file (and the .bzl files it loads) with Starlark.

This is the part of loading that runs workspace code; it runs in a child
process with resource limits (:mod:`mbuild.loading.sandbox`), and gives back
plain data, an :class:`EvaluatedPackage`: each rule call's kind, line and
keyword arguments (checked against the rule's schema afterwards, by
:mod:`mbuild.loading.build_files`). See that module for what a BUILD file can
call.

How call sites are found: every evaluated file gets one extra first line that
loads the rule functions from a generated prelude module; each rule function
there is ``def kind(**kwargs): _mbuild_rule("kind", call_stack(), ...kwargs...)``,
so the call stack gives the BUILD file line of the call (the outermost frame,
also for rules called from macros) and the macro's line (the innermost).
Line numbers are shifted back by one in every location and error message.

Values cross between Starlark and Python as one JSON text each way (the
rule's keyword arguments, glob()'s result): starlark-pyo3 converts a list
element by element, which made a glob of 100,000 files cost 0.3 s; a single
JSON text costs a few milliseconds. Only the prelude sees ``json``.

Bounds (:class:`EvaluationLimits`): steps and memory are checked about every
thousand Starlark instructions (a callback of the evaluator), so a runaway
loop stops with an error at its line; brackets nested too deep are refused
before parsing (:func:`mbuild.loading.starlark_text.too_deep`). What one
instruction does at once (a list of a billion items) is bounded by the
child process's limits instead.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import starlark as sl

from mbuild.errors import ConfigError, at
from mbuild.loading.labels import parse_label
from mbuild.loading.packages import BUILD_FILE_NAMES, build_file, is_skipped_dir
from mbuild.loading.sources import IgnoreFile
from mbuild.loading.starlark_text import NotUTF8, read_utf8, too_deep, top_level_statements

__all__ = ["BUILTIN_NAMES", "EvaluationLimits", "EvaluatedPackage", "Evaluator", "RuleCall"]

PRELUDE_ID = "@mbuild//:prelude.bzl"
BUILTIN_NAMES = ("glob", "package_name", "package")
_RULE_CALLBACK = "_mbuild_rule"
_GLOB_CALLBACK = "_mbuild_glob"
_RULE_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TICK = 1000  # Starlark instructions between two calls of the limit check (about)


@dataclass(frozen=True)
class EvaluationLimits:
    """How much one command's BUILD evaluation may take.

    ``steps``: Starlark instructions one BUILD file may run, with what it
    loads (a package of 10,000 targets made by a macro takes a few million).
    ``memory``: bytes the evaluating process may grow by, over all files.
    ``seconds``: wall-clock time one BUILD file may take.
    ``nesting``: how deep brackets may nest in a BUILD or .bzl file.
    """

    steps: int = 200_000_000
    memory: int = 512 << 20
    seconds: float = 120.0
    nesting: int = 100


@dataclass(frozen=True)
class RuleCall:
    """One rule call of a BUILD file, as evaluated: ``line`` is the BUILD
    file's line (the outermost frame); ``via`` the .bzl file and line of the
    call when a macro made it."""

    kind: str
    line: int | None
    kwargs_json: str
    raw: dict  # arguments JSON cannot carry exactly (dicts with keys that are not strings)
    via: tuple[str, int] | None = None


@dataclass(frozen=True)
class EvaluatedPackage:
    """What evaluating a BUILD file gives: plain data."""

    name: str
    build_file: str  # workspace-relative, e.g. "infra/BUILD"
    calls: tuple[RuleCall, ...]
    default_visibility: tuple[str, ...] | None
    bzl_files: tuple[str, ...]


@dataclass
class _Frame:
    """A file being evaluated (BUILD or .bzl)."""

    path: str  # workspace-relative
    package: str  # package for relative loads
    is_build: bool


@dataclass
class _PackageState:
    """Mutable state while one BUILD file is evaluated."""

    package: str
    build_path: str
    budget: "_Budget"
    calls: list[RuleCall] = field(default_factory=list)
    default_visibility: tuple[str, ...] | None = None
    package_called: bool = False
    files: list[str] | None = None  # cached listing for glob
    bzl_files: set[str] = field(default_factory=set)
    pending: ConfigError | None = None  # first error raised inside a callback


class _CallbackError(Exception):
    """Raised inside a Starlark callback; the message becomes ``file:line: msg``."""


class _Budget:
    """The limit check the evaluator calls about every thousand instructions."""

    def __init__(self, limits: EvaluationLimits, memory_base: int) -> None:
        self.limits = limits
        self.ticks_left = max(limits.steps // _TICK, 1)
        self.memory_top = memory_base + limits.memory
        self.deadline = time.monotonic() + limits.seconds
        self.exceeded: str | None = None

    def check(self) -> bool:
        self.ticks_left -= 1
        if self.ticks_left < 0:
            self.exceeded = (f"evaluation took more than {self.limits.steps:,} steps (the limit for a BUILD "
                             f"file and what it loads); a loop this long is a mistake: make it shorter")
        elif self.ticks_left % 8 == 0 and resident_bytes() > self.memory_top:
            self.exceeded = (f"evaluation needs more than {_size(self.limits.memory)} of memory; build smaller "
                             f"values (a list or string this large is a mistake)")
        elif time.monotonic() > self.deadline:
            self.exceeded = (f"evaluation took more than {self.limits.seconds:g} s; make the BUILD file (or the "
                             f"macros it calls) do less")
        return self.exceeded is not None


_PAGE = os.sysconf("SC_PAGE_SIZE")


def resident_bytes() -> int:
    """This process's resident memory now (``/proc/self/statm``). Not the
    peak (``ru_maxrss``): a forked evaluator inherits its parent's peak, which
    may lie far above what it holds, and growth would go unseen until the
    address-space cap struck first, with no line to name."""
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * _PAGE


def _size(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"


_FRAME_RE = re.compile(r"^\s*\* (.+?):(\d+), in ", re.MULTILINE)
_ARROW_RE = re.compile(r"^\s*--> (.+?):(\d+):(\d+)", re.MULTILINE)
_PREFIX_RE = re.compile(r"^(?:error: |StarlarkError: |_CallbackError: |ValueError: |TypeError: )+")
_NO_SYMBOL_RE = re.compile(r"Module has no symbol `([^`]*)`")
_LOAD_ID_RE = re.compile(r"""load\(\s*(?:"([^"]*)"|'([^']*)')""")
_TOP_LEVEL_NAME_RE = re.compile(r"^(?:def\s+([A-Za-z_]\w*)|([A-Za-z_]\w*)\s*=[^=])", re.MULTILINE)


class Evaluator:
    """Evaluates the BUILD files of one workspace; caches evaluated .bzl files.

    ``rule_names``: the rules BUILD files can call (their attributes are
    checked later, against the schemas). ``skip_dirs`` are extra directory
    names never globbed; ``ignore`` the workspace's .dockerignore (glob never
    lists what it excludes).
    """

    @classmethod
    def from_spec(cls, spec: tuple) -> "Evaluator":
        root, rule_names, skip_dirs, patterns, limits = spec
        return cls(root, rule_names, skip_dirs, IgnoreFile(patterns), limits)

    def __init__(self, root: Path, rule_names: Sequence[str], skip_dirs: Sequence[str] = (),
                 ignore: IgnoreFile | None = None, limits: EvaluationLimits = EvaluationLimits()) -> None:
        self.root = Path(root).resolve()
        self.rule_names = tuple(sorted(rule_names))
        self.skip_dirs = frozenset(skip_dirs)
        self.ignore = ignore or IgnoreFile()
        self.limits = limits
        # What makes another one like it (:meth:`from_spec`; sent to a worker forked before this was known).
        self.spec = (self.root, self.rule_names, tuple(sorted(self.skip_dirs)), self.ignore.patterns, self.limits)
        for name in self.rule_names:
            if not _RULE_NAME_RE.fullmatch(name) or name in BUILTIN_NAMES or name.startswith("_"):
                raise ValueError(f"invalid rule name {name!r}")
        self._memory_base = resident_bytes()
        self._globals = sl.Globals.extended_by([sl.LibraryExtension.CallStack, sl.LibraryExtension.StructType])
        self._build_dialect = sl.Dialect.standard()
        self._build_dialect.enable_def = False
        self._bzl_dialect = sl.Dialect.standard()
        self._file_loader = sl.FileLoader(self._load_module)
        self._prelude: sl.FrozenModule | None = None
        names = (*self.rule_names, *BUILTIN_NAMES)
        self._header = f"load({_quote(PRELUDE_ID)}, {', '.join(_quote(n) for n in names)})\n"
        self._bzl_cache: dict[str, tuple[sl.FrozenModule, frozenset[str]]] = {}
        self._bzl_sources: dict[str, str] = {}
        self._stack: list[_Frame] = []
        self._state: _PackageState | None = None
        self._loading: list[str] = []
        self._report: Callable[[list[tuple[str, int]]], None] | None = None
        self._positions: list[tuple[str, int]] = []

    # -- public ----------------------------------------------------------

    def evaluate(self, package: str) -> EvaluatedPackage:
        """Evaluate the BUILD file of ``package``; ConfigError on any problem."""
        path = build_file(self.root, package)
        if path is None:
            raise ConfigError(
                f"no package '//{package}': {package or '.'}/ has no BUILD or BUILD.bazel file; create one or fix the label"
            )
        rel = f"{package}/{path.name}" if package else path.name
        try:
            source = read_utf8(path.read_bytes())
        except NotUTF8 as err:
            raise ConfigError(at(rel, err.line, err.message)) from None
        except OSError as err:
            raise ConfigError(f"{rel}: cannot read: {err.strerror}") from None
        state = _PackageState(package=package, build_path=rel, budget=_Budget(self.limits, self._memory_base))
        self._state = state
        self._stack = [_Frame(rel, package, True)]
        try:
            self._eval(rel, source, sl.Module(), self._build_dialect, state)
        finally:
            self._state = None
            self._stack = []
        return EvaluatedPackage(package, rel, tuple(state.calls), state.default_visibility,
                                tuple(sorted(state.bzl_files)))

    def evaluate_stepwise(self, package: str, report: Callable[[list[tuple[str, int]]], None]) -> None:
        """Evaluate ``package`` again one top-level statement at a time (and
        each .bzl file it loads), calling ``report`` with the stack of
        (file, line) positions before each statement: to find the statement
        an evaluation that crashed was at."""
        self._report = report
        self._bzl_cache.clear()
        try:
            self.evaluate(package)
        finally:
            self._report = None

    # -- evaluation --------------------------------------------------------

    @property
    def prelude(self) -> sl.FrozenModule:
        if self._prelude is None:
            self._prelude = self._make_prelude()
        return self._prelude

    def _eval(self, rel: str, source: str, module: sl.Module, dialect: sl.Dialect, state: _PackageState) -> None:
        deep = too_deep(source, self.limits.nesting)
        if deep is not None:
            raise ConfigError(at(rel, deep.line, f"brackets nested more than {self.limits.nesting} deep (column "
                                                 f"{deep.column}); flatten the expression or build it in steps"))
        options = sl.EvalOptions(check_cancelled=state.budget.check)
        try:
            if self._report is not None:
                self._eval_stepwise(rel, source, module, dialect, options)
                return
            # Trailing newlines are dropped: Starlark reports an error at the very
            # end of a file (an unclosed bracket) at 1:1 when the text ends in one.
            ast = sl.parse(rel, self._header + source.rstrip(), dialect)
            sl.eval_with(options, module, ast, self._globals, self._file_loader)
        except sl.StarlarkError as err:
            if state.pending is not None:
                raise state.pending from None
            raise _convert_error(str(err), rel, source, state.budget.exceeded, self._bzl_sources) from None

    def _eval_stepwise(self, rel: str, source: str, module: sl.Module, dialect: sl.Dialect, options) -> None:
        assert self._report is not None
        sl.eval_with(options, module, sl.parse(rel, self._header), self._globals, self._file_loader)
        lines = source.rstrip().split("\n")
        starts = top_level_statements(source)
        for i, start in enumerate(starts):
            end = starts[i + 1] - 1 if i + 1 < len(starts) else len(lines)
            self._positions.append((rel, start))
            self._report(list(self._positions))
            chunk = "\n" * start + "\n".join(lines[start - 1:end])  # the header's line, and the lines before
            try:
                sl.eval_with(options, module, sl.parse(rel, chunk, dialect), self._globals, self._file_loader)
            finally:
                self._positions.pop()

    def _make_prelude(self) -> sl.FrozenModule:
        module = sl.Module()
        module.add_callable(_RULE_CALLBACK, self._rule_called)
        # Called only by the prelude's glob(), always with three arguments:
        # Starlark itself reports a wrong call of glob() at the BUILD line.
        module.add_callable(_GLOB_CALLBACK, self._glob)
        for name, fn in (("package_name", self._package_name), ("package", self._package)):
            module.add_callable(name, _named(name, fn))
        # A dict with a key that is not a string would come out of json.encode
        # with the key turned into one ({1: "a"} -> {"1": "a"}); such values
        # cross the plain way, so that the attribute check sees the real key.
        src = (
            "def _odd(v):\n"
            "    return type(v) == 'dict' and any([type(k) != 'string' for k in v])\n"
            "def _json(kwargs):\n"
            "    return json.encode({k: v for k, v in kwargs.items() if not _odd(v)})\n"
            "def _raw(kwargs):\n"
            "    return {k: v for k, v in kwargs.items() if _odd(v)}\n"
        )
        src += "".join(
            f"def {name}(**kwargs):\n"
            f"    {_RULE_CALLBACK}({_quote(name)}, call_stack(), _json(kwargs), _raw(kwargs))\n"
            for name in self.rule_names
        )
        src += (
            "def glob(include = None, exclude = None, allow_empty = True):\n"
            f"    return json.decode({_GLOB_CALLBACK}(include, exclude, allow_empty))\n"
        )
        prelude_globals = sl.Globals.extended_by(
            [sl.LibraryExtension.CallStack, sl.LibraryExtension.StructType, sl.LibraryExtension.Json])
        sl.eval(module, sl.parse(PRELUDE_ID, src), prelude_globals)
        return module.freeze()

    def _load_module(self, module_id: str) -> sl.FrozenModule:
        """FileLoader callback for ``load(module_id, ...)``."""
        if module_id == PRELUDE_ID:
            return self.prelude
        state = self._state
        assert state is not None
        frame = self._stack[-1]
        try:
            rel = _bzl_path(module_id, frame.package)
        except ConfigError as err:
            raise _CallbackError(str(err))
        cached = self._bzl_cache.get(rel)
        if cached is not None:
            state.bzl_files.update(cached[1])
            return cached[0]
        if rel in self._loading:
            cycle = " -> ".join([*self._loading[self._loading.index(rel):], rel])
            raise _CallbackError(f"load cycle: {cycle}; remove one of these load() statements")
        path = self.root / rel
        try:
            resolved = path.resolve()
            resolved.relative_to(self.root)
            source = read_utf8(resolved.read_bytes())
        except NotUTF8 as err:
            raise _CallbackError(f"cannot load '{module_id}': {rel}:{err}")
        except ValueError:
            raise _CallbackError(f"cannot load '{module_id}': {rel} resolves to {resolved}, outside the "
                                 f"workspace; .bzl files are loaded from the workspace only: copy it in")
        except FileNotFoundError:
            raise _CallbackError(f"cannot load '{module_id}': {rel} does not exist; fix the path")
        except IsADirectoryError:
            raise _CallbackError(f"cannot load '{module_id}': {rel} is a directory; name a .bzl file")
        except OSError as err:
            raise _CallbackError(f"cannot load '{module_id}': {rel}: {err.strerror}")
        self._bzl_sources[module_id] = source
        before = set(state.bzl_files)
        state.bzl_files = set()
        self._loading.append(rel)
        self._stack.append(_Frame(rel, rel.rpartition("/")[0], False))
        try:
            module = sl.Module()
            try:
                self._eval(rel, source, module, self._bzl_dialect, state)
            except ConfigError as err:
                if state.pending is None:
                    state.pending = err
                raise _CallbackError(str(err)) from None
            frozen = module.freeze()
        finally:
            self._stack.pop()
            self._loading.pop()
            deps = frozenset(state.bzl_files | {rel})
            state.bzl_files = before | deps
        self._bzl_cache[rel] = (frozen, deps)
        return frozen

    # -- callbacks (called from Starlark) ---------------------------------------

    def _require_build(self, what: str) -> _PackageState:
        state = self._state
        if state is None or not self._stack or not self._stack[-1].is_build:
            raise _CallbackError(
                f"{what} can only be called while a BUILD file is evaluated, not at the top level of a .bzl file; "
                f"call it from a macro"
            )
        return state

    def _rule_called(self, kind: str, stack: str, kwargs_json: str, raw: dict[str, Any]) -> None:
        state = self._require_build(f"rule {kind}()")
        frames = [(m.group(1), int(m.group(2)) - 1) for m in _FRAME_RE.finditer(stack)]
        frames = [f for f in frames if f[0] != PRELUDE_ID]
        line = frames[0][1] if frames and frames[0][0] == state.build_path else None
        via = frames[-1] if len(frames) > 1 and frames[-1][0] != state.build_path else None
        state.calls.append(RuleCall(kind, line, kwargs_json, _plain(raw), via))

    def _package_name(self) -> str:
        return self._require_build("package_name()").package

    def _package(self, default_visibility: list[str] | None = None) -> None:
        state = self._require_build("package()")
        if state.calls:
            raise _CallbackError("package() must come before any rule in the BUILD file; move it to the top")
        if state.package_called:
            raise _CallbackError("package() can only be called once per BUILD file")
        state.package_called = True
        if default_visibility is not None:
            if not isinstance(default_visibility, list) or not all(isinstance(v, str) for v in default_visibility):
                raise _CallbackError("package(default_visibility = ...) must be a list of strings")
            state.default_visibility = tuple(default_visibility)

    def _glob(self, include: Any = None, exclude: Any = None, allow_empty: Any = True) -> str:
        """The matching package files, as JSON text (see the module docstring)."""
        state = self._require_build("glob()")
        include = _pattern_list("include", include)
        exclude = _pattern_list("exclude", exclude if exclude is not None else [])
        if not include:
            raise _CallbackError('glob() needs at least one pattern, e.g. glob(["*.py"])')
        if state.files is None:
            state.files = _list_package_files(self.root, state.package, self.skip_dirs, self.ignore)
        inc = _compile_globs(include)
        exc = _compile_globs(exclude) if exclude else None
        result = [f for f in state.files if inc.fullmatch(f) and not (exc and exc.fullmatch(f))]
        if not result and allow_empty is False:
            raise _CallbackError(f"glob({include!r}) matched no files in package //{state.package}; fix the "
                                 f"patterns, or drop allow_empty = False")
        return json.dumps(result)


# ---------------------------------------------------------------------------
# helpers


def _plain(value: Any) -> Any:
    """``value`` with anything that is not plain data (str, int, float, bool,
    None, list, dict) replaced by its repr: it crosses a process boundary."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {_plain(k) if isinstance(k, (str, int, float, bool, type(None))) else repr(k): _plain(v)
                for k, v in value.items()}
    return repr(value)


def _named(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``fn`` so Python's argument errors name the BUILD-file function."""

    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TypeError as err:
            raise _CallbackError(re.sub(r"^[\w.<>]*\(\)", f"{name}()", str(err))) from None

    call.__name__ = call.__qualname__ = name
    return call


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _bzl_path(module_id: str, current_package: str) -> str:
    """``//rules:macros.bzl`` -> ``rules/macros.bzl`` (``:x.bzl`` is relative)."""
    label = parse_label(module_id, current_package)
    if not label.name.endswith(".bzl"):
        raise ConfigError(f"cannot load '{module_id}': only .bzl files can be loaded")
    return f"{label.package}/{label.name}" if label.package else label.name


def _pattern_list(what: str, value: Any) -> list[str]:
    if isinstance(value, str):
        raise _CallbackError(f'glob() {what} must be a list of patterns, e.g. ["{value}"]')
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _CallbackError(f"glob() {what} must be a list of strings")
    for pattern in value:
        why = _bad_glob(pattern)
        if why:
            raise _CallbackError(f"invalid glob pattern '{pattern}': {why}")
    return value


def _bad_glob(pattern: str) -> str | None:
    if not pattern:
        return "empty pattern"
    if pattern.startswith("/"):
        return "patterns are relative to the package; remove the leading '/'"
    parts = pattern.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return "'..', '.' and empty path segments are not allowed (a glob never leaves its package)"
    if any("**" in p and p != "**" for p in parts):
        return "'**' must be a whole path segment, like 'src/**/*.py'"
    return None


def _compile_globs(patterns: list[str]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{_glob_regex(p)})" for p in patterns))


def _glob_regex(pattern: str) -> str:
    parts = pattern.split("/")
    out = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "**":
            out.append("(?:[^/]+/)*[^/]+" if last else "(?:[^/]+/)*")
            continue
        seg = "".join("[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c) for c in part)
        out.append(seg if last else seg + "/")
    return "".join(out)


def _list_package_files(root: Path, package: str, skip: frozenset[str], ignore: IgnoreFile) -> list[str]:
    """Sorted package-relative paths of the files of ``package`` (not of its
    subpackages, not under ignored/hidden directories, not excluded by
    .dockerignore, no symlinks leaving the workspace)."""
    base = os.path.join(root, package) if package else os.fspath(root)
    root_str = os.fspath(root)
    matcher = ignore.matcher
    top_state = 0
    if matcher is not None and package:
        parts = package.split("/")
        for i in range(len(parts)):
            excluded, top_state = matcher.match_step("/".join(parts[: i + 1]), top_state)
        if excluded and not matcher.may_contain_exception(package):
            return []
    ws_prefix = f"{package}/" if package else ""
    files: list[str] = []
    stack = [(base, "", top_state)]
    while stack:
        directory, prefix, state = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        if prefix and any(e.name in BUILD_FILE_NAMES and e.is_file() for e in entries):
            continue  # a subpackage
        for entry in entries:
            rel = prefix + entry.name
            entry_state = 0
            if matcher is not None:
                excluded, entry_state = matcher.match_step(ws_prefix + rel, state)
            else:
                excluded = False
            if entry.is_dir(follow_symlinks=False):
                if not is_skipped_dir(entry.name, skip) and (
                        not excluded or matcher.may_contain_exception(ws_prefix + rel)):
                    stack.append((entry.path, rel + "/", entry_state))
            elif excluded:
                continue
            elif entry.is_symlink():
                target = os.path.realpath(entry.path)
                if os.path.isfile(target) and (target + os.sep).startswith(root_str + os.sep):
                    files.append(rel)
            elif entry.is_file(follow_symlinks=False):
                files.append(rel)
    files.sort()
    return files


def _convert_error(text: str, fallback_path: str, source: str = "", exceeded: str | None = None,
                   bzl_sources: dict[str, str] | None = None) -> ConfigError:
    """Turn a StarlarkError message into ``file:line: message`` (one line).
    ``exceeded``: why the limit check stopped the evaluation, if it did."""
    message = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("error:"):
            message = stripped
            break
    message = _PREFIX_RE.sub("", message).strip() or text.strip().splitlines()[0]
    message = message.replace("Parse error: ", "syntax error: ")
    if exceeded is not None and "cancelled" in message.lower():
        message = exceeded
    elif "is not allowed in this dialect" in message and "`def`" in message:
        message = "`def` is not allowed in BUILD files; define functions in a .bzl file and load() them"
    elif "cannot be used outside `def` in this dialect" in message:
        message = message.replace(
            "cannot be used outside `def` in this dialect",
            "statements are not allowed at the top level; use a macro (a def in a .bzl file) or a comprehension",
        )
    elif ", expected one of " in message and len(message) > 120:
        message = message.split(", expected one of ")[0] + "; check for a missing or extra bracket, comma or quote"
    elif "serde::serialize" in message:
        kind = re.search(r"on type `([^`]+)`", message)
        message = (
            "rule attributes must be plain values (string, int, bool, list, dict)"
            + (f", got {kind.group(1)}" if kind else "")
        )
    elif re.fullmatch(r"Variable `[^`]*` not found", message):
        message += "; define it before this line, or load() it from a .bzl file"
    elif "Starlark call stack overflow" in message:
        message = ("calls nested too deeply (Starlark call stack overflow): a function that calls itself "
                   "without end? Make the recursion end, or use a loop")
    extra = re.search(rf"extra positional argument\(s\) for call to {re.escape(PRELUDE_ID)}\.(\w+)", message)
    if extra and extra.group(1) == "glob":
        message = "glob() takes at most 3 arguments: glob(include, exclude = [], allow_empty = True)"
    elif extra:
        message = f"rule {extra.group(1)}() takes keyword arguments only, e.g. {extra.group(1)}(name = \"...\", ...)"
    elif "for call to " + PRELUDE_ID in message:
        message = message.replace(PRELUDE_ID + ".", "")

    path, line = fallback_path, None
    arrows = [(m.group(1), int(m.group(2))) for m in _ARROW_RE.finditer(text)]
    frames = [(m.group(1), int(m.group(2))) for m in _FRAME_RE.finditer(text)]
    user_arrows = [a for a in arrows if a[0] != PRELUDE_ID]
    user_frames = [f for f in frames if f[0] != PRELUDE_ID]
    if arrows and arrows[0][0] != PRELUDE_ID:
        path, line = arrows[0]
    elif user_frames:
        path, line = user_frames[-1]
    elif user_arrows:
        path, line = user_arrows[0]
    if line is not None:
        line = max(line - 1, 1)  # undo the prelude line
    symbol = _NO_SYMBOL_RE.search(message)
    if symbol and path == fallback_path and line is not None:
        message = _no_symbol(symbol.group(1), source, line, bzl_sources or {})
    if user_frames and (user_frames[0][0] != path or user_frames[0][1] - 1 != line):
        outer_path, outer_line = user_frames[0]
        message += f" (called from {outer_path}:{max(outer_line - 1, 1)})"
    return ConfigError(at(path, line, message))


def _no_symbol(symbol: str, source: str, line: int, bzl_sources: dict[str, str]) -> str:
    """The message for ``load(ID, "symbol")`` of a symbol ID does not define."""
    loads = list(_LOAD_ID_RE.finditer("\n".join(source.split("\n")[:line])))  # the last one up to the line
    module_id = (loads[-1].group(1) or loads[-1].group(2)) if loads else None
    if module_id is None:
        return f"the loaded module has no symbol '{symbol}'; check the load() statement"
    names = sorted({a or b for a, b in _TOP_LEVEL_NAME_RE.findall(bzl_sources.get(module_id, ""))
                    if not (a or b).startswith("_")})
    if symbol.startswith("_"):
        why = "names starting with '_' are private to their file"
    else:
        why = f"it defines {', '.join(names)}" if names else "it defines no public names"
    return f"load('{module_id}'): no symbol '{symbol}' ({why}); load one it defines"
