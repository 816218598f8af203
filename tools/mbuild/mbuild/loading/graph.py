"""The target graph: every loaded target and its dependency edges.

Edges are every Label in a target's label / label_list attributes
(``TargetDecl.deps``). Building a ``TargetGraph`` checks, in this order, and
raises a one-line ConfigError for the first problem (deterministically):

1. every dependency exists ("unknown target ... (referenced from FILE:LINE);
   did you mean ...?");
2. every dependency is visible to the dependent (error at the dependent's
   BUILD file line, saying which visibility to add where);
3. there is no dependency cycle ("dependency cycle: //a:x -> //a:y -> //a:x").

``load_graph`` loads only the packages the given patterns need plus the
packages of their transitive dependencies (all packages when no patterns).
"""

from __future__ import annotations

import difflib
from collections import deque
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from mbuild.errors import ConfigError
from mbuild.loading.build_files import BuildFileLoader, Package, TargetDecl
from mbuild.loading.labels import Label, Pattern, PatternKind, parse_pattern
from mbuild.loading.packages import build_file, discover_packages
from mbuild.loading.schema import PRIVATE, PUBLIC, RuleSchema

__all__ = ["Target", "TargetGraph", "load_graph", "is_visible", "packages_for_patterns"]

Target = TargetDecl
"""A node of the graph (the declaration of one target)."""

MANUAL_TAG = "manual"


def is_visible(dep: TargetDecl, from_package: str) -> bool:
    """True if a target in ``from_package`` may depend on ``dep``."""
    if dep.label.package == from_package:
        return True
    for entry in dep.visibility:
        if entry == PUBLIC:
            return True
        if entry == PRIVATE:
            continue
        package, _, name = entry[2:].rpartition(":")
        if name == "__pkg__" and from_package == package:
            return True
        if name == "__subpackages__" and (
            package == "" or from_package == package or from_package.startswith(package + "/")
        ):
            return True
    return False


def _suggest(wanted: Label, candidates: Iterable[Label]) -> str:
    """``; did you mean //x:y?``, else where to see the package's targets
    (when it has some)."""
    candidates = list(candidates)
    same_package = [str(c) for c in candidates if c.package == wanted.package]
    for pool in (same_package, [str(c) for c in candidates]):
        close = difflib.get_close_matches(str(wanted), pool, n=1, cutoff=0.6)
        if close:
            return f"; did you mean {close[0]}?"
    return f"; `mbuild query //{wanted.package}:all` lists its targets" if same_package else ""


