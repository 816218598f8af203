"""Python images: a Poetry dependency stage and a slim runtime image.

Mirrors the seed's ``python.Dockerfile``: dependencies are resolved from
``poetry.lock`` on the full base (compilers available) into ``/app/.venv``
(``POETRY_VIRTUALENVS_IN_PROJECT``), with cache mounts for Poetry's and pip's
caches; only ``main`` dependencies, never the root package. The runtime starts
from the slim base, takes the ``.venv`` with one copy, adds the app sources,
and runs as a non-root user with a fixed uid.
"""

from __future__ import annotations

from ..analysis.context import RuleContext
from ..analysis.rule import Rule
from buildkit import llb
from ..loading.schema import Attr, RuleSchema
from .common import IMAGE_ATTRS, finish_image


def _poetry_install(ctx: RuleContext):
    workdir = ctx.attr("workdir")
    version = ctx.attr("poetry_version")
    st = ctx.base(ctx.attr("base"))
    st = st.run(
        ["/bin/sh", "-c", f'python3 -m venv /opt/poetry && /opt/poetry/bin/pip install "poetry=={version}"'],
        **ctx.fetching(llb.cache("/root/.cache/pip", id="/root/.cache/pip")),
        name=f"[{ctx.label}] install poetry {version}",
    ).root()
    st = (
        st.with_env("PATH", st.get_env("PATH", "") + ":/opt/poetry/bin")
        .with_env("POETRY_VIRTUALENVS_IN_PROJECT", "true")
        .with_env("POETRY_NO_INTERACTION", "1")
    )
    st = st.mkdir(workdir, parents=True).with_workdir(workdir)
    st = ctx.copy_sources(st, ctx.attr("lockfiles") + ctx.attr("path_deps"), workdir)
    groups = ",".join(ctx.attr("only"))
    st = st.run(
        ["/bin/sh", "-c", f"poetry install --no-root --only {groups}"],
        **ctx.fetching(
            llb.cache("/root/.cache/pypoetry", id="/root/.cache/pypoetry"),
            llb.cache("/root/.cache/pip", id="/root/.cache/pip"),
        ),
        name=f"[{ctx.label}] poetry install --no-root --only {groups}",
    ).root()
    return ctx.result(stage=st)


POETRY_INSTALL = Rule(
    RuleSchema(
        name="poetry_install",
        doc="A stage with the project's locked dependencies installed by Poetry into `<workdir>/.venv`.",
        attrs={
            "base": Attr("string", "Base image name from WORKSPACE.toml `[images]`; the full Python "
                         "image, since building wheels may need a compiler.", mandatory=True),
            "lockfiles": Attr("label_list", "Filegroups holding `pyproject.toml` and `poetry.lock` "
                              "(workspace-root paths are kept).", mandatory=True),
            "path_deps": Attr("label_list", "Filegroups of path dependencies, copied complete "
                              "(source, README, pyproject.toml): Poetry builds them.", default=()),
            "poetry_version": Attr("string", "Poetry version, pinned.", default="2.1.3"),
            "only": Attr("string_list", "Dependency groups to install (`--only`).", default=("main",)),
            "workdir": Attr("string", "Project folder; the venv is `<workdir>/.venv`.", default="/app"),
        },
    ),
    _poetry_install,
)


def _python_image(ctx: RuleContext):
    workdir = ctx.attr("workdir")
    user, uid = ctx.attr("user"), ctx.attr("uid")
    st = ctx.base(ctx.attr("base"))
    if ctx.attr("create_user"):
        st = st.run(
            ["/bin/sh", "-c", f"groupadd --gid {uid} {user} && useradd --uid {uid} --gid {uid} "
                              f"--no-create-home --shell /usr/sbin/nologin {user}"],
            name=f"[{ctx.label}] add user {user} ({uid})",
        ).root()
    st = st.mkdir(workdir, parents=True).with_workdir(workdir)
    venv = f"{workdir}/.venv"
    st = st.copy(ctx.stage_of(ctx.attr("venv")), venv, venv)
    if ctx.attr("srcs"):
        st = ctx.copy_sources(st, ctx.attr("srcs"), workdir)
    st = st.with_env("PATH", f"{venv}/bin:" + st.get_env("PATH", ""))
    return finish_image(ctx, st, user, base=ctx.attr("base"))


PYTHON_IMAGE = Rule(
    RuleSchema(
        name="python_image",
        doc="A runtime image: a slim base, a Poetry `.venv` from a `poetry_install` stage, and app sources.",
        attrs={
            "base": Attr("string", "Runtime base image name from WORKSPACE.toml `[images]` "
                         "(a slim image without compilers).", mandatory=True),
            "venv": Attr("label", "The `poetry_install` stage whose `<workdir>/.venv` is copied.", mandatory=True),
            "srcs": Attr("label_list", "Filegroups copied under `workdir` at their workspace paths.", default=()),
            "user": Attr("string", "Non-root user the container runs as.", default="appuser"),
            "uid": Attr("int", "uid and gid of `user`.", default=1000),
            "create_user": Attr("bool", "Create `user` (false when the base image has it).", default=True),
            "workdir": Attr("string", "Working directory; the venv is `<workdir>/.venv`.", default="/app"),
            **IMAGE_ATTRS,
        },
    ),
    _python_image,
)
