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
  never lists hidden or ignored directories, nor files ``.dockerignore``
  excludes (a build never gets them, see :mod:`mbuild.loading.sources`);
* ``package_name()`` - the package being evaluated ("" for the root);
* ``package(default_visibility = [...])`` - must come before any rule;
* ``load("//pkg:file.bzl", "sym", alias = "sym2")`` - a .bzl file relative to
  the workspace root (``:file.bzl`` = relative to the current package). The
  same names are available inside .bzl files, so macros can call rules, glob
  and package_name (while a BUILD file calls them). Each .bzl file is
  evaluated once per loader and shared.

``def`` is not allowed in BUILD files (put functions in a .bzl file). Nothing
else can read files, the environment or the clock. Evaluation is bounded in
steps, memory, time and bracket nesting (``EvaluationLimits``); going past a
bound is an error at its file:line.

Where the work is done: :mod:`mbuild.loading.starlark_eval` evaluates a
BUILD file (in a worker process with resource limits,
:mod:`mbuild.loading.sandbox`) and gives back each rule call's keyword
arguments; :class:`BuildFileLoader` checks them against the rules' schemas
here and declares the targets, while the worker evaluates the next package.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from mbuild.errors import ConfigError
from mbuild.loading.labels import Label
from mbuild.loading.sandbox import EvaluationWorker
from mbuild.loading.schema import Location, RuleSchema, coerce_attrs
from mbuild.loading.sources import IgnoreFile
from mbuild.loading.starlark_eval import BUILTIN_NAMES, EvaluatedPackage, EvaluationLimits, Evaluator, RuleCall

__all__ = ["TargetDecl", "Package", "BuildFileLoader", "BUILTIN_NAMES", "EvaluationLimits"]


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


class BuildFileLoader:
    """Loads packages of one workspace: evaluated by a worker process (which
    caches evaluated .bzl files), declared here.

    ``schemas`` maps rule name -> RuleSchema; every rule becomes a BUILD-file
    function. ``skip_dirs`` are extra directory names never globbed. Call
    :meth:`prefetch` with packages as soon as they are known, so the worker
    evaluates them while earlier ones are declared; :meth:`close` (or a
    ``with`` block) stops the worker.
    """

    def __init__(self, root: Path, schemas: Mapping[str, RuleSchema], skip_dirs: tuple[str, ...] = (),
                 limits: EvaluationLimits = EvaluationLimits()) -> None:
        self.root = Path(root).resolve()
        self.schemas = dict(schemas)
        self.ignore = IgnoreFile.load(self.root)
        self._worker = EvaluationWorker(Evaluator(self.root, list(self.schemas), skip_dirs, self.ignore, limits))

    def prefetch(self, packages: Iterable[str]) -> None:
        """Start evaluating ``packages`` (they are loaded with load_package)."""
        for package in packages:
            self._worker.request(package)

    def load_package(self, package: str) -> Package:
        """Evaluate the BUILD file of ``package`` and return its targets."""
        evaluated = self._worker.result(package)
        return Package(
            name=package,
            build_file=evaluated.build_file,
            targets=self._declare(evaluated),
            bzl_files=evaluated.bzl_files,
        )

    def close(self) -> None:
        self._worker.close()

    def __enter__(self) -> "BuildFileLoader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- after evaluation --------------------------------------------------------

    def _declare(self, evaluated: EvaluatedPackage) -> dict[str, TargetDecl]:
        targets: dict[str, TargetDecl] = {}
        package = evaluated.name
        for call in evaluated.calls:
            where = Location(evaluated.build_file, call.line)
            attrs = self._attrs(call, where, package, evaluated.default_visibility)
            name = attrs["name"]
            previous = targets.get(name)
            if previous is not None:
                raise where.error(
                    f"duplicate target name '{name}' in package //{package} "
                    f"(first declared at {previous.location}); rename one of them"
                )
            deps: set[Label] = set()
            for value in attrs.values():
                if isinstance(value, Label):
                    deps.add(value)
                elif isinstance(value, tuple) and value and isinstance(value[0], Label):
                    deps.update(value)
            targets[name] = TargetDecl(
                label=Label(package, name),
                kind=call.kind,
                attrs=attrs,
                location=where,
                deps=tuple(sorted(deps)),
            )
        return targets

    def _attrs(self, call: RuleCall, where: Location, package: str,
               default_visibility: tuple[str, ...] | None) -> dict[str, Any]:
        """The call's attributes, checked; a mistake made in a macro is
        reported at the macro's line (called from the BUILD file's)."""
        said = Location(*call.via) if call.via else where
        try:
            kwargs = json.loads(call.kwargs_json)
        except RecursionError:
            raise said.error(f"the arguments of {call.kind}() are nested too deeply; rule attributes are "
                             f"flat values (strings, lists, dicts of strings)") from None
        kwargs.update(call.raw)
        try:
            return coerce_attrs(self.schemas[call.kind], kwargs, said, package, default_visibility)
        except ConfigError as err:
            if call.via is None:
                raise
            raise ConfigError(f"{err} (called from {where})") from None