class TargetGraph:
    """All loaded targets with dependency edges. Construct with the loaded
    packages; the constructor validates (see the module docstring). ``root``
    (the workspace root) only improves messages about missing packages."""

    def __init__(self, packages: Iterable[Package], root: Path | None = None) -> None:
        self.root = root
        self.packages: dict[str, Package] = {p.name: p for p in sorted(packages, key=lambda p: p.name)}
        self.targets: dict[Label, Target] = {}
        self._by_package: dict[str, list[Label]] = {}
        for name, package in self.packages.items():
            labels = sorted(t.label for t in package.targets.values())
            self._by_package[name] = labels
            for label in labels:
                self.targets[label] = package.targets[label.name]
        rdeps: dict[Label, list[Label]] = {label: [] for label in self.targets}
        self._check_edges()
        for label, target in self.targets.items():
            for dep in target.deps:
                rdeps[dep].append(label)
        self._rdeps: dict[Label, tuple[Label, ...]] = {k: tuple(sorted(v)) for k, v in rdeps.items()}
        self._check_cycles()
        self._orders: dict[tuple[Label, ...], list[Label]] = {}  # topological_order's answers: the graph is fixed

    # -- validation --------------------------------------------------------

    def _check_edges(self) -> None:
        targets = self.targets
        for label, target in targets.items():
            for dep in target.deps:
                found = targets.get(dep)
                if found is None:
                    raise self.unknown(dep, f"referenced from {target.location}")
                if not is_visible(found, label.package):
                    raise target.location.error(
                        f"{label} depends on {dep}, which is not visible to package //{label.package}; "
                        f'add "//{label.package}:__pkg__" (or "//visibility:public") to the visibility of {dep} '
                        f"at {found.location}"
                    )

    def unknown(self, label: Label, context: str = "") -> ConfigError:
        """The error for a label that names no loaded target."""
        where = f" ({context})" if context else ""
        if label.package not in self.packages and (self.root is None or build_file(self.root, label.package) is None):
            why = (f": there is no package //{label.package} (no BUILD file in {label.package or '.'}/); fix the "
                   f"label or create {label.package or '.'}/BUILD")
        elif self.root is not None and (self.root / label.package / label.name).is_file():
            path = f"{label.package}/{label.name}" if label.package else label.name
            return ConfigError(f"unknown target {label}{where}: {path} is a source file, not a target; list it in "
                               f"a filegroup's srcs and name the filegroup here")
        else:
            why = ""
        return ConfigError(f"unknown target {label}{where}{why}{_suggest(label, self.targets)}")

    def _check_cycles(self) -> None:
        """Iterative DFS; reports the first cycle found in label order."""
        WHITE, GREY, BLACK = 0, 1, 2
        color = dict.fromkeys(self.targets, WHITE)
        targets = self.targets
        for start in targets:
            if color[start] != WHITE:
                continue
            path = [start]
            iters = [iter(targets[start].deps)]
            color[start] = GREY
            while iters:
                dep = next(iters[-1], None)
                if dep is None:
                    color[path.pop()] = BLACK
                    iters.pop()
                    continue
                state = color[dep]
                if state == GREY:
                    cycle = path[path.index(dep):] + [dep]
                    first = targets[cycle[0]]
                    raise first.location.error(
                        "dependency cycle: " + " -> ".join(map(str, cycle)) + "; remove one of these dependencies"
                    )
                if state == WHITE:
                    color[dep] = GREY
                    path.append(dep)
                    iters.append(iter(targets[dep].deps))

    # -- queries -------------------------------------------------------------

    def resolve(self, text: str, current_package: str = "") -> list[Label]:
        """Sorted labels matched by a label or pattern (see labels.py).

        Wildcards (``:all``, ``/...``) skip targets tagged ``manual``.
        """
        return self.resolve_pattern(parse_pattern(text, current_package), text)

    def resolve_pattern(self, pattern: Pattern, text: str | None = None) -> list[Label]:
        """Sorted labels matched by a parsed pattern."""
        text = text or str(pattern)
        if pattern.kind is PatternKind.TARGET:
            label = pattern.label
            assert label is not None
            if label not in self.targets:
                raise self.unknown(label)
            return [label]
        if pattern.kind is PatternKind.PACKAGE:
            if pattern.package not in self.packages:
                raise ConfigError(
                    f"no package //{pattern.package} (in pattern '{text}'): "
                    f"{pattern.package or '.'}/ has no BUILD file or was not loaded; fix the pattern"
                )
            packages = [pattern.package]
        else:
            packages = [p for p in self.packages if pattern.matches_package(p)]
        result = [
            label
            for package in packages
            for label in self._by_package[package]
            if MANUAL_TAG not in self.targets[label].tags
        ]
        if not result and pattern.kind is PatternKind.RECURSIVE:
            raise ConfigError(f"no targets match '{text}'; check the path (packages need a BUILD file)")
        return result

    def deps(self, label: Label) -> tuple[Label, ...]:
        """Direct dependencies, sorted."""
        return self.targets[label].deps

    def direct_rdeps(self, label: Label) -> tuple[Label, ...]:
        """Targets that depend directly on ``label``, sorted."""
        return self._rdeps.get(label, ())

    def deps_closure(self, roots: Iterable[Label], depth: int | None = None) -> list[Label]:
        """``roots`` and everything they depend on (up to ``depth`` edges), sorted."""
        return sorted(self._bfs(roots, self.deps, depth))

    def rdeps(self, universe: Iterable[Label], targets: Iterable[Label], depth: int | None = None) -> list[Label]:
        """Targets in the transitive closure of ``universe`` that depend on any of
        ``targets`` (up to ``depth`` edges; ``targets`` themselves included), sorted."""
        allowed = self._bfs(universe, self.deps, None)
        start = [t for t in targets if t in allowed]
        return sorted(self._bfs(start, lambda l: [r for r in self.direct_rdeps(l) if r in allowed], depth))

    def _bfs(self, roots: Iterable[Label], edges: Callable[[Label], Iterable[Label]], depth: int | None) -> set[Label]:
        seen: set[Label] = set()
        queue: deque[tuple[Label, int]] = deque()
        for root in roots:
            if root not in self.targets:
                raise self.unknown(root)
            if root not in seen:
                seen.add(root)
                queue.append((root, 0))
        while queue:
            label, dist = queue.popleft()
            if depth is not None and dist >= depth:
                continue
            for nxt in edges(label):
                if nxt not in seen:
                    seen.add(nxt)
                    queue.append((nxt, dist + 1))
        return seen

    def topological_order(self, roots: Iterable[Label] | None = None) -> list[Label]:
        """Dependencies before dependents, deterministic (DFS post-order over
        sorted labels). Limited to the closure of ``roots`` when given."""
        starts = sorted(self.targets) if roots is None else sorted(set(roots))
        key = tuple(starts)
        known = self._orders.get(key)
        if known is None:
            known = self._orders[key] = self._topological_order(starts)
        return list(known)

    def _topological_order(self, starts: list[Label]) -> list[Label]:
        order: list[Label] = []
        done: set[Label] = set()
        for start in starts:
            if start in done:
                continue
            if start not in self.targets:
                raise self.unknown(start)
            done.add(start)
            stack = [(start, iter(self.targets[start].deps))]
            while stack:
                label, it = stack[-1]
                dep = next(it, None)
                if dep is None:
                    order.append(label)
                    stack.pop()
                elif dep not in done:
                    done.add(dep)
                    stack.append((dep, iter(self.targets[dep].deps)))
        return order


