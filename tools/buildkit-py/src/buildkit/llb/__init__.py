"""Build BuildKit LLB graphs from Python: an immutable, chainable State API in
the spirit of BuildKit's Go ``client/llb``.

    from buildkit import llb

    base = llb.image("python:3.11-slim")
    st = base.run("pip install uv", mounts=[llb.cache("/root/.cache", "pip")])
    definition = st.marshal()          # -> llb.Definition (.to_pb(), .serialize())
    missing = llb.check_caps(definition, daemon_caps)

Modules: :mod:`.state` (State, ExecState, merge, diff), :mod:`.sources`,
:mod:`.mounts`, :mod:`.fileaction`, :mod:`.config` (image config),
:mod:`.ops` (op nodes), :mod:`.marshal` (Definition), :mod:`.caps`,
:mod:`.reference` (image refs), :mod:`.platform`.
"""

from . import caps
from .caps import check_caps, describe_missing, required_caps
from .config import ImageConfig
from .errors import LLBError
from .fileaction import Copy, Mkdir, Mkfile, Owner, Rm, Symlink, copy, mkdir, mkfile, parse_owner, rm, symlink
from .marshal import Definition, OpInfo
from .mounts import Mount, bind, cache, secret, ssh, tmpfs
from .platform import Platform, host_platform
from .reference import ImageRef, normalize_image_ref, parse_image_ref
from .sources import git, http, image, local, scratch
from .state import ExecState, State, diff, merge

__all__ = [
    "Copy", "Definition", "ExecState", "ImageConfig", "ImageRef", "LLBError", "Mkdir", "Mkfile",
    "Mount", "OpInfo", "Owner", "Platform", "Rm", "State", "Symlink",
    "bind", "cache", "caps", "check_caps", "copy", "describe_missing", "diff", "git",
    "host_platform", "http", "image", "local", "merge", "mkdir", "mkfile", "normalize_image_ref",
    "parse_image_ref", "parse_owner", "required_caps", "rm", "scratch", "secret", "ssh", "symlink",
    "tmpfs",
]
