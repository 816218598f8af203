"""Base images at the IO edge: their configs and digests, from the engine.

Analysis needs each base image's config (Env, User, WorkingDir, Cmd…) to
start a stage the way a Dockerfile ``FROM`` does, and its digest, which goes
into action keys and pins the LLB. Both are read from the Docker engine's
image store, where the engine's BuildKit also finds them.
"""

from __future__ import annotations

from typing import Iterable

from ..analysis.providers import ResolvedBase
from ..errors import BuildFailure
from ..loading.workspace import BaseImage
from .engine import Engine, EngineError


def _find(engine: Engine, image: BaseImage) -> dict | None:
    for ref in ([image.pinned_ref, image.ref] if image.digest else [image.ref]):
        found = engine.inspect_image(ref)
        if found is None:
            continue
        digests = {found.get("Id")} | {rd.split("@", 1)[-1] for rd in found.get("RepoDigests") or ()}
        if image.digest and image.digest not in digests:
            continue
        return found
    return None


def resolve_bases(images: Iterable[BaseImage], engine: Engine | None = None) -> dict[str, ResolvedBase]:
    """name -> digest and OCI config section, for each base image."""
    engine = engine or Engine()
    out: dict[str, ResolvedBase] = {}
    for image in images:
        try:
            found = _find(engine, image)
        except EngineError as e:
            raise BuildFailure(f"cannot read base image {image.name}: {e}; start the engine (scripts/env-up)") from None
        if found is None:
            raise BuildFailure(
                f"base image {image.name} ({image.pinned_ref}) is not in the Docker engine; load it "
                f"(scripts/env-up makes the stand-ins) or fix [images.{image.name}] in WORKSPACE.toml"
            )
        out[image.name] = ResolvedBase(image.name, image.digest or found["Id"], dict(found.get("Config") or {}),
                                       tuple((found.get("RootFS") or {}).get("Layers") or ()))
    return out


def resolve_digest(image: BaseImage, mirrors=None) -> str:
    """The digest ``image.ref`` points at now (for ``mbuild lock``): the engine's
    copy if it has one (that is what builds use), else the registry's."""
    from .registry import resolve_tag

    try:
        found = _find(Engine(), BaseImage(image.name, image.ref))
    except EngineError:
        found = None
    if found is not None:
        return found["Id"]
    try:
        return resolve_tag(image.ref, mirrors or {})
    except LookupError as e:
        raise BuildFailure(f"base image {image.name}: {image.ref} is neither in the Docker engine nor "
                           f"resolvable through its registry ({e}); load it or fix the ref") from None
