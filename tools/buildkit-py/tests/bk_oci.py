"""Reading what an ``oci`` export wrote, for the engine tests: the index, each
platform's manifest and config, files in its layers, and attestations."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

ATTESTATION = "attestation-manifest"
INDEX = "application/vnd.oci.image.index.v1+json"


@dataclass
class Image:
    platform: str  # "linux/arm64"
    manifest: dict
    config: dict


class OCIArchive:
    def __init__(self, path: Path) -> None:
        self.tar = tarfile.open(path)

    def close(self) -> None:
        self.tar.close()

    def blob(self, digest: str) -> bytes:
        algo, hexd = digest.split(":")
        data = self.tar.extractfile(f"blobs/{algo}/{hexd}").read()
        assert hashlib.sha256(data).hexdigest() == hexd, digest
        return data

    def json(self, digest: str) -> dict:
        return json.loads(self.blob(digest))

    def tar_index_digest(self) -> str:
        """The digest index.json names: the image index, or the one manifest."""
        (desc,) = json.load(self.tar.extractfile("index.json"))["manifests"]
        return desc["digest"]

    def index(self) -> dict:
        """The image's own index (index.json points at it when the image is an index)."""
        top = json.load(self.tar.extractfile("index.json"))
        (desc,) = top["manifests"]
        return self.json(desc["digest"]) if desc["mediaType"] == INDEX else {"manifests": [desc]}

    def descriptors(self, attestations: bool = False) -> list[dict]:
        kind = lambda d: (d.get("annotations") or {}).get("vnd.docker.reference.type")  # noqa: E731
        return [d for d in self.index()["manifests"] if (kind(d) == ATTESTATION) == attestations]

    def images(self) -> list[Image]:
        out = []
        for desc in self.descriptors():
            manifest = self.json(desc["digest"])
            p = desc.get("platform") or {}
            platform = "/".join(x for x in (p.get("os"), p.get("architecture"), p.get("variant")) if x)
            out.append(Image(platform, manifest, self.json(manifest["config"]["digest"])))
        return out

    def files(self, image: Image) -> dict[str, bytes]:
        """Every regular file of the image's layers (later layers win)."""
        out: dict[str, bytes] = {}
        for layer in image.manifest["layers"]:
            with tarfile.open(fileobj=io.BytesIO(self.blob(layer["digest"]))) as lt:
                for m in lt.getmembers():
                    if m.isfile():
                        out[m.name] = lt.extractfile(m).read()
        return out

    def attestations(self) -> list[tuple[str, dict]]:
        """(the digest of the image manifest it is about, in-toto statement) pairs."""
        out = []
        for desc in self.descriptors(attestations=True):
            subject = desc["annotations"]["vnd.docker.reference.digest"]
            for layer in self.json(desc["digest"])["layers"]:
                out.append((subject, json.loads(self.blob(layer["digest"]))))
        return out
