"""Python images: a Poetry dependency stage and a slim runtime image.

Mirrors the seed's ``python.Dockerfile``: dependencies are resolved from
``poetry.lock`` on the full base (compilers available) into the project's
``.venv`` (``POETRY_VIRTUALENVS_IN_PROJECT``), with cache mounts for Poetry's
and pip's caches; only ``main`` dependencies, never the root package. The
runtime starts from the slim base, takes the ``.venv`` with one copy, adds
the app sources, and runs as a non-root user with a fixed uid.

Poetry's own venv (``/opt/poetry``) lives only in the dependency stage, so
it is installed for speed. It is made without pip (``venv --without-pip``:
seeding pip took 6 s here), the base's pip installs Poetry into it with
``--python`` and without pip's version check (a request to PyPI), and its
byte-code is compiled afterwards on every core (``compileall -j 0``; pip
compiles one file at a time). Left uncompiled, each ``poetry install`` would
compile what Poetry imports, about 2 s, again whenever the lock changes.
Installing Poetry and then installing this monorepo's lock took 14.3 s
instead of 14 to 20 s the seed's way (each timed inside a ``docker run`` of
the base, no pip cache, three runs). Nothing of it reaches the runtime
image: the app's ``.venv`` is made by Poetry with virtualenv.

The Poetry project may be at the workspace root (this monorepo) or in a
sub-folder (one project per service): sources keep their workspace paths
under ``workdir``, so path dependencies (``../../libs/x``) resolve as they do
in the checkout, and Poetry runs in the project's folder.

The ``.venv`` is made bit-for-bit reproducible after the install (two builds
from empty caches give the same image): each ``.pyc`` in it is rewritten
hash-based (PEP 552: checked against its source's hash, so it stays valid
whatever the file times; the one Python wrote on first importing
virtualenv's ``_virtualenv.py`` held that file's mtime), and the lines of
each ``RECORD`` are sorted (virtualenv appends the files it adds to pip's in
the order of a Python set, which changes run to run; the order means
nothing).
"""

from __future__ import annotations

from mbuild.api import v1 as mb

PoetryVenv = mb.provider(
    "PoetryVenv",
    "The virtualenv a poetry_install stage made, for runtime images to copy.",
    {
        "path": "Absolute path of the venv in the stage, like /app/.venv; a venv is not relocatable, so "
                "runtime images keep it at this path.",
        "project": "Workspace-relative folder of the Poetry project (\"\" for the root).",
    },
)


def _project(ctx, lock_files):
    """The Poetry project's folder: the `project` attribute, else the folder of
    the one pyproject.toml among the lockfiles."""
    project = ctx.attr("project").strip("/")
    if project:
        if f"{project}/pyproject.toml" not in lock_files:
            raise ctx.error(f"attribute 'project': {project}/pyproject.toml is not in lockfiles; add it there")
        return project
    found = sorted(f.rpartition("/")[0] for f in lock_files if f.rpartition("/")[2] == "pyproject.toml")
    if len(found) != 1:
        listed = ", ".join(f"{d}/pyproject.toml" if d else "pyproject.toml" for d in found) or "none"
        raise ctx.error(f"lockfiles hold {len(found)} pyproject.toml files ({listed}); set `project` to the "
                        f"folder of the Poetry project")
    return found[0]


def _poetry_install(ctx):
    workdir = ctx.attr("workdir").rstrip("/") or "/"
    version = ctx.attr("poetry_version")
    lock_files = ctx.files(ctx.attr("lockfiles"))
    project = _project(ctx, lock_files)
    project_dir = f"{workdir.rstrip('/')}/{project}" if project else workdir
    st = ctx.base("base")
    st = st.run(
        ["/bin/sh", "-c", _INSTALL_POETRY.format(version=version)],
        **ctx.fetching(mb.cache("/root/.cache/pip", id="/root/.cache/pip")),
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
        cwd=project_dir,
        **ctx.fetching(
            mb.cache("/root/.cache/pypoetry", id="/root/.cache/pypoetry"),
            mb.cache("/root/.cache/pip", id="/root/.cache/pip"),
        ),
        name=f"[{ctx.label}] poetry install --no-root --only {groups}" + (f" (in {project})" if project else ""),
    ).root()
    venv = f"{project_dir.rstrip('/')}/.venv"
    st = st.run(
        # The venv's own interpreter (its bytecode's magic number), without site (no _virtualenv import)
        # and writing no bytecode of its own.
        [f"{venv}/bin/python", "-I", "-S", "-B", "-c", _REPRODUCIBLE_VENV, venv],
        name=f"[{ctx.label}] reproducible .venv: hash-based .pyc, sorted RECORD",
    ).root()
    return [mb.Stage(st), PoetryVenv(path=venv, project=project)]


