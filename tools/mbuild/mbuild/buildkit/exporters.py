"""What a solve does with its result: load, write or push an image, or files.

Each constructor returns an :class:`Export`, the exporter type and attributes
BuildKit expects, plus the local path a tarball or tree is written to (those
come back over the session's FileSend service).

The image config (``Env``, ``User``, ``Cmd``…) of a raw-LLB build travels in
the exporter attribute ``containerimage.config``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

# Exporter types that stream their output back to the client.
STREAMED = frozenset({"oci", "docker", "tar", "local"})


@dataclass(frozen=True)
class Export:
    type: str
    attrs: Mapping[str, str] = field(default_factory=dict)
    output: Path | None = None  # tarball file, or directory for "local"


def _image_attrs(names: str | list[str] | tuple[str, ...] | None, config: Mapping | None,
                 epoch: int | None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    attrs: dict[str, str] = {}
    if names:
        attrs["name"] = names if isinstance(names, str) else ",".join(names)
    if config is not None:
        attrs["containerimage.config"] = json.dumps(config, sort_keys=True, separators=(",", ":"))
    if epoch is not None:
        # Layers and config get this time; files in new layers are clamped to it.
        attrs["source-date-epoch"] = str(epoch)
        attrs["rewrite-timestamp"] = "true"
    attrs.update(extra or {})
    return attrs


def load_into_docker(name: str | list[str], config: Mapping | None = None,
                     epoch: int | None = None) -> Export:
    """Store the image in the Docker engine's image store under ``name``."""
    return Export("moby", _image_attrs(name, config, epoch))


def oci_tarball(path: str | Path, name: str | None = None, config: Mapping | None = None,
                epoch: int | None = None) -> Export:
    """Write an OCI image layout tarball to ``path``."""
    return Export("oci", _image_attrs(name, config, epoch), Path(path))


def docker_tarball(path: str | Path, name: str | None = None, config: Mapping | None = None,
                   epoch: int | None = None) -> Export:
    """Write a ``docker load``-able tarball to ``path``."""
    return Export("docker", _image_attrs(name, config, epoch), Path(path))


def push(name: str, config: Mapping | None = None, insecure: bool = False,
         epoch: int | None = None) -> Export:
    """Push the image to the registry in ``name`` (``registry.insecure`` for plain HTTP)."""
    extra = {"push": "true"}
    if insecure:
        extra["registry.insecure"] = "true"
    return Export("image", _image_attrs(name, config, epoch, extra))


def local_dir(path: str | Path) -> Export:
    """Write the result's file tree into the directory ``path``."""
    return Export("local", {}, Path(path))


def tar(path: str | Path) -> Export:
    """Write the result's file tree as a tar archive to ``path``."""
    return Export("tar", {}, Path(path))