def packages_for_patterns(root: Path, patterns: Sequence[str], current_package: str = "", skip: Iterable[str] = ()) -> list[str]:
    """The packages a list of patterns needs (before following dependencies)."""
    skip = tuple(skip)
    result: set[str] = set()
    for text in patterns:
        pattern = parse_pattern(text, current_package)
        if pattern.kind is PatternKind.RECURSIVE:
            found = discover_packages(root, pattern.package, skip)
            if not found:
                raise ConfigError(f"no packages match '{text}': no BUILD file at or below {pattern.package or '.'}/; "
                                  f"fix the pattern (`mbuild query //...` lists every target)")
            result.update(found)
        else:
            if build_file(root, pattern.package) is None:
                raise ConfigError(
                    f"no package //{pattern.package} (in pattern '{text}'): "
                    f"{pattern.package or '.'}/ has no BUILD or BUILD.bazel file; fix the pattern "
                    f"(`mbuild query //...` lists every target)"
                )
            result.add(pattern.package)
    return sorted(result)


def load_graph(
    root: Path,
    schemas: Mapping[str, RuleSchema],
    patterns: Sequence[str] | None = None,
    current_package: str = "",
    skip_dirs: Iterable[str] = (),
    loader: BuildFileLoader | None = None,
) -> TargetGraph:
    """Load the packages ``patterns`` need (all packages when None) plus the
    packages of their transitive dependencies, and build the validated graph.

    ``skip_dirs``: extra directory names to ignore (e.g. a custom output dir).
    """
    root = Path(root).resolve()
    skip = tuple(skip_dirs)
    if patterns is None:
        wanted = discover_packages(root, "", skip)
    else:
        wanted = packages_for_patterns(root, patterns, current_package, skip)
    own = loader is None
    loader = loader or BuildFileLoader(root, schemas, skip)
    try:
        return TargetGraph(_load_closure(root, loader, wanted), root)
    finally:
        if own:
            loader.close()


def _load_closure(root: Path, loader: BuildFileLoader, wanted: Sequence[str]) -> list[Package]:
    """The packages ``wanted`` and those their targets depend on, in
    breadth-first order (each one sent for evaluation as soon as it is known)."""
    loaded: list[Package] = []
    queue = deque(wanted)
    queued = set(wanted)
    missing: set[str] = set()
    loader.prefetch(wanted)
    while queue:
        package = loader.load_package(queue.popleft())
        loaded.append(package)
        for target in package.targets.values():
            for dep in target.deps:
                if dep.package in queued or dep.package in missing:
                    continue
                if build_file(root, dep.package) is None:
                    missing.add(dep.package)  # reported by TargetGraph as an unknown target
                else:
                    queued.add(dep.package)
                    queue.append(dep.package)
                    loader.prefetch([dep.package])
    return loaded
