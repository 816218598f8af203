"""Rules that name things: files (``filegroup``) and targets (``group``).

Written against the public rule API only, like a workspace's own rules.
"""

from __future__ import annotations

from mbuild.api import v1 as mb


def _filegroup(ctx):
    package = ctx.package
    prefix = f"{package}/" if package else ""
    for src in ctx.attr("srcs"):
        parts = src.split("/")
        if src.startswith("/") or any(part in ("", ".", "..") for part in parts):
            raise ctx.error(f"srcs: {src!r} is not a path inside package //{package} (no '..', no leading '/', "
                            f"no empty or '.' segments); name another package's files by a filegroup label "
                            f"in deps")
    # Everything else (the file exists, is not a directory, is not under a
    # symlinked folder, is not excluded by .dockerignore) is checked when the
    # files are digested, before anything is read; a glob lists only such files.
    paths = [prefix + src for src in ctx.attr("srcs")]
    paths.extend(ctx.files(ctx.attr("deps")))
    if not paths:
        raise ctx.error("a filegroup needs at least one file; check srcs or glob() patterns")
    return [mb.Files(tuple(sorted(set(paths))))]


filegroup = mb.rule(
    implementation=_filegroup,
    doc="A named set of source files, for rules that copy sources into images.",
    attrs={
        "srcs": mb.attr.string_list("Files, relative to the package (often `glob([...])`)."),
        "deps": mb.attr.label_list("Other filegroups whose files are included too.", providers=(mb.Files,)),
    },
)


def _group(ctx):
    return [mb.Group(tuple(ctx.attr("deps")))]


group = mb.rule(
    implementation=_group,
    doc="Builds every target in `deps`; has no output of its own.",
    attrs={"deps": mb.attr.label_list("The targets to build.")},
)
