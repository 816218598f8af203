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

from ..cache.keys import canonical
from ..cache.oci import has_blobs, write_archive
from ..cache.store import ActionRecord, LocalStore
from .engine import Engine, EngineError

RECORD_PATH = "mbuild/record.json"


class RemoteActions:
    def __init__(self, remote, store: LocalStore, engine: Engine, upload: bool) -> None:
        self.remote = remote
        self.store = store
        self.engine = engine
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

    def fetch(self, key: str) -> ActionRecord | None:
        """The remote's record for ``key`` with its blobs now in the local store, or None."""
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
        wanted = [ref for path, ref in outputs.items() if path != RECORD_PATH and not self.store.has_blob(ref.hash)]
        for ref in wanted:
            path = self.store.blob_path(ref.hash)
            path.parent.mkdir(parents=True, exist_ok=True)
            if not self.remote.get_blob(ref, path):
                return None
        return record

    # ------------------------------------------------------------------ images


def restore_image(store: LocalStore, engine: Engine, record: ActionRecord) -> bool:
    """Load the record's image from local blobs; True if the engine now has it."""
    if not record.blobs or not record.image or not has_blobs(store, list(record.blobs)):
        return False
    fd, tmp = tempfile.mkstemp(dir=store.root, prefix=".restore-", suffix=".tar")
    try:
        with os.fdopen(fd, "wb") as out:
            write_archive(store, list(record.blobs), record.image, out)
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
