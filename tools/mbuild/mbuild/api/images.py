"""The attributes and result every image rule shares: image config, the
image's name in the engine, and how it runs as a service.

Part of the public API (``mb.image_attrs()``, ``mb.image_result(...)``): the
built-in ``container_image`` and the workspace's image rules use the same.
"""

from __future__ import annotations

from buildkit.llb import normalize_image_ref

from ..analysis.context import RuleContext
from ..analysis.providers import Image, Provider, Service, Stage
from ..loading.schema import Attr


def image_attrs() -> dict[str, Attr]:
    """The shared image attributes: ``env``, ``cmd``, ``entrypoint``, ``ports``,
    ``labels``, ``image``, ``service``, ``container_name`` and ``publish``."""
    return {
        "env": Attr("string_dict", "Environment of the image, in order; values are literal.", default={}),
        "cmd": Attr("string_list", "Default command (exec form).", default=()),
        "entrypoint": Attr("string_list", "Entrypoint (exec form); empty keeps the base image's.", default=()),
        "ports": Attr("string_list", "Ports the service listens on, e.g. `8000` or `8000/tcp`.", default=()),
        "labels": Attr("string_dict", "OCI labels of the image.", default={}),
        "image": Attr("string", "Name the image is loaded into the engine as; empty: not loaded, only "
                      "built (e.g. `ai-mono-python:latest`).", default=""),
        "service": Attr("string", "Service name (e.g. in compose); defaults to the target name.", default=""),
        "container_name": Attr("string", "Container name when run as a service (compose `container_name`).",
                               default=""),
        "publish": Attr("string_list", "Port mappings when run as a service, e.g. `8000:8000`.", default=()),
    }


def image_result(ctx: RuleContext, st, user: str = "") -> list[Provider]:
    """Apply the shared image attributes to ``st`` (and ``user``, when given)
    and return the rule's providers: its Stage, and with ``image`` set its
    Image and Service."""
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
    providers: list[Provider] = [Stage(st)]
    name = ctx.attr("image")
    if name:
        try:
            normalize_image_ref(name)
        except ValueError as e:
            raise ctx.error(f"attribute 'image': {e}; use a name like my-app:latest") from None
        providers.append(Image(name))
        providers.append(Service(ctx.attr("service") or ctx.label.name, ctx.attr("container_name"),
                                 tuple(ctx.attr("publish"))))
    return providers
