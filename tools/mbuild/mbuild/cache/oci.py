"""OCI image layouts as blobs in the local store: taking an exported archive
apart, and putting one together again for ``docker load``.

An image kept this way is its manifest, config and layer blobs, by digest.
Reassembled with the same manifest, the engine loads it under the same
manifest digest it was built with.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import BinaryIO

from ..errors import BuildFailure
from .store import LocalStore

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"


def ingest_archive(store: LocalStore, archive: Path) -> tuple[str, list[dict]]:
    """Copy an OCI archive's blobs into the store.

    Returns the manifest digest and every blob (manifest first) as
    ``{"digest", "size", "mediaType"}``.
    """
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))
        manifests = index.get("manifests") or []
        if len(manifests) != 1 or manifests[0].get("mediaType") != MANIFEST_TYPE:
            raise BuildFailure(f"{archive}: expected one image manifest in index.json, found {manifests}")
        desc = manifests[0]
        blobs = [{"digest": desc["digest"], "size": desc["size"], "mediaType": desc["mediaType"]}]
        manifest = json.loads(_member(tar, desc["digest"]).read())
        for d in [manifest["config"], *manifest["layers"]]:
            blobs.append({"digest": d["digest"], "size": d["size"], "mediaType": d["mediaType"]})
        for blob in blobs:
            hexd = blob["digest"].split(":", 1)[1]
            if not store.has_blob(hexd):
                _copy_blob(store, tar, blob["digest"], hexd)
    return desc["digest"], blobs


def _member(tar: tarfile.TarFile, digest: str) -> BinaryIO:
    algo, hexd = digest.split(":", 1)
    f = tar.extractfile(f"blobs/{algo}/{hexd}")
    if f is None:
        raise BuildFailure(f"OCI archive lacks blob {digest}")
    return f


def _copy_blob(store: LocalStore, tar: tarfile.TarFile, digest: str, hexd: str) -> None:
    import hashlib
    import os
    import tempfile

    path = store.blob_path(hexd)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    h = hashlib.sha256()
    src = _member(tar, digest)
    with os.fdopen(fd, "wb") as out:
        while chunk := src.read(1 << 20):
            h.update(chunk)
            out.write(chunk)
    if h.hexdigest() != hexd:
        os.unlink(tmp)
        raise BuildFailure(f"OCI archive blob {digest} does not match its digest")
    os.replace(tmp, path)


def has_blobs(store: LocalStore, blobs: list[dict]) -> bool:
    return all(store.has_blob(b["digest"].split(":", 1)[1]) for b in blobs)


def write_archive(store: LocalStore, blobs: list[dict], name: str, out: BinaryIO) -> None:
    """Write an OCI archive of the image (``blobs[0]`` is its manifest) named ``name``."""
    from buildkit.llb import normalize_image_ref

    full = normalize_image_ref(name)
    tag = full.rsplit(":", 1)[1] if ":" in full.rsplit("/", 1)[-1] else "latest"
    manifest = blobs[0]
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": manifest["mediaType"], "digest": manifest["digest"], "size": manifest["size"],
            "annotations": {"io.containerd.image.name": full, "org.opencontainers.image.ref.name": tag},
        }],
    }
    with tarfile.open(fileobj=out, mode="w|") as tar:
        _add_bytes(tar, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        _add_bytes(tar, "index.json", json.dumps(index).encode())
        for blob in blobs:
            hexd = blob["digest"].split(":", 1)[1]
            path = store.blob_path(hexd)
            info = tarfile.TarInfo(f"blobs/sha256/{hexd}")
            info.size = path.stat().st_size
            with open(path, "rb") as f:
                tar.addfile(info, f)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))
