"""Drawing the target graph as Graphviz dot or Mermaid text."""

from __future__ import annotations

from typing import Iterable


def render(graph, roots: Iterable, fmt: str) -> str:
    labels = graph.deps_closure(roots)
    ids = {label: f"n{i}" for i, label in enumerate(sorted(labels))}
    edges = [(a, b) for a in sorted(labels) for b in graph.deps(a) if b in ids]
    if fmt == "dot":
        lines = ["digraph mbuild {", "  rankdir=LR;", "  node [shape=box];"]
        for label in sorted(labels):
            kind = graph.targets[label].kind
            lines.append(f'  {ids[label]} [label="{label}\\n{kind}"];')
        lines.extend(f"  {ids[a]} -> {ids[b]};" for a, b in edges)
        lines.append("}")
    else:
        lines = ["graph LR"]
        for label in sorted(labels):
            kind = graph.targets[label].kind
            lines.append(f'  {ids[label]}["{label}<br/>{kind}"]')
        lines.extend(f"  {ids[a]} --> {ids[b]}" for a, b in edges)
    return "\n".join(lines) + "\n"
