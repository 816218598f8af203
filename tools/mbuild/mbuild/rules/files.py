"""Rules that name things: files (``filegroup``) and targets (``group``)."""

from __future__ import annotations

from ..analysis.context import RuleContext
from ..analysis.rule import Rule
from ..loading.schema import Attr, RuleSchema


def _filegroup(ctx: RuleContext):
    package = ctx.label.package
    prefix = f"{package}/" if package else ""
    # Existence is checked when the files are digested (every build does),
    # which names this target's BUILD line; a glob lists only what exists.
    paths = [prefix + src for src in ctx.attr("srcs")]
    paths.extend(ctx.files_of(ctx.attr("deps")) if ctx.attr("deps") else ())
    if not paths:
        raise ctx.error("a filegroup needs at least one file; check srcs or glob() patterns")
    files = tuple(sorted(set(paths)))
    return ctx.result(files=files, sources=files)


FILEGROUP = Rule(
    RuleSchema(
        name="filegroup",
        doc="A named set of source files, for rules that copy sources into images.",
        attrs={
            "srcs": Attr("string_list", "Files, relative to the package (often `glob([...])`).", default=()),
            "deps": Attr("label_list", "Other filegroups whose files are included too.", default=()),
        },
    ),
    _filegroup,
)


def _group(ctx: RuleContext):
    return ctx.result()


GROUP = Rule(
    RuleSchema(
        name="group",
        doc="Builds every target in `deps`; has no output of its own.",
        attrs={"deps": Attr("label_list", "The targets to build.", default=())},
    ),
    _group,
)
