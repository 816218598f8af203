#!/usr/bin/env python3
"""Join single-platform image archives into one multi-platform image (for scripts/env-up).

    oci_index.py NAME OUT.tar PART.tar...   # OUT.tar: an OCI layout whose index names NAME
    oci_index.py --digest OUT.tar           # print the digest of the image index in OUT.tar

Each PART is a ``docker save`` archive of one image (an OCI layout holding
one manifest). The result holds every part's blobs and, as NAME, one image
index listing each part's manifest with the platform its config says.
``docker load`` of it gives NAME as a multi-platform image: one tag for both
platforms, which two ``docker import``-ed images cannot share.

The output is deterministic (sorted JSON, fixed tar metadata), so the same
parts give the same index digest on every run and every engine.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile

INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _json(data) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def _add(out: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    out.addfile(info, io.BytesIO(data))


def _read(tar: tarfile.TarFile, digest: str) -> bytes:
    return tar.extractfile("blobs/sha256/" + digest.split(":", 1)[1]).read()


def join(name: str, out_path: str, parts: list[str]) -> str:
    """Write the joined layout to ``out_path``; returns the index digest."""
    entries, blobs = [], {}
    for part in parts:
        with tarfile.open(part) as tar:
            (desc,) = json.load(tar.extractfile("index.json"))["manifests"]
            if desc["mediaType"] != MANIFEST:
                raise SystemExit(f"{part}: expected one image manifest, found {desc['mediaType']}")
            manifest = json.loads(_read(tar, desc["digest"]))
            config = json.loads(_read(tar, manifest["config"]["digest"]))
            platform = {"architecture": config["architecture"], "os": config["os"]}
            if config.get("variant"):
                platform["variant"] = config["variant"]
            entries.append({"mediaType": MANIFEST, "digest": desc["digest"], "size": desc["size"],
                            "platform": platform})
            for d in [desc, manifest["config"], *manifest["layers"]]:
                blobs[d["digest"]] = _read(tar, d["digest"])
    index = _json({"schemaVersion": 2, "mediaType": INDEX, "manifests": entries})
    digest = "sha256:" + hashlib.sha256(index).hexdigest()
    blobs[digest] = index
    tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else "latest"
    full = name if "/" in name.split(":", 1)[0] and "." in name.split("/", 1)[0] else f"docker.io/{name}"
    top = {"schemaVersion": 2, "mediaType": INDEX, "manifests": [{
        "mediaType": INDEX, "digest": digest, "size": len(index),
        "annotations": {"io.containerd.image.name": full, "org.opencontainers.image.ref.name": tag}}]}
    with tarfile.open(out_path, "w", format=tarfile.PAX_FORMAT) as out:
        _add(out, "oci-layout", _json({"imageLayoutVersion": "1.0.0"}))
        _add(out, "index.json", _json(top))
        for d in sorted(blobs):
            _add(out, "blobs/sha256/" + d.split(":", 1)[1], blobs[d])
    return digest


def index_digest(path: str) -> str:
    with tarfile.open(path) as tar:
        return json.load(tar.extractfile("index.json"))["manifests"][0]["digest"]


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--digest":
        print(index_digest(argv[1]))
        return 0
    if len(argv) < 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    join(argv[0], argv[1], argv[2:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
