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
from . import checks


def image_attrs() -> dict[str, Attr]:
    """The shared image attributes: ``env``, ``cmd``, ``entrypoint``, ``ports``,
    ``labels``, ``image``, ``push``, ``platforms``, ``service``,
    ``container_name`` and ``publish``."""
    return {
        "env": Attr("string_dict", "Environment of the image, in order; values are literal.", default={}),
        "cmd": Attr("string_list", "Default command (exec form).", default=()),
        "entrypoint": Attr("string_list", "Entrypoint (exec form); empty keeps the base image's.", default=()),
        "ports": Attr("string_list", "Ports the service listens on, e.g. `8000` or `8000/tcp`.", default=(),
                      check=checks.exposed_ports),
        "labels": Attr("string_dict", "OCI labels of the image.", default={}),
        "image": Attr("string", "Name the image is loaded into the engine as; empty: not loaded, only "
                      "built (e.g. `ai-mono-python:latest`).", default=""),
        "push": Attr("bool", "Push the image to the registry its name names (e.g. `registry.example.com/app:1`) "
                     "on every build, as `mbuild build --push` does; credentials from the docker config.",
                     default=False),
        "platforms": platforms_attr(),
        "service": Attr("string", "Service name (e.g. in compose); defaults to the target name.", default=""),
        "container_name": Attr("string", "Container name when run as a service (compose `container_name`).",
                               default=""),
        "publish": Attr("string_list", "Port mappings when run as a service, e.g. `8000:8000` or "
                        "`127.0.0.1:8080:80` (compose's short syntax).", default=(), check=checks.port_mappings),
    }


def platforms_attr() -> Attr:
    """The ``platforms`` attribute every image rule has (the engine reads it)."""
    return Attr("string_list", "Platforms to build for, e.g. `[\"linux/amd64\", \"linux/arm64\"]` (several give one "
                "image index, in one solve, cached locally; the remote cache holds single-platform results); empty: "
                "the build's (`--platform`, else the host's). Steps for another CPU run under emulation (qemu).",
                default=())


def secret_attrs() -> dict[str, Attr]:
    """The attributes ``ctx.secret_mounts()`` reads: ``secrets`` and ``ssh``."""
    return {
        "secrets": Attr("string_dict", "Build secrets the commands may read, id -> `env:NAME` or `file:PATH` "
                        "(relative to the workspace root), each a file at `/run/secrets/<id>`; "
                        "`--secret id=ID,src=…|env=…` overrides the source. Never in a layer, the cache or the "
                        "output; a secret's value is not in the key (change the id or use --no-cache to re-run).",
                        default={}),
        "ssh": Attr("string_list", "SSH agents the commands may use, by id: `default` is $SSH_AUTH_SOCK, "
                    "`--ssh ID=/path/to/agent.sock` gives another; the first is SSH_AUTH_SOCK in the steps.",
                    default=()),
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
    return [Stage(st), *image_providers(ctx)]


def image_providers(ctx: RuleContext) -> list[Provider]:
    """The Image and Service of a target with ``image`` set (its ``push``,
    ``service``, ``container_name`` and ``publish``), else none; a name that
    is no image reference, or ``push`` with no name, is an error at the
    target."""
    name = ctx.attr("image")
    if ctx.attr("push") and not name:
        raise ctx.error("push = True needs `image`, the name to push the image as (like "
                        "registry.example.com/team/app:1)")
    if not name:
        return []
    try:
        normalize_image_ref(name)
    except ValueError as e:
        raise ctx.error(f"attribute 'image': {e}; use a name like my-app:latest") from None
    return [Image(name, push=bool(ctx.attr("push"))),
            Service(ctx.attr("service") or ctx.label.name, ctx.attr("container_name"), tuple(ctx.attr("publish")))]
