"""Dockerfile builds through BuildKit's own frontend (``dockerfile.v0``), set up as buildx does.

::

    from buildkit import Client, exporters
    from buildkit.dockerfile import solve_request
    from buildkit.secrets import parse_secret_specs

    req = solve_request("app/", target="runtime", build_args={"PY": "3.11"},
                        secrets=parse_secret_specs(["id=npmrc,src=~/.npmrc"]),
                        exports=(exporters.load_into_docker("app:dev"),))
    with Client.open() as bk:
        bk.solve(req, on_event=print)

The frontend runs in the daemon: it reads the Dockerfile from the local dir
``dockerfile`` and the build context from ``context`` (both served by this
client's session, the context filtered by its own ``.dockerignore``), and
takes its options as frontend attributes: ``filename``, ``target``,
``build-arg:NAME``, ``label:NAME``, ``platform`` (comma-separated; several
make a multi-platform result, exported as one index), ``no-cache``,
``image-resolve-mode``. Secrets and SSH agents for ``RUN --mount`` are the
solve's own. Progress streams as for any solve.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

from .client import CacheEntry, SolveRequest
from .errors import BuildKitError
from .exporters import Export
from .filesync import LocalDir
from .llb.platform import Platform
from .secrets import SecretSource
from .sshforward import SSHAgent

FRONTEND = "dockerfile.v0"
CONTEXT = "context"  # the local dir holding the build context
DOCKERFILE = "dockerfile"  # the local dir holding the Dockerfile
RESOLVE_MODES = ("default", "pull", "local")


def frontend_attrs(filename: str = "Dockerfile", target: str = "", build_args: Mapping[str, str] | None = None,
                   platforms: Sequence[str | Platform] = (), labels: Mapping[str, str] | None = None,
                   no_cache: bool = False, resolve_mode: str = "",
                   extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The Dockerfile frontend's attributes for these options (see :func:`solve_request`)."""
    if resolve_mode and resolve_mode not in RESOLVE_MODES:
        raise BuildKitError(f"image resolve mode {resolve_mode!r}: use one of {', '.join(RESOLVE_MODES)}")
    attrs = {"filename": filename}
    if target:
        attrs["target"] = target
    for key, value in (build_args or {}).items():
        attrs[f"build-arg:{key}"] = str(value)
    for key, value in (labels or {}).items():
        attrs[f"label:{key}"] = str(value)
    if platforms:
        attrs["platform"] = ",".join(str(Platform.parse(p)) for p in platforms)
    if no_cache:
        attrs["no-cache"] = ""
    if resolve_mode:
        attrs["image-resolve-mode"] = resolve_mode
    attrs.update(extra or {})
    return attrs


def solve_request(context: str | os.PathLike[str], dockerfile: str | os.PathLike[str] | None = None, *,
                  target: str = "", build_args: Mapping[str, str] | None = None,
                  platforms: Sequence[str | Platform] = (), labels: Mapping[str, str] | None = None,
                  exports: Sequence[Export] = (), secrets: Mapping[str, SecretSource] | None = None,
                  ssh: Mapping[str, SSHAgent] | None = None, attestations: Mapping[str, str] | None = None,
                  no_cache: bool = False, resolve_mode: str = "", cache_imports: Sequence[CacheEntry] = (),
                  cache_exports: Sequence[CacheEntry] = (), entitlements: Sequence[str] = (),
                  shared_key: str = "", extra_attrs: Mapping[str, str] | None = None) -> SolveRequest:
    """A :class:`SolveRequest` building ``dockerfile`` (default
    ``<context>/Dockerfile``) with the directory ``context``.

    ``target``: the stage to build (default: the last). ``build_args``:
    ``ARG`` values. ``platforms``: target platforms (several give one image
    index). ``labels``: image labels. ``attestations``: e.g.
    ``attestations.provenance("max")``. ``resolve_mode``: how ``FROM``
    images are resolved (``default``, ``pull``, ``local``). ``extra_attrs``:
    any other frontend attribute, as is. Raises
    :class:`~buildkit.errors.BuildKitError` when the context or the
    Dockerfile is missing.
    """
    ctx = Path(context).expanduser().resolve()
    if not ctx.is_dir():
        raise BuildKitError(f"Dockerfile build context {context}: not a directory")
    path = Path(dockerfile).expanduser().resolve() if dockerfile is not None else ctx / "Dockerfile"
    if not path.is_file():
        raise BuildKitError(f"Dockerfile {path}: no such file; give dockerfile= or put a Dockerfile in {ctx}")
    attrs = frontend_attrs(path.name, target, build_args, platforms, labels, no_cache, resolve_mode,
                           {**(attestations or {}), **(extra_attrs or {})})
    return SolveRequest(
        frontend=FRONTEND,
        frontend_attrs=attrs,
        local_dirs={CONTEXT: LocalDir(ctx), DOCKERFILE: LocalDir(path.parent)},
        exports=tuple(exports),
        secrets=dict(secrets or {}),
        ssh=dict(ssh or {}),
        cache_imports=tuple(cache_imports),
        cache_exports=tuple(cache_exports),
        entitlements=tuple(entitlements),
        shared_key=shared_key or f"dockerfile:{ctx}",
    )
