"""``container_image``: a general image from a base, sources and commands.

The building block when no workspace rule fits: start from a WORKSPACE.toml
base image or another target's stage, copy source files in at their
workspace paths, run shell commands (each one a step, cached on its own), and
set the image config. The image's ``env`` is set before the commands run,
as a Dockerfile's ``ENV`` before ``RUN``; build secrets and SSH agents
(``secrets``, ``ssh``) are mounted into every command, never into a layer.
Written against the public rule API only.
"""

from __future__ import annotations

from mbuild.api import v1 as mb


def _container_image(ctx):
    base, stage = ctx.attr("base"), ctx.attr("from_stage")
    if bool(base) == bool(stage):
        raise ctx.error("set exactly one of `base` (a WORKSPACE.toml image) and `from_stage` (a target)")
    st = ctx.base("base") if base else ctx.stage(stage)
    for key, value in ctx.attr("env").items():  # visible to the commands, as ENV before RUN
        st = st.with_env(key, value)
    workdir = ctx.attr("workdir")
    if workdir:
        st = st.mkdir(workdir, parents=True).with_workdir(workdir)
    if ctx.attr("srcs"):
        st = ctx.copy_sources(st, ctx.attr("srcs"), st.get_workdir() or "/", owner=ctx.attr("srcs_owner") or None)
    network = ctx.attr("network")
    secrets = ctx.secret_mounts()
    for command in ctx.attr("commands"):
        run = ctx.fetching(*secrets) if network else {"mounts": secrets}
        st = st.run(["/bin/sh", "-c", command], **run, network="sandbox" if network else "none",
                    name=f"[{ctx.label}] {command}").root()
    return mb.image_result(ctx, st, ctx.attr("user"))


container_image = mb.rule(
    implementation=_container_image,
    doc="An image from a base or another stage, with sources copied in and commands run.",
    attrs={
        "base": mb.attr.base_image("Base image name from WORKSPACE.toml `[images]`."),
        "from_stage": mb.attr.label("Start from this target's stage instead of a base image.",
                                    providers=(mb.Stage,)),
        "srcs": mb.attr.label_list("Filegroups copied under `workdir` (or `/`) at their workspace paths.",
                                   providers=(mb.Files,)),
        "srcs_owner": mb.attr.string("Owner of the copied files as numbers, `UID` or `UID:GID` like `1000:1000` "
                                     "(a name the image lacked would silently be root); empty keeps root.",
                                     check=mb.checks.numeric_owner),
        "commands": mb.attr.string_list("Shell commands run in order, each its own cached step; they see "
                                        "the image's `env`."),
        "network": mb.attr.bool("Give commands network access (and the workspace CA bundle); off by "
                                "default, so steps are hermetic."),
        "workdir": mb.attr.string("Working directory, created if missing; empty keeps the base's."),
        "user": mb.attr.string("User the image runs as; empty keeps the base's."),
        **mb.secret_attrs(),
        **mb.image_attrs(),
    },
)
