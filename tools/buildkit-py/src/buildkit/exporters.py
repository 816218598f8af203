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
from typing import Mapping, Sequence

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
                     epoch: int | None = None, containerd_store: bool = True,
                     base_diff_ids: Sequence[str] = ()) -> Export:
    """Store the image in the Docker engine's image store under ``name``.

    With the containerd image store the ``image`` exporter writes straight
    into the engine's store, and can rewrite every file time to ``epoch``
    (``rewrite-timestamp``), which makes images reproducible; the engine
    unpacks on first use. The classic store only has the ``moby`` exporter,
    where rewriting conflicts with its unpacking, so only the image metadata
    gets ``epoch`` there.

    OCI media types make the manifest byte-identical to the one the ``oci``
    exporter writes for the same result, so an image restored from its blobs
    keeps its digest.

    ``base_diff_ids`` names the base image's layers: rewriting skips them
    (they are the base's, unchanged), which keeps exports fast.
    """
    from .llb import normalize_image_ref

    names = [name] if isinstance(name, str) else list(name)
    if not containerd_store:
        attrs = _image_attrs(names, config, None, {"oci-mediatypes": "true"})
        if epoch is not None:
            attrs["source-date-epoch"] = str(epoch)
        return Export("moby", attrs)
    extra = {"oci-mediatypes": "true", "unpack": "false"}
    if base_diff_ids:
        extra["containerimage.base.config"] = json.dumps(
            {"rootfs": {"type": "layers", "diff_ids": list(base_diff_ids)}}, separators=(",", ":"))
    return Export("image", _image_attrs([normalize_image_ref(n) for n in names], config, epoch, extra))


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
