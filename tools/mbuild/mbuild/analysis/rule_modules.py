"""Workspace rule modules: rules as workspace code, loaded hermetically.

WORKSPACE.toml's ``rules`` lists the workspace's rule modules (``rules =
["rules/python.py"]``). Each is a Python file written against the public
rule API (``from mbuild.api import v1 as mb``); its public rules join the
registry. A module is executed once per mbuild run, not through Python's
import system (nothing goes into ``sys.modules``, two workspaces never share
a module), with these guards:

* **Imports**, at the top level of a module only, of: the public API
  (``mbuild.api.v1``); workspace modules, from the root (``from
  rules.images import x``) or relative (``from .images import x``), loaded
  the same way; and an allow-list of pure standard-library modules
  (:data:`STDLIB`), each seen without its private names and without the
  modules it imports itself (``typing.sys`` is not there). Anything else
  (``os``, ``time``, ``subprocess``, ``socket``…) is an error at its line.
* **Built-ins**: ``open``, ``input``, ``exec``, ``eval``, ``compile``,
  ``globals``, ``locals``, ``vars``, ``id`` and ``hash`` raise an error saying
  what to do instead (``id`` and ``hash`` differ from run to run), and
  ``__import__`` cannot be named; ``getattr``/``setattr``/``hasattr``/
  ``delattr`` refuse names starting with ``_``; ``print`` writes to stderr.
* **No private names after a dot**: ``x._y`` and ``x.__class__`` are refused
  when the module is read, and so are the frame and code attributes
  (``gi_frame``, ``f_globals``, ``tb_frame``, ``co_code``…): the usual ways
  out of the guards above, and into the context's internals.

So a rule gets files, base images, the network (in build steps only) and
workspace facts through its context alone, and everything it reads that way
is in its key. What Python cannot enforce, and these guards do not: a rule
can still loop forever or use much memory, or keep state in module globals
from one target to the next; ``str.format`` can read an
attribute's text (``"{0._x}".format(obj)``); iterating a ``set`` of strings
gives a per-process order (use ``sorted``); and a determined author can find
other ways around a guard written in Python. The guards catch accidents;
rule modules are reviewed like the rest of the workspace's code.

Every error names its file and line (``rules/python.py:3: import of 'os'
is not allowed in rule code; ...``) and exits 2.
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import ConfigError, MbuildError, at
from ..loading.schema import Location
from ..loading.starlark_text import NotUTF8, read_utf8
from ..loading.workspace import RuleModule
from .code_errors import error_in_rule_code
from .registry import RuleRegistry, public_rules

# Pure standard-library modules rule code may import: name -> the names it
# sees (None: every public name that is not a module).
STDLIB: Mapping[str, tuple[str, ...] | None] = {
    "__future__": None,
    "base64": None,
    "bisect": None,
    "collections": None,
    "collections.abc": None,
    "copy": None,
    "dataclasses": None,
    "enum": None,
    "functools": None,
    "hashlib": None,
    "heapq": None,
    "itertools": None,
    "json": ("dumps", "loads", "JSONDecodeError"),
    "math": None,
    "re": None,
    "shlex": ("join", "quote"),
    "textwrap": None,
    # get_type_hints evaluates annotation strings in any module's globals.
    "typing": tuple(n for n in __import__("typing").__all__ if n != "get_type_hints"),
}

# Built-ins rule code does not get, and what to do instead.
_REFUSED_BUILTINS = {
    "open": "read workspace files through ctx.source() and ctx.files()",
    "input": "a rule's inputs are its attributes",
    "exec": "rule code cannot run code it makes",
    "eval": "rule code cannot run code it makes",
    "compile": "rule code cannot run code it makes",
    "globals": "refer to names directly",
    "locals": "refer to names directly",
    "vars": "refer to names directly",
    "id": "it differs from run to run, and so would keys",
    "hash": "it differs from run to run, and so would keys",
}
_REMOVED_BUILTINS = ("breakpoint", "help", "exit", "quit", "copyright", "credits", "license", "__loader__",
                     "__spec__")
# The attributes that lead from a generator, coroutine or traceback to a frame,
# and from a frame to its globals and built-ins (and so out of the guards).
_FRAME_ATTRS = frozenset({"gi_frame", "gi_code", "gi_yieldfrom", "cr_frame", "cr_code", "cr_await", "ag_frame",
                          "ag_code", "ag_await", "f_back", "f_builtins", "f_code", "f_globals", "f_locals",
                          "tb_frame", "tb_next"})


@dataclass
class _Loaded:
    """One workspace module: its file, digest, and what it imports."""

    path: str
    sha256: str
    module: types.ModuleType
    imports: set[str] = field(default_factory=set)  # workspace paths
    api: set[str] = field(default_factory=set)  # API versions


def _private(name: str) -> bool:
    return name.startswith("_")


def _filtered(module: types.ModuleType, names: Sequence[str] | None) -> types.ModuleType:
    """A stand-in for ``module`` holding only ``names`` (or its public names), never a module."""
    view = types.ModuleType(module.__name__, module.__doc__)
    items = vars(module)
    for name in names if names is not None else list(items):
        if name in items and not _private(name) and not isinstance(items[name], types.ModuleType):
            setattr(view, name, items[name])
    if hasattr(module, "__all__"):
        view.__all__ = [n for n in module.__all__ if hasattr(view, n)]
    return view


class RuleModuleLoader:
    """Loads the rule modules of the workspace at ``root`` into ``registry``.

    ``api`` maps each importable API module name (``mbuild.api.v1``) to the
    module rule code gets (its public names only) and its version (``v1``).
    """

    def __init__(self, root: Path, api: Mapping[str, tuple[types.ModuleType, str]]) -> None:
        self.root = Path(root).resolve()
        self._api = dict(api)
        self._by_name: dict[str, _Loaded] = {}
        self._by_path: dict[str, _Loaded] = {}
        self._packages: dict[str, types.ModuleType] = {}
        self._virtual: dict[str, types.ModuleType] = {}
        self._builtins = self._make_builtins()

    # ------------------------------------------------------------------ public

    def load_into(self, registry: RuleRegistry, modules: Sequence[RuleModule]) -> None:
        """Execute each listed module and register the rules it exports."""
        for entry in modules:
            where = Location("WORKSPACE.toml", entry.line)
            dotted = _dotted(entry.path)
            file = self._file_of(entry.path)
            if file is None:
                raise where.error(f"rules: {entry.path} does not exist in the workspace; fix the path")
            loaded = self._load(dotted, entry.path, file)
            exported = public_rules(vars(loaded.module))
            if not exported:
                raise where.error(f"rules: {entry.path} defines no rules (a public name bound to "
                                  f"mbuild.api.v1.rule(...)); list only modules that do")
            for name, decl in exported:
                code = self.closure(decl.module)
                registry.add(name, decl, code, self.api_of(decl.module), decl.location)
        for loaded in self._by_path.values():
            registry.code_files[loaded.path] = loaded.sha256

    def closure(self, path: str) -> dict[str, str]:
        """path -> sha256 of the workspace module ``path`` and every workspace module it imports."""
        out: dict[str, str] = {}
        todo = [path]
        while todo:
            current = self._by_path.get(todo.pop())
            if current is None or current.path in out:
                continue
            out[current.path] = current.sha256
            todo.extend(current.imports)
        return dict(sorted(out.items()))

    def api_of(self, path: str) -> tuple[str, ...]:
        """The API versions ``path`` and the workspace modules it imports use."""
        versions: set[str] = set()
        for dep in self.closure(path):
            versions |= self._by_path[dep].api
        return tuple(sorted(versions))

    # ------------------------------------------------------------------ loading one module

    def _file_of(self, path: str) -> Path | None:
        file = self.root / path
        try:
            resolved = file.resolve()
            resolved.relative_to(self.root)
        except (OSError, ValueError):
            return None
        return resolved if resolved.is_file() else None

    def _load(self, dotted: str, path: str, file: Path) -> _Loaded:
        found = self._by_name.get(dotted)
        if found is not None:
            return found  # loaded already, or being loaded (an import cycle sees it half done, as Python's does)
        try:
            data = file.read_bytes()
            source = read_utf8(data)
        except NotUTF8 as e:
            raise ConfigError(at(path, e.line, e.message)) from None
        except OSError as e:
            raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
        code = _compile(source, path)
        module = types.ModuleType(dotted)
        is_package = path.endswith("/__init__.py")
        module.__dict__.update({
            "__file__": path,  # workspace-relative: the checkout's location is nobody's business
            "__package__": dotted if is_package else dotted.rpartition(".")[0],
            "__builtins__": self._builtins,
        })
        if is_package:
            module.__path__ = []
        loaded = _Loaded(path, "sha256:" + hashlib.sha256(data).hexdigest(), module)
        self._by_name[dotted] = loaded
        self._by_path[path] = loaded
        try:
            exec(code, module.__dict__)
        except MbuildError:
            raise
        except Exception as e:  # noqa: BLE001 - the module's own error, at its line
            raise error_in_rule_code(e, path, list(self._by_path), "loading") from None
        return loaded

    # ------------------------------------------------------------------ imports

    def _import(self, name: str, globals: Mapping[str, Any] | None = None, locals: Any = None,
                fromlist: Sequence[str] | None = (), level: int = 0) -> types.ModuleType:
        importer = self._by_name.get((globals or {}).get("__name__", ""))
        frame = sys._getframe(1)
        where = Location(frame.f_code.co_filename, frame.f_lineno)
        if importer is None:
            raise where.error("import from outside a rule module's top level; move it to the top of the module")
        if level:
            package = importer.module.__package__ or ""
            parts = package.split(".") if package else []
            if level - 1 > len(parts) or (level - 1 == len(parts) and not name):
                raise where.error(f"relative import beyond the workspace root (level {level} from {importer.path})")
            base = ".".join(parts[: len(parts) - (level - 1)])
            name = f"{base}.{name}" if base and name else (base or name)
        leaf = self._resolve(name, importer, where)
        for full in (name, *(f"{name}.{item}" for item in fromlist or ())):
            if full in self._api:
                importer.api.add(self._api[full][1])
        if fromlist:
            for item in fromlist:
                if item != "*" and not hasattr(leaf, item):
                    sub = f"{name}.{item}"
                    if self._workspace_file(sub) is not None:
                        self._resolve(sub, importer, where)
            return leaf
        return self._resolve(name.split(".")[0], importer, where)

    def _resolve(self, name: str, importer: _Loaded, where: Location) -> types.ModuleType:
        if name in self._api or any(api.startswith(name + ".") for api in self._api):
            return self._api_module(name)
        if name in STDLIB or any(std.startswith(name + ".") for std in STDLIB):
            return self._stdlib_module(name)
        found = self._workspace_file(name)
        if found is not None:
            path, file = found
            parent, _, last = name.rpartition(".")
            loaded = self._load(name, path, file)
            importer.imports.add(loaded.path)
            if parent:
                setattr(self._resolve(parent, importer, where), last, loaded.module)
            return loaded.module
        if self._is_workspace_dir(name):
            return self._namespace_package(name)
        allowed = ", ".join([*sorted(self._api), "workspace modules", *sorted(STDLIB)])
        raise where.error(f"import of {name!r} is not allowed in rule code: a rule reads files, the network, the "
                          f"clock and the environment only through its context (allowed: {allowed})")

    def _api_module(self, name: str) -> types.ModuleType:
        if name in self._api:
            return self._view(name, self._api[name][0], None)
        return self._virtual_package(name, self._api, self._api_module)

    def _stdlib_module(self, name: str) -> types.ModuleType:
        if name in STDLIB:
            import importlib

            view = self._view(name, importlib.import_module(name), STDLIB[name])
        else:
            view = self._virtual_package(name, STDLIB, self._stdlib_module)
        for child in STDLIB:  # collections -> collections.abc
            head, _, tail = child.rpartition(".")
            if head == name and not hasattr(view, tail):
                setattr(view, tail, self._stdlib_module(child))
        return view

    def _view(self, name: str, module: types.ModuleType, names: Sequence[str] | None) -> types.ModuleType:
        view = self._virtual.get(name)
        if view is None:
            if names is None and hasattr(module, "__all__"):
                names = module.__all__
            view = self._virtual[name] = _filtered(module, names)
        return view

    def _virtual_package(self, name: str, allowed: Mapping[str, Any], child) -> types.ModuleType:
        """A package holding nothing but the allowed modules below it (``mbuild.api``)."""
        view = self._virtual.get(name)
        if view is None:
            view = self._virtual[name] = types.ModuleType(name)
            for full in allowed:
                if full.startswith(name + "."):
                    head = full[len(name) + 1:].split(".")[0]
                    setattr(view, head, child(f"{name}.{head}"))
        return view

    def _workspace_file(self, name: str) -> tuple[str, Path] | None:
        rel = name.replace(".", "/")
        for path in (f"{rel}/__init__.py", f"{rel}.py"):  # a package wins, as in Python
            file = self._file_of(path)
            if file is not None:
                return path, file
        return None

    def _is_workspace_dir(self, name: str) -> bool:
        directory = self.root / name.replace(".", "/")
        return all(part.isidentifier() for part in name.split(".")) and directory.is_dir()

    def _namespace_package(self, name: str) -> types.ModuleType:
        package = self._packages.get(name)
        if package is None:
            package = self._packages[name] = types.ModuleType(name)
            package.__path__ = []
        return package

    # ------------------------------------------------------------------ built-ins

    def _make_builtins(self) -> dict[str, Any]:
        safe = {k: v for k, v in vars(builtins).items() if k not in _REMOVED_BUILTINS}
        safe["__import__"] = self._import  # what import statements call; the name itself is refused

        def refused(name: str, advice: str):
            def call(*args, **kwargs):
                raise PermissionError(f"{name}() is not available in rule code: {advice}")

            call.__name__ = name
            return call

        for name, advice in _REFUSED_BUILTINS.items():
            safe[name] = refused(name, advice)

        def checked(fn):
            def call(obj, name, *rest):
                if isinstance(name, str) and (_private(name) or name in _FRAME_ATTRS):
                    raise AttributeError(f"{fn.__name__}(..., {name!r}): names starting with '_', and frames, "
                                         f"are not reachable from rule code")
                return fn(obj, name, *rest)

            call.__name__ = fn.__name__
            return call

        for fn in (getattr, setattr, hasattr, delattr):
            safe[fn.__name__] = checked(fn)

        def to_stderr(*args, **kwargs):
            kwargs["file"] = sys.stderr
            builtins.print(*args, **kwargs)

        safe["print"] = to_stderr
        return safe


def _dotted(path: str) -> str:
    """``rules/python.py`` -> ``rules.python``; ``rules/__init__.py`` -> ``rules``."""
    stem = path[: -len("/__init__.py")] if path.endswith("/__init__.py") else path[: -len(".py")]
    return stem.replace("/", ".")


def _compile(source: str, path: str) -> types.CodeType:
    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError as e:
        raise ConfigError(at(path, e.lineno, f"syntax error: {e.msg}")) from None
    _check(tree, path)
    return compile(tree, path, "exec", dont_inherit=True)


def _check(tree: ast.Module, path: str) -> None:
    """Refuse what the guards cannot catch while the module runs."""
    top_level = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        line = getattr(node, "lineno", None)
        if isinstance(node, ast.Name) and node.id in ("__import__", "__builtins__"):
            raise ConfigError(at(path, line, f"{node.id} is not reachable from rule code; use import statements "
                                             f"at the top of the module"))
        if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in top_level:
            raise ConfigError(at(path, line, "imports go at the top level of a rule module, so that mbuild "
                                             "knows every module a rule depends on when it loads"))
        if isinstance(node, ast.Attribute):
            if _private(node.attr):
                raise ConfigError(at(path, line, f"'.{node.attr}': names starting with '_' are not reachable "
                                                 f"from rule code; use the public API"))
            if node.attr in _FRAME_ATTRS:
                raise ConfigError(at(path, line, f"'.{node.attr}': frame and code objects are not reachable "
                                                 f"from rule code"))
