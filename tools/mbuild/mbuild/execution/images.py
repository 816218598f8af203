"""Base images at the IO edge: their configs and digests, from the engine.

Analysis needs each base image's config (Env, User, WorkingDir, Cmd…) to
start a stage the way a Dockerfile ``FROM`` does. They are read from the
Docker engine's image store (where BuildKit also finds them), by the pinned
digest when WORKSPACE.toml has one.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from ..errors import BuildFailure
from ..loading.workspace import BaseImage


def _engine():
    import docker

    return docker.from_env(timeout=60)


def _inspect(client, image: BaseImage) -> Any:
    import docker.errors

    for ref in ([image.pinned_ref, image.ref] if image.digest else [image.ref]):
        try:
            found = client.images.get(ref)
        except docker.errors.ImageNotFound:
            continue
        except docker.errors.APIError:
            continue
        if image.digest and image.digest not in _digests(found):
            continue
        return found
    return None


def _digests(found) -> set[str]:
    out = {found.id}
    for rd in found.attrs.get("RepoDigests") or ():
        out.add(rd.split("@", 1)[-1])
    return out


def base_image_configs(images: Iterable[BaseImage]) -> dict[str, Mapping[str, Any]]:
    """name -> OCI config section (``Env``, ``Cmd``…) for each base image."""
    images = list(images)
    if not images:
        return {}
    try:
        client = _engine()
    except Exception as e:  # noqa: BLE001
        raise BuildFailure(f"cannot read base images from the Docker engine: {e}; start it (scripts/env-up)") from None
    out: dict[str, Mapping[str, Any]] = {}
    for image in images:
        found = _inspect(client, image)
        if found is None:
            what = image.pinned_ref
            raise BuildFailure(
                f"base image {image.name} ({what}) is not in the Docker engine; load it "
                f"(scripts/env-up makes the stand-ins) or fix [images.{image.name}] in WORKSPACE.toml"
            )
        out[image.name] = dict(found.attrs.get("Config") or {})
    return out


def resolve_digest(image: BaseImage) -> str:
    """The digest ``image.ref`` points at now (for ``mbuild lock``)."""
    client = _engine()
    found = _inspect(client, BaseImage(image.name, image.ref))
    if found is None:
        raise BuildFailure(f"base image {image.name}: {image.ref} is not in the Docker engine; load or pull it first")
    return found.id
