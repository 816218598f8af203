"""Attributes and steps every image rule shares: config, name, compose facts."""

from __future__ import annotations

from ..analysis.context import RuleContext
from ..analysis.providers import ImageOutput
from ..loading.schema import Attr

IMAGE_ATTRS = {
    "env": Attr("string_dict", "Environment of the image, in order; values are literal.", default={}),
    "cmd": Attr("string_list", "Default command (exec form).", default=()),
    "entrypoint": Attr("string_list", "Entrypoint (exec form); empty keeps the base image's.", default=()),
    "ports": Attr("string_list", "Ports the service listens on, e.g. `8000` or `8000/tcp`.", default=()),
    "labels": Attr("string_dict", "OCI labels of the image.", default={}),
    "image": Attr("string", "Name the image is loaded into the engine as; empty: not loaded, only "
                  "built (e.g. `ai-mono-python:latest`).", default=""),
    "service": Attr("string", "Compose service name; defaults to the target name.", default=""),
    "container_name": Attr("string", "Compose `container_name`.", default=""),
    "publish": Attr("string_list", "Compose port mappings, e.g. `8000:8000`.", default=()),
}


def finish_image(ctx: RuleContext, st, user: str, base: str | None = None):
    """Apply the shared image attributes and return the rule's result."""
    for key, value in ctx.attr("env").items():
        st = st.with_env(key, value)
    for key, value in ctx.attr("labels").items():
        st = st.with_label(key, value)
    for port in ctx.attr("ports"):
        st = st.with_exposed_port(port if "/" in port else f"{port}/tcp")
    if user:
        st = st.with_user(user)
    if ctx.attr("entrypoint"):
        st = st.with_entrypoint(list(ctx.attr("entrypoint")))
    if ctx.attr("cmd"):
        st = st.with_cmd(list(ctx.attr("cmd")))
    image = None
    if ctx.attr("image"):
        from buildkit.llb import normalize_image_ref

        try:
            normalize_image_ref(ctx.attr("image"))
        except ValueError as e:
            raise ctx.error(f"attribute 'image': {e}; use a name like my-app:latest") from None
        image = ImageOutput(
            name=ctx.attr("image"),
            container_name=ctx.attr("container_name") or None,
            ports=tuple(ctx.attr("publish")),
            base=base,
        )
    return ctx.result(stage=st, image=image)
