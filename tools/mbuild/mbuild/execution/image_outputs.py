"""What a build does with an image besides loading it into the engine:
buildx's ``--push`` and ``--output type=oci|docker,dest=FILE``.

Both start from the image as the engine holds it once the target is built or
answered from the cache, so the digest pushed or written is the digest built,
whichever way the build got it:

* a push sends the engine's image to the registry its name names
  (``127.0.0.1:5000/app:1``), with the credentials of the docker config
  (``auths``, ``credsStore``, ``credHelpers``: :mod:`buildkit.dockerconfig`).
  The registry is asked first: when its tag already points at the digest,
  nothing is uploaded;
* a tarball is the engine's ``docker save`` of the image: an OCI image
  layout (``index.json``, ``oci-layout``, ``blobs/``) that also carries
  ``manifest.json``, so ``docker load`` takes it; ``type=oci`` and
  ``type=docker`` write the same, each keeping the built digest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..atomicfile import writing
from ..errors import BuildFailure, ConfigError
from .engine import Engine, EngineError, registry_auth

OUTPUT_TYPES = ("oci", "docker")
OUTPUT_SYNTAX = "type=oci|docker,dest=FILE"


@dataclass(frozen=True)
class TarballOutput:
    """One ``--output``: ``dest`` may hold ``{target}`` (``pkg-name``), needed
    when a build has several images."""

    type: str
    dest: str

    def path(self, target: str) -> Path:
        return Path(self.dest.replace("{target}", target))


def parse_output(spec: str, cwd: Path) -> TarballOutput:
    """One ``--output`` value, buildx's syntax; ``dest`` relative to ``cwd``."""
    fields = {}
    for item in spec.split(","):
        key, eq, value = item.partition("=")
        if not eq or not value:
            raise ConfigError(f"--output {spec!r}: {item!r} is not key=value; use {OUTPUT_SYNTAX}")
        fields[key.strip()] = value.strip()
    kind, dest = fields.pop("type", ""), fields.pop("dest", "")
    if kind not in OUTPUT_TYPES:
        raise ConfigError(f"--output {spec!r}: type {kind or '(none)'}: use type=oci or type=docker "
                          f"(push with --push, load is the default)")
    if not dest or fields:
        raise ConfigError(f"--output {spec!r}: {'unknown keys ' + ', '.join(fields) if fields else 'no dest'}; "
                          f"use {OUTPUT_SYNTAX}")
    return TarballOutput(kind, str((cwd / Path(dest).expanduser()).resolve()) if "{target}" not in dest
                         else str(cwd / Path(dest).expanduser()))


def has_registry(name: str) -> bool:
    """Whether an image name names its registry (``host[:port]/…``, ``localhost/…``),
    as the docker CLI tells one: a first part with a dot or a port, or localhost."""
    first, slash, _ = name.partition("/")
    return bool(slash) and ("." in first or ":" in first or first == "localhost")


@dataclass(frozen=True)
class Pushed:
    ref: str  # the image name pushed
    digest: str  # what the registry's tag points at now: the built digest
    uploaded: bool  # False: the registry had it already

    def to_json(self) -> dict:
        return {"ref": self.ref, "digest": self.digest, "uploaded": self.uploaded}


def push_image(engine: Engine | None, name: str, digest: str) -> Pushed:
    """Push the engine's ``name`` (built as ``digest``) unless the registry has it."""
    from buildkit.auth import credentials_for
    from buildkit.llb import parse_image_ref

    from .registry import pushed_digest

    if engine is None:
        raise ConfigError(f"pushing {name}: mbuild pushes the image a Docker engine holds; use buildkit = "
                          f"\"docker://\" (a standalone buildkitd has no image store to push from)")
    host = parse_image_ref(name).domain
    creds = credentials_for(host)  # an unreadable docker config is anonymous
    if pushed_digest(name, creds) == digest:
        return Pushed(name, digest, False)
    try:
        got = engine.push(name, registry_auth(creds[0], creds[1], host) if creds[1] else "")
    except EngineError as e:
        hint = "; log in first (docker login " + host + ")" if "unauthorized" in str(e).lower() or \
            "authentication required" in str(e).lower() else ""
        raise BuildFailure(f"{e}{hint}") from None
    if got != digest:
        raise BuildFailure(f"pushing {name}: the registry got {got}, not the built {digest}")
    return Pushed(name, digest, True)


def write_tarball(engine: Engine | None, name: str, digest: str, output: TarballOutput, target: str) -> Path:
    """Write the engine's image ``name`` (``digest``) as ``output`` says; returns the file."""
    path = output.path(target)
    if engine is None:
        raise ConfigError(f"--output {output.type}: mbuild writes the image a Docker engine holds; use "
                          f"buildkit = \"docker://\"")
    if engine.image_id(name) != digest:
        raise BuildFailure(f"--output {output.type}: the engine no longer holds {name} as {digest}")
    try:
        with writing(path, umasked=True, suffix=".part") as out:  # a file the user made, not a private temp
            engine.save(name, out)
    except EngineError as e:
        raise BuildFailure(f"--output {output.type},dest={path}: {e}") from None
    except OSError as e:
        raise BuildFailure(f"--output {output.type},dest={path}: {e.strerror or e}; choose a dest that can be "
                           "written (and has room)") from None
    return path
