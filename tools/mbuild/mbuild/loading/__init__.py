"""The loading phase: WORKSPACE.toml, labels, BUILD files, the target graph.

Modules (each small and single-purpose):

* ``labels``      - Label, Pattern, parse_label, parse_pattern
* ``workspace``   - WORKSPACE.toml -> Workspace; find_workspace; write_image_digest
* ``schema``      - Attr, RuleSchema (rule attribute declarations), coerce_attrs
* ``packages``    - discover_packages, build_file
* ``build_files`` - BuildFileLoader: Starlark evaluation of BUILD / .bzl -> Package of TargetDecl
* ``graph``       - TargetGraph (validation, resolve, deps/rdeps, topological order), load_graph
"""

from mbuild.loading.build_files import BuildFileLoader, Package, TargetDecl
from mbuild.loading.graph import Target, TargetGraph, load_graph
from mbuild.loading.labels import Label, Pattern, PatternKind, parse_label, parse_pattern
from mbuild.loading.schema import Attr, Location, RuleSchema, coerce_attrs
from mbuild.loading.workspace import Workspace, find_workspace, load_workspace, write_image_digest

__all__ = [
    "Attr",
    "BuildFileLoader",
    "Label",
    "Location",
    "Package",
    "Pattern",
    "PatternKind",
    "RuleSchema",
    "Target",
    "TargetDecl",
    "TargetGraph",
    "Workspace",
    "coerce_attrs",
    "find_workspace",
    "load_graph",
    "load_workspace",
    "parse_label",
    "parse_pattern",
    "write_image_digest",
]