# Poetry in a venv of its own, /opt/poetry (see the module docstring, "Poetry's own venv"). The base's
# pip installs into it (`--python`, pip >= 22.3), so the venv needs no pip of its own; a base without
# such a pip gets one in the venv, the seed's way. The interpreter is named `python3`, as the venv's own
# pip is run by: pip writes it into Poetry's shebang, and virtualenv then records it in the app's
# `.venv/pyvenv.cfg` (`command = /opt/poetry/bin/python3 -m virtualenv ...`), which the runtime image holds.
_INSTALL_POETRY = (
    "python3 -m venv --without-pip /opt/poetry && "
    "if python3 -c 'import pip, sys; sys.exit(tuple(map(int, pip.__version__.split(\".\")[:2])) < (22, 3))' "
    "2>/dev/null; then "
    'python3 -m pip --python /opt/poetry/bin/python3 install --no-compile --disable-pip-version-check '
    '"poetry=={version}" && /opt/poetry/bin/python3 -m compileall -q -j 0 /opt/poetry/lib; '
    "else python3 -m venv --clear /opt/poetry && "
    '/opt/poetry/bin/pip install --disable-pip-version-check "poetry=={version}"; fi'
)

# Run in the venv by poetry_install (see the module docstring); argv[1] is the venv.
_REPRODUCIBLE_VENV = """
import importlib.util, pathlib, py_compile, re, sys
site = sorted(pathlib.Path(sys.argv[1]).glob("lib/python*/site-packages"))
for pyc in sorted(p for d in site for p in d.glob(f"**/__pycache__/*.{sys.implementation.cache_tag}.*pyc")):
    source = pathlib.Path(importlib.util.source_from_cache(str(pyc)))
    if source.is_file():  # (else Python never reads the .pyc)
        opt = re.search(r"[.]opt-([12])[.]pyc$", pyc.name)
        py_compile.compile(str(source), cfile=str(pyc), doraise=True, optimize=int(opt[1]) if opt else 0,
                           invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
for record in sorted(p for d in site for p in d.glob("*.dist-info/RECORD")):
    text = record.read_bytes()  # the same lines and bytes, sorted
    lines = text.split(b"\\n")[:-1] if text.endswith(b"\\n") else text.split(b"\\n")
    record.write_bytes(b"\\n".join(sorted(lines)) + (b"\\n" if text.endswith(b"\\n") else b""))
"""


poetry_install = mb.rule(
    implementation=_poetry_install,
    doc="A stage with a Poetry project's locked dependencies installed into the project's `.venv`.",
    attrs={
        "base": mb.attr.base_image("Base image name from WORKSPACE.toml `[images]`; the full Python image, "
                                   "since building wheels may need a compiler.", mandatory=True),
        "lockfiles": mb.attr.label_list("Filegroups holding the project's `pyproject.toml` and `poetry.lock` "
                                        "(copied at their workspace paths).", mandatory=True,
                                        providers=(mb.Files,)),
        "path_deps": mb.attr.label_list("Filegroups of path dependencies, copied complete (source, README, "
                                        "pyproject.toml) at their workspace paths: Poetry builds them.",
                                        providers=(mb.Files,)),
        "project": mb.attr.string("Workspace folder of the Poetry project, e.g. `services/api`; empty: the "
                                  "folder of the one `pyproject.toml` in lockfiles."),
        "poetry_version": mb.attr.string("Poetry version, pinned.", default="2.1.3"),
        "only": mb.attr.string_list("Dependency groups to install (`--only`).", default=("main",)),
        "workdir": mb.attr.string("Folder the workspace files are copied under; the venv is "
                                  "`<workdir>/<project>/.venv`.", default="/app"),
    },
)


def _python_image(ctx):
    workdir = ctx.attr("workdir")
    user, uid = ctx.attr("user"), ctx.attr("uid")
    st = ctx.base("base")
    if ctx.attr("create_user"):
        st = st.run(
            ["/bin/sh", "-c", f"groupadd --gid {uid} {user} && useradd --uid {uid} --gid {uid} "
                              f"--no-create-home --shell /usr/sbin/nologin {user}"],
            name=f"[{ctx.label}] add user {user} ({uid})",
        ).root()
    st = st.mkdir(workdir, parents=True).with_workdir(workdir)
    venv = ctx.dep(ctx.attr("venv"))[PoetryVenv].path
    st = st.copy(ctx.stage(ctx.attr("venv")), venv, venv)
    if ctx.attr("srcs"):
        st = ctx.copy_sources(st, ctx.attr("srcs"), workdir)
    st = st.with_env("PATH", f"{venv}/bin:" + st.get_env("PATH", ""))
    return mb.image_result(ctx, st, user)


python_image = mb.rule(
    implementation=_python_image,
    doc="A runtime image: a slim base, a Poetry `.venv` from a `poetry_install` stage, and app sources.",
    attrs={
        "base": mb.attr.base_image("Runtime base image name from WORKSPACE.toml `[images]` (a slim image "
                                   "without compilers).", mandatory=True),
        "venv": mb.attr.label("The `poetry_install` stage whose `.venv` is copied, to the same path.",
                              mandatory=True, providers=(mb.Stage, PoetryVenv)),
        "srcs": mb.attr.label_list("Filegroups copied under `workdir` at their workspace paths.",
                                   providers=(mb.Files,)),
        "user": mb.attr.string("Non-root user the container runs as.", default="appuser"),
        "uid": mb.attr.int("uid and gid of `user`.", default=1000),
        "create_user": mb.attr.bool("Create `user` (false when the base image has it).", default=True),
        "workdir": mb.attr.string("Working directory.", default="/app"),
        **mb.image_attrs(),
    },
)
