"""Base images at the IO edge: resolved by BuildKit itself.

Analysis needs each base image's config (Env, User, WorkingDir, Cmd…) to
start a stage the way a Dockerfile ``FROM`` does, and its digest, which pins
the LLB and goes into action keys. Both come from BuildKit's gateway
(``ResolveImageConfig``), the way the Dockerfile frontend resolves ``FROM``,
so the digest is the one BuildKit will use, whatever the daemon is: a Docker
engine (images pulled, ``docker load``-ed or ``docker import``-ed) or a
standalone buildkitd with only registries behind it.

An image is resolved by its *name* first. On a fresh Docker engine a bare
``name@digest`` source is looked up in a registry even when the engine holds
that very image; resolving the name is what makes BuildKit record where the
engine's copy comes from, after which the digest form solves locally. A
WORKSPACE.toml pin (``digest``) is then checked against the name's digest,
and resolved by digest only when they differ (a registry may have it).
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

from buildkit.gateway import ResolvedImage
from buildkit.llb import normalize_image_ref

from ..analysis.providers import ResolvedBase
from ..errors import BuildFailure
from ..loading.workspace import BaseImage


def _missing(image: BaseImage, address: object, why: str) -> BuildFailure:
    where = f"{image.ref}@{image.digest}" if image.digest else image.ref
    if image.name.startswith("FROM "):  # a Dockerfile's FROM image (a `dockerfile` target)
        return BuildFailure(f"image {where} (a FROM line of a Dockerfile) is not in BuildKit at {address} or a "
                            f"registry it can reach ({_first_line(why)}); load it into the engine (docker load "
                            f"or docker import)")
    advice = ("load that image into the engine (docker load), or run `mbuild lock` to pin the digest the "
              "engine has" if image.digest else
              "load it into the engine (docker load or docker import), or run `mbuild lock` against a "
              "registry that has it")
    return BuildFailure(f"base image {image.name} ({where}, WORKSPACE.toml [images.{image.name}]) is not in "
                        f"BuildKit at {address} or a registry it can reach ({_first_line(why)}); {advice}")


def _first_line(text: str) -> str:
    line = str(text).splitlines()[0] if str(text) else ""
    return line if len(line) <= 300 else line[:297] + "..."


def _base(image: BaseImage, found: ResolvedImage, digest: str) -> ResolvedBase:
    return ResolvedBase(image.name, digest, dict(found.container_config), found.diff_ids)


def _other_platform(found, platform: str | None) -> str | None:
    """The platform a resolved single-platform image is for, when it is not
    ``platform`` (BuildKit hands it out for any platform asked; its steps
    would run, emulated, as the wrong CPU)."""
    if platform is None or not isinstance(found, ResolvedImage):
        return None
    want_os, _, rest = platform.partition("/")
    want_arch = rest.split("/", 1)[0]
    os_, arch = found.config.get("os"), found.config.get("architecture")
    if os_ and arch and (os_, arch) != (want_os, want_arch):
        return f"{os_}/{arch}"
    return None


def raise_missing(images: Iterable[BaseImage], missing: Mapping[str, str], address: object) -> None:
    """Raise :class:`BuildFailure` for the first of ``images`` that is in ``missing`` (name -> why)."""
    for image in images:
        if image.name in missing:
            raise _missing(image, address, missing[image.name])


def try_resolve_bases(client, images: Iterable[BaseImage], platform: str | None = None
                      ) -> tuple[dict[str, ResolvedBase], dict[str, str]]:
    """name -> digest, config and layers, for each base image, as BuildKit resolves them
    for ``platform`` (a multi-platform image gives that platform's config and layers),
    and why each other one was not (:func:`raise_missing` makes that an error).

    ``client`` is a connected :class:`buildkit.Client`. One gateway session
    resolves them all (plus one more for pins the engine's tag does not match).
    """
    images = list(images)
    if not images:
        return {}, {}
    names = [normalize_image_ref(i.ref.split("@", 1)[0]) for i in images]
    answers = client.resolve_images([(n, platform) for n in names])
    out: dict[str, ResolvedBase] = {}
    missing: dict[str, str] = {}
    by_digest: list[BaseImage] = []
    for image, found in zip(images, answers):
        other = _other_platform(found, platform)
        if other:
            missing[image.name] = f"it is an image for {other} only"
        elif isinstance(found, ResolvedImage) and (not image.digest or found.digest == image.digest):
            out[image.name] = _base(image, found, found.digest)
        elif image.digest:
            by_digest.append(image)
        else:
            missing[image.name] = _first_line(str(found))
    if by_digest:
        pinned = [normalize_image_ref(f"{i.ref.split('@', 1)[0]}@{i.digest}") for i in by_digest]
        for image, found in zip(by_digest, client.resolve_images([(p, platform) for p in pinned])):
            if isinstance(found, ResolvedImage):
                out[image.name] = _base(image, found, image.digest)
            else:
                missing[image.name] = _first_line(str(found))
    return out, missing


def lock_digests(client, images: Sequence[BaseImage], mirrors: Mapping[str, Sequence[str]] | None = None,
                 platform: str | None = None) -> dict[str, str]:
    """The digest each image's ref names now (for ``mbuild lock``): as BuildKit
    resolves it (the engine's copy first, else a registry), else through the
    registry mirrors of WORKSPACE.toml."""
    from .registry import resolve_tag

    names = [normalize_image_ref(i.ref.split("@", 1)[0]) for i in images]
    answers = client.resolve_images([(n, platform) for n in names]) if images else []
    out: dict[str, str] = {}
    for image, name, found in zip(images, names, answers):
        if isinstance(found, ResolvedImage):
            out[image.name] = found.digest
            continue
        try:
            out[image.name] = resolve_tag(name, mirrors or {})
        except LookupError as e:
            raise BuildFailure(f"base image {image.name}: {image.ref} is neither known to BuildKit at "
                               f"{client.address} ({_first_line(str(found))}) nor resolvable through a "
                               f"registry ({e}); load it into the engine or fix the ref") from None
    return out
