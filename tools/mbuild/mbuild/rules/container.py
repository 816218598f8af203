"""``container_image``: a general image from a base, sources and commands.

The building block when no language rule fits: start from a WORKSPACE.toml
base image or another target's stage, copy source files in at their
workspace paths, run shell commands (each one a step, cached on its own), and
set the image config.
"""

from __future__ import annotations

from ..analysis.context import RuleContext
from ..analysis.rule import Rule
from ..loading.schema import Attr, RuleSchema
from .common import IMAGE_ATTRS, finish_image


def _container_image(ctx: RuleContext):
    base, stage = ctx.attr("base"), ctx.attr("from_stage")
    if bool(base) == bool(stage):
        raise ctx.error("set exactly one of `base` (a WORKSPACE.toml image) and `from_stage` (a target)")
    st = ctx.base(base) if base else ctx.stage_of(stage)
    workdir = ctx.attr("workdir")
    if workdir:
        st = st.mkdir(workdir, parents=True).with_workdir(workdir)
    if ctx.attr("srcs"):
        st = ctx.copy_sources(st, ctx.attr("srcs"), st.get_workdir() or "/", owner=ctx.attr("srcs_owner") or None)
    network = ctx.attr("network")
    for command in ctx.attr("commands"):
        st = st.run(["/bin/sh", "-c", command], **(ctx.fetching() if network else {}),
                    network="sandbox" if network else "none", name=f"[{ctx.label}] {command}").root()
    return finish_image(ctx, st, ctx.attr("user"), base=base or None)


CONTAINER_IMAGE = Rule(
    RuleSchema(
        name="container_image",
        doc="An image from a base or another stage, with sources copied in and commands run.",
        attrs={
            "base": Attr("string", "Base image name from WORKSPACE.toml `[images]`.", default=""),
            "from_stage": Attr("label", "Start from this target's stage instead of a base image.", default=None),
            "srcs": Attr("label_list", "Filegroups copied under `workdir` (or `/`) at their workspace paths.",
                         default=()),
            "srcs_owner": Attr("string", "Owner of the copied files, e.g. `1000:1000`; empty keeps root.",
                               default=""),
            "commands": Attr("string_list", "Shell commands run in order, each its own cached step.", default=()),
            "network": Attr("bool", "Give commands network access (and the workspace CA bundle); off by "
                            "default, so steps are hermetic.", default=False),
            "workdir": Attr("string", "Working directory, created if missing; empty keeps the base's.",
                            default=""),
            "user": Attr("string", "User the image runs as; empty keeps the base's.", default=""),
            **IMAGE_ATTRS,
        },
    ),
    _container_image,
)
