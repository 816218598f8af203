"""Sharing action results through a remote cache (REAPI or Bazel HTTP).

An action result on the remote is a REAPI ``ActionResult`` under the action
key, whose output files are:

* ``mbuild/record.json``: the :class:`~mbuild.cache.store.ActionRecord`;
* ``blobs/sha256/<hex>``: each blob of the image (manifest, config, layers);
* the generated files, at their output paths.

Blobs are uploaded before the result that names them. Fetching verifies
every blob's digest (the remote layer refuses mismatches) and restores an
image by loading its reassembled OCI archive into the engine, which keeps
the original manifest digest. Any remote failure is a miss (``SafeRemote``).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Sequence

from ..cache.keys import canonical
from ..cache.oci import has_blobs, write_archive
from ..cache.store import ActionRecord, LocalStore
from .engine import Engine, EngineError

RECORD_PATH = "mbuild/record.json"


class RemoteActions:
    def __init__(self, remote, store: LocalStore, upload: bool) -> None:
        self.remote = remote
        self.store = store
        self.upload = upload

    # ------------------------------------------------------------------ publish

    def publish(self, record: ActionRecord) -> None:
        """Upload a record's blobs and files, then the result naming them."""
        if not self.upload:
            return
        from ..cache.remote import ActionResult, BlobRef

        outputs: list[tuple[str, BlobRef]] = []
        for blob in record.blobs:
            hexd = blob["digest"].split(":", 1)[1]
            outputs.append((f"blobs/sha256/{hexd}", BlobRef(hexd, int(blob["size"]))))
        for path, hexd in sorted(record.files.items()):
            outputs.append((path, BlobRef(hexd, self.store.blob_path(hexd).stat().st_size)))
        record_bytes = canonical(record.to_json())
        record_ref = BlobRef.of_bytes(record_bytes)
        missing = self.remote.find_missing([ref for _, ref in outputs] + [record_ref])
        self.remote.put_blobs([(ref, self.store.blob_path(ref.hash)) for _, ref in outputs if ref in missing])
        if record_ref in missing:
            self.remote.put_blob(record_ref, record_bytes)
        result = ActionResult()
        for path, ref in [(RECORD_PATH, record_ref), *outputs]:
            f = result.output_files.add(path=path)
            f.digest.hash, f.digest.size_bytes = ref.hash, ref.size
        self.remote.put_action_result(record.key, result)

    # ------------------------------------------------------------------ fetch

    def fetch(self, key: str, base_diff_ids: Sequence[str] = ()) -> ActionRecord | None:
        """The remote's record for ``key`` with its blobs now in the local store, or None.

        Image layers the base image already gives the engine (``base_diff_ids``,
        matched by the image config's ``rootfs.diff_ids``) are not downloaded:
        :func:`restore_image` leaves them out of the archive it loads.
        """
        from ..cache.remote import BlobRef

        result = self.remote.get_action_result(key)
        if result is None:
            return None
        outputs = {f.path: BlobRef(f.digest.hash, f.digest.size_bytes) for f in result.output_files}
        record_ref = outputs.get(RECORD_PATH)
        if record_ref is None:
            return None
        with tempfile.TemporaryDirectory(dir=self.store.root if self.store.root.exists() else None) as tmp:
            dest = Path(tmp) / "record.json"
            if not self.remote.get_blob(record_ref, dest):
                return None
            try:
                record = ActionRecord.from_json(json.loads(dest.read_bytes()))
            except (ValueError, TypeError, KeyError):
                return None
        if record.key != key:
            return None
        # Manifest and config first: the config says which layers are the base's.
        head = [f"blobs/sha256/{b['digest'].split(':', 1)[1]}" for b in record.blobs[:2]]
        if not self._download([outputs[p] for p in head if p in outputs]):
            return None
        skip = base_layer_blobs(self.store, record, base_diff_ids)
        rest = [ref for path, ref in outputs.items()
                if path != RECORD_PATH and path not in head and f"sha256:{ref.hash}" not in skip]
        return record if self._download(rest) else None

    def fetch_blobs(self, record: ActionRecord) -> bool:
        """Download every blob of ``record`` still missing locally."""
        from ..cache.remote import BlobRef

        refs = [BlobRef(b["digest"].split(":", 1)[1], int(b["size"])) for b in record.blobs]
        return self._download(refs)

    def _download(self, refs) -> bool:
        for ref in refs:
            if self.store.has_blob(ref.hash):
                continue
            path = self.store.blob_path(ref.hash)
            path.parent.mkdir(parents=True, exist_ok=True)
            if not self.remote.get_blob(ref, path):
                return False
        return True


def base_layer_blobs(store: LocalStore, record: ActionRecord, base_diff_ids: Sequence[str]) -> set[str]:
    """Digests of the image's layer blobs that are the base image's own layers."""
    if not base_diff_ids or len(record.blobs) < 2:
        return set()
    manifest = store.read_blob(record.blobs[0]["digest"].split(":", 1)[1])
    config = store.read_blob(record.blobs[1]["digest"].split(":", 1)[1])
    if manifest is None or config is None:
        return set()
    try:
        layers = json.loads(manifest)["layers"]
        diff_ids = json.loads(config)["rootfs"]["diff_ids"]
    except (ValueError, KeyError, TypeError):
        return set()
    skip = set()
    for layer, diff_id, base_id in zip(layers, diff_ids, base_diff_ids):
        if diff_id != base_id:
            break
        skip.add(layer["digest"])
    return skip


def restore_image(store: LocalStore, engine: Engine, record: ActionRecord,
                  base_diff_ids: Sequence[str] = ()) -> bool:
    """Load the record's image from local blobs; True if the engine now has it.

    The base image's layers are left out of the archive (the engine has them
    with the base image): loading is then proportional to what the build
    added. If the engine turns out not to have them, the whole image is tried.
    """
    if not record.blobs or not record.image:
        return False
    omit = base_layer_blobs(store, record, base_diff_ids)
    if omit and _load(store, engine, record, omit):
        return True
    return has_blobs(store, list(record.blobs)) and _load(store, engine, record, set())


def _load(store: LocalStore, engine: Engine, record: ActionRecord, omit: set[str]) -> bool:
    blobs = [b for b in record.blobs if b["digest"] not in omit]
    if not has_blobs(store, blobs):
        return False
    fd, tmp = tempfile.mkstemp(dir=store.root, prefix=".restore-", suffix=".tar")
    try:
        with os.fdopen(fd, "wb") as out:
            write_archive(store, blobs, record.image, out)
        with open(tmp, "rb") as f:
            engine.load(f, os.path.getsize(tmp))
    except (OSError, EngineError):
        return False
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass
    try:
        return engine.image_id(record.image) == record.manifest_digest
    except EngineError:
        return False
