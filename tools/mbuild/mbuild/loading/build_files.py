"""Evaluating BUILD files (and the .bzl files they load) with Starlark.

A BUILD file (``BUILD.bazel`` or ``BUILD``) is evaluated hermetically: the only
names available besides Starlark's standard built-ins are

* one function per rule whose schema the loader is given (mbuild's built-ins
  and the workspace's rule modules, WORKSPACE.toml ``rules``: the caller
  passes the registry's schemas), called with keyword arguments only
  (``python_image(name = "app", ...)``); each call declares one target;
* ``glob(include, exclude = [], allow_empty = True)`` - sorted list of files in
  the package matching the patterns (``*`` within a path segment, ``**`` any
  number of segments); never crosses into subpackages or out of the package,
  never lists hidden or ignored directories;
* ``package_name()`` - the package being evaluated ("" for the root);
* ``package(default_visibility = [...])`` - must come before any rule;
* ``load("//pkg:file.bzl", "sym", alias = "sym2")`` - a .bzl file relative to
  the workspace root (``:file.bzl`` = relative to the current package). The
  same names are available inside .bzl files, so macros can call rules, glob
  and package_name (while a BUILD file calls them). Each .bzl file is
  evaluated once per loader and shared.

``def`` is not allowed in BUILD files (put functions in a .bzl file). Nothing
else can read files, the environment or the clock.

How call sites are found: every evaluated file gets one extra first line that
loads the rule functions from a generated prelude module; each rule function
there is ``def kind(**kwargs): _mbuild_rule("kind", call_stack(), ...kwargs...)``,
so the call stack gives the BUILD file line of the call (the outermost frame,
also for rules called from macros). Line numbers are shifted back by one in
every location and error message.

Values cross between Starlark and Python as one JSON text each way (the
rule's keyword arguments, glob()'s result): starlark-pyo3 converts a list
element by element, which made a glob of 100,000 files cost 0.3 s; a single
JSON text costs a few milliseconds. Only the prelude sees ``json``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import starlark as sl

from mbuild.errors import ConfigError, at
from mbuild.loading.labels import Label, parse_label
from mbuild.loading.packages import BUILD_FILE_NAMES, build_file, is_skipped_dir
from mbuild.loading.schema import Location, RuleSchema, coerce_attrs

__all__ = ["TargetDecl", "Package", "BuildFileLoader", "BUILTIN_NAMES"]

PRELUDE_ID = "@mbuild//:prelude.bzl"
BUILTIN_NAMES = ("glob", "package_name", "package")
_RULE_CALLBACK = "_mbuild_rule"
_GLOB_CALLBACK = "_mbuild_glob"
_RULE_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class TargetDecl:
    """One target declared by a rule call in a BUILD file.

    ``attrs`` holds every attribute of the rule (including ``name``,
    ``visibility`` and ``tags``) after ``coerce_attrs``; treat it as read-only.
    ``deps`` is every Label in label/label_list attributes, sorted, without
    duplicates: the dependency edges of the target graph.
    """

    label: Label
    kind: str
    attrs: Mapping[str, Any]
    location: Location
    deps: tuple[Label, ...] = ()

    @property
    def visibility(self) -> tuple[str, ...]:
        visibility: tuple[str, ...] = self.attrs["visibility"]
        return visibility

    @property
    def tags(self) -> tuple[str, ...]:
        tags: tuple[str, ...] = self.attrs["tags"]
        return tags


@dataclass(frozen=True)
class Package:
    """A loaded package: its BUILD file and targets (in declaration order)."""

    name: str
    build_file: str  # workspace-relative path, e.g. "infra/BUILD"
    targets: Mapping[str, TargetDecl]
    bzl_files: tuple[str, ...] = ()  # workspace-relative .bzl files loaded (transitively)


# ---------------------------------------------------------------------------
# evaluation state


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
    calls: list[tuple[str, Location, dict[str, Any]]] = field(default_factory=list)
    default_visibility: tuple[str, ...] | None = None
    package_called: bool = False
    files: list[str] | None = None  # cached listing for glob
    bzl_files: set[str] = field(default_factory=set)
    pending: ConfigError | None = None  # first error raised inside a callback


class _CallbackError(Exception):
    """Raised inside a Starlark callback; the message becomes ``file:line: msg``."""


_FRAME_RE = re.compile(r"^\s*\* (.+?):(\d+), in ", re.MULTILINE)
_ARROW_RE = re.compile(r"^\s*--> (.+?):(\d+):(\d+)", re.MULTILINE)
_PREFIX_RE = re.compile(r"^(?:error: |StarlarkError: |_CallbackError: |ValueError: |TypeError: )+")


class BuildFileLoader:
    """Loads packages of one workspace; caches evaluated .bzl files.

    ``schemas`` maps rule name -> RuleSchema; every rule becomes a BUILD-file
    function. ``skip_dirs`` are extra directory names never globbed.
    """

    def __init__(self, root: Path, schemas: Mapping[str, RuleSchema], skip_dirs: tuple[str, ...] = ()) -> None:
        self.root = Path(root).resolve()
        self.schemas = dict(schemas)
        self.skip_dirs = frozenset(skip_dirs)
        for name in self.schemas:
            if not _RULE_NAME_RE.fullmatch(name) or name in BUILTIN_NAMES or name.startswith("_"):
                raise ValueError(f"invalid rule name {name!r}")
        self._globals = sl.Globals.extended_by([sl.LibraryExtension.CallStack, sl.LibraryExtension.StructType])
        self._build_dialect = sl.Dialect.standard()
        self._build_dialect.enable_def = False
        self._bzl_dialect = sl.Dialect.standard()
        self._file_loader = sl.FileLoader(self._load_module)
        self._prelude = self._make_prelude()
        names = (*sorted(self.schemas), *BUILTIN_NAMES)
        self._header = f"load({_quote(PRELUDE_ID)}, {', '.join(_quote(n) for n in names)})\n"
        self._bzl_cache: dict[str, tuple[sl.FrozenModule, frozenset[str]]] = {}
        self._stack: list[_Frame] = []
        self._state: _PackageState | None = None
        self._loading: list[str] = []

    # -- public ----------------------------------------------------------

    def load_package(self, package: str) -> Package:
        """Evaluate the BUILD file of ``package`` and return its targets."""
        path = build_file(self.root, package)
        if path is None:
            raise ConfigError(
                f"no package '//{package}': {package or '.'}/ has no BUILD or BUILD.bazel file; create one or fix the label"
            )
        rel = f"{package}/{path.name}" if package else path.name
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"{rel}: cannot read: {err}") from None
        state = _PackageState(package=package, build_path=rel)
        self._state = state
        self._stack = [_Frame(rel, package, True)]
        try:
            self._eval(rel, source, sl.Module(), self._build_dialect, state)
        finally:
            self._state = None
            self._stack = []
        return Package(
            name=package,
            build_file=rel,
            targets=self._declare(state),
            bzl_files=tuple(sorted(state.bzl_files)),
        )

    # -- evaluation --------------------------------------------------------

    def _eval(self, rel: str, source: str, module: sl.Module, dialect: sl.Dialect, state: _PackageState) -> None:
        try:
            # Trailing newlines are dropped: Starlark reports an error at the very
            # end of a file (an unclosed bracket) at 1:1 when the text ends in one.
            ast = sl.parse(rel, self._header + source.rstrip(), dialect)
            sl.eval(module, ast, self._globals, self._file_loader)
        except sl.StarlarkError as err:
            if state.pending is not None:
                raise state.pending from None
            raise _convert_error(str(err), rel) from None

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
            for name in sorted(self.schemas)
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
            return self._prelude
        state = self._state
        assert state is not None
        frame = self._stack[-1]
        try:
            rel = _bzl_path(module_id, frame.package)
        except ConfigError as err:
            raise self._fail(str(err))
        cached = self._bzl_cache.get(rel)
        if cached is not None:
            state.bzl_files.update(cached[1])
            return cached[0]
        if rel in self._loading:
            cycle = " -> ".join([*self._loading[self._loading.index(rel):], rel])
            raise self._fail(f"load cycle: {cycle}; remove one of these load() statements")
        path = self.root / rel
        try:
            resolved = path.resolve()
            resolved.relative_to(self.root)
            source = resolved.read_text(encoding="utf-8")
        except ValueError:
            raise self._fail(f"cannot load '{module_id}': it points outside the workspace")
        except FileNotFoundError:
            raise self._fail(f"cannot load '{module_id}': {rel} does not exist; fix the path")
        except (OSError, UnicodeDecodeError) as err:
            raise self._fail(f"cannot load '{module_id}': {err}")
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

    def _fail(self, message: str) -> _CallbackError:
        return _CallbackError(message)

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
        kwargs = json.loads(kwargs_json)
        kwargs.update(raw)
        m = _FRAME_RE.search(stack)
        line = int(m.group(2)) - 1 if m and m.group(1) == state.build_path else None
        state.calls.append((kind, Location(state.build_path, line), kwargs))

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
            state.files = _list_package_files(self.root, state.package, self.skip_dirs)
        inc = _compile_globs(include)
        exc = _compile_globs(exclude) if exclude else None
        result = [f for f in state.files if inc.fullmatch(f) and not (exc and exc.fullmatch(f))]
        if not result and allow_empty is False:
            raise _CallbackError(f"glob({include!r}) matched no files in package //{state.package}")
        return json.dumps(result)

    # -- after evaluation --------------------------------------------------------

    def _declare(self, state: _PackageState) -> dict[str, TargetDecl]:
        targets: dict[str, TargetDecl] = {}
        for kind, where, kwargs in state.calls:
            attrs = coerce_attrs(self.schemas[kind], kwargs, where, state.package, state.default_visibility)
            name = attrs["name"]
            previous = targets.get(name)
            if previous is not None:
                raise where.error(
                    f"duplicate target name '{name}' in package //{state.package} "
                    f"(first declared at {previous.location}); rename one of them"
                )
            deps: set[Label] = set()
            for key, value in attrs.items():
                if isinstance(value, Label):
                    deps.add(value)
                elif isinstance(value, tuple) and value and isinstance(value[0], Label):
                    deps.update(value)
            targets[name] = TargetDecl(
                label=Label(state.package, name),
                kind=kind,
                attrs=attrs,
                location=where,
                deps=tuple(sorted(deps)),
            )
        return targets


# ---------------------------------------------------------------------------
# helpers


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


def _list_package_files(root: Path, package: str, skip: frozenset[str]) -> list[str]:
    """Sorted package-relative paths of the files of ``package`` (not of its
    subpackages, not under ignored/hidden directories, no symlinks leaving the
    workspace)."""
    base = os.path.join(root, package) if package else os.fspath(root)
    root_str = os.fspath(root)
    files: list[str] = []
    stack = [(base, "")]
    while stack:
        directory, prefix = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        if prefix and any(e.name in BUILD_FILE_NAMES and e.is_file() for e in entries):
            continue  # a subpackage
        for entry in entries:
            rel = prefix + entry.name
            if entry.is_dir(follow_symlinks=False):
                if not is_skipped_dir(entry.name, skip):
                    stack.append((entry.path, rel + "/"))
            elif entry.is_symlink():
                target = os.path.realpath(entry.path)
                if os.path.isfile(target) and (target + os.sep).startswith(root_str + os.sep):
                    files.append(rel)
            elif entry.is_file(follow_symlinks=False):
                files.append(rel)
    files.sort()
    return files


def _convert_error(text: str, fallback_path: str) -> ConfigError:
    """Turn a StarlarkError message into ``file:line: message`` (one line)."""
    message = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("error:"):
            message = stripped
            break
    message = _PREFIX_RE.sub("", message).strip() or text.strip().splitlines()[0]
    message = message.replace("Parse error: ", "syntax error: ")
    if "is not allowed in this dialect" in message and "`def`" in message:
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
    if user_frames and (user_frames[0][0] != path or user_frames[0][1] - 1 != line):
        outer_path, outer_line = user_frames[0]
        message += f" (called from {outer_path}:{max(outer_line - 1, 1)})"
    return ConfigError(at(path, line, message))
