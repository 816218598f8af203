"""Sharing action results through a remote cache (REAPI or Bazel HTTP).

An action result on the remote is a REAPI ``ActionResult`` under the action
key, whose output files are:

* ``mbuild/record.json``: the :class:`~mbuild.cache.store.ActionRecord`;
* ``blobs/sha256/<hex>``: each blob of the image (manifest, config, layers);
* the generated files, at their output paths.

Blobs are uploaded before the result that names them. A fetched image goes
into the engine with its original manifest digest: straight into the
engine's containerd image store where that is reachable (only the blobs it
lacks are written, :func:`restore_image`), else by ``docker load`` of the
reassembled OCI archive. Any remote failure is a miss (``SafeRemote``).

What a fetched result must be before anything of it is used
------------------------------------------------------------
The remote layer already refuses bytes that are not the blob asked for. A
result can still be *another* action's, made of right blobs: the remote
(or whoever may write to it) answers key K with parts of an image that is
not K's. :func:`check_result` and :func:`check_image` refuse, as a miss
with one warning, a result whose

* record is not K's: its ``key`` is another, or, for an image, its key
  document (``inputs``) does not hash to K (so its config is not K's
  inputs' either); or it names another image than the one asked for, or
  an image without the blobs that make it (a digest alone could name any
  image the engine has);
* outputs are not exactly what the record names: every blob and file at
  its path with its digest and size, and nothing else (another image's
  blobs "beside" a right record are not downloaded, let alone used);
* manifest is not the record's: its digest, its config and its layers
  (digest, size, media type, in order) are the record's blobs;
* config is not K's: its platform and container config are those of K's
  key document, its layers are the base image's and then the image's own;
* layers are not what the config says: each layer's uncompressed digest is
  its ``diff_id`` (checked for every layer the engine is handed, as the
  base's own layers are the engine's already).

Nothing is kept until everything is checked: the blobs of a result are
downloaded into a staging folder inside the store and moved into it only
then, so a refused result leaves nothing behind. What stays trusted is the
writer of the action cache: a result forged with K's key document, config
and base and other layers of its own is not told apart without building
(uploads are for CI, with credentials).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import tempfile
import zlib
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from ..cache.keys import canonical
from ..cache.oci import MANIFEST_TYPE, has_blobs, write_archive
from ..cache.store import ActionRecord, LocalStore
from .engine import Engine, EngineError

RECORD_PATH = "mbuild/record.json"
BLOB_PREFIX = "blobs/sha256/"
MAX_RECORD_SIZE = 64 << 20  # a record bigger than this is not one mbuild wrote
_HEX = frozenset("0123456789abcdef")
_GZIP_LAYERS = ("application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.docker.image.rootfs.diff.tar.gzip")
_PLAIN_LAYERS = ("application/vnd.oci.image.layer.v1.tar", "application/vnd.docker.image.rootfs.diff.tar")


class Rejected(Exception):
    """A fetched result is not the one its key names; the message says why."""


class RemoteActions:
    def __init__(self, remote, store: LocalStore, upload: bool) -> None:
        self.remote = remote
        self.store = store
        self.upload = upload

    @property
    def reachable(self) -> bool:
        """False once the remote has failed in this build (a remote wrapped by
        :func:`mbuild.cache.remote.open_safe_remote` is then disabled)."""
        return bool(getattr(self.remote, "enabled", True))

    # ------------------------------------------------------------------ publish

    def publish(self, record: ActionRecord) -> None:
        """Upload a record's blobs and files, then the result naming them."""
        if not self.upload:
            return
        self.publish_hits([record])

    def publish_hits(self, records: Sequence[ActionRecord]) -> int:
        """Upload every record of ``records`` the remote lacks; returns how
        many were uploaded.

        One FindMissing asks for every blob and file of the records and for
        each one's *published marker*, a tiny CAS blob naming the key
        (:func:`published_marker`), written after the action result. A
        record whose marker or any blob is missing is uploaded (only the
        missing blobs). A record the remote seems to hold in full is asked
        for once more, by its action result: remotes keep the action cache
        and the CAS apart, and one may lose the first and keep the second
        (BuildGrid's in-memory action cache over a disk CAS, after a
        restart), which a marker alone would take for published, for ever."""
        if not self.upload or not records:
            return 0
        from ..cache.remote import BlobRef

        plans = []
        wanted: dict[BlobRef, None] = {}
        for record in records:
            if record.image and not record.blobs or not has_blobs(self.store, list(record.blobs)):
                continue  # an image without its blobs (an index, or blobs gone): nothing to restore it from
            outputs: list[tuple[str, BlobRef]] = []
            for blob in record.blobs:
                hexd = blob["digest"].split(":", 1)[1]
                outputs.append((f"{BLOB_PREFIX}{hexd}", BlobRef(hexd, int(blob["size"]))))
            for path, hexd in sorted(record.files.items()):
                outputs.append((path, BlobRef(hexd, self.store.blob_path(hexd).stat().st_size)))
            record_bytes = canonical(record.to_json())
            marker = published_marker(record.key)
            plans.append((record, outputs, record_bytes, BlobRef.of_bytes(record_bytes), marker))
            for ref in [*(r for _, r in outputs), BlobRef.of_bytes(record_bytes), BlobRef.of_bytes(marker)]:
                wanted[ref] = None
        missing = self.remote.find_missing(list(wanted))
        whole = [record.key for record, outputs, _, record_ref, marker in plans
                 if BlobRef.of_bytes(marker) not in missing and record_ref not in missing
                 and not any(ref in missing for _, ref in outputs)]
        held = self._held(whole)
        sent: set = set()
        uploaded = 0
        for record, outputs, record_bytes, record_ref, marker in plans:
            if record.key in held:
                continue
            blobs = [ref for _, ref in outputs if ref in missing and ref not in sent]
            if blobs:
                self.remote.put_blobs([(ref, self.store.blob_path(ref.hash)) for ref in blobs])
            sent.update(blobs)
            if record_ref in missing:
                self.remote.put_blob(record_ref, record_bytes)
            self.remote.put_action_result(record.key, _action_result([(RECORD_PATH, record_ref), *outputs]))
            if getattr(self.remote, "read_only", False) or not getattr(self.remote, "enabled", True):
                break  # the result was not taken: no marker, and nothing more to try this run
            self.remote.put_blob(BlobRef.of_bytes(marker), marker)
            uploaded += 1
        return uploaded

    def _held(self, keys: Sequence[str]) -> set[str]:
        """The keys whose action results the remote returns (asked side by side)."""
        if not keys:
            return set()
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(8, len(keys))) as pool:
            found = list(pool.map(self.remote.get_action_result, keys))
        return {key for key, result in zip(keys, found) if result is not None}

    # ------------------------------------------------------------------ fetch

    def fetch(self, key: str, base_diff_ids: Sequence[str] = (), image: str | None = None) -> ActionRecord | None:
        """The remote's record for ``key`` with its blobs now in the local store,
        or None: a miss, or a result refused by the checks of the module
        docstring (*image*, when given, is the name the image must have).

        Image layers the base image already gives the engine (``base_diff_ids``,
        matched by the image config's ``rootfs.diff_ids``) are not downloaded:
        :func:`restore_image` leaves them out of the archive it loads.
        """
        result = self.remote.get_action_result(key)
        if result is None:
            return None
        try:
            with self._staging() as stage:
                got = self._record(key, result, stage)
                if got is None:
                    return None
                record, refs = got
                if image is not None and record.image != image:
                    raise Rejected(f"its record is of image {record.image!r}, not {image!r}")
                wanted = [refs[path] for path in record.files]
                own: list[tuple[Any, Mapping[str, Any], str]] = []
                if record.blobs:
                    head = [refs[blob_path(b)] for b in record.blobs[:2]]
                    if not stage.download(head):
                        return None
                    layers = check_image(record, stage.read(head[0]), stage.read(head[1]), base_diff_ids)
                    own = [(refs[blob_path(desc)], desc, diff_id) for desc, diff_id, base in layers if not base]
                if not stage.download(wanted + [ref for ref, _, _ in own]):
                    return None
                stage.check_layers(own)
                stage.commit()
                return record
        except Rejected as e:
            self._reject(f"the action result for key {key[:12]}… is not that action's: {e}")
            return None

    def fetch_blobs(self, record: ActionRecord) -> bool:
        """Download every blob of ``record`` (as :meth:`fetch` returned it)
        still missing locally, checking the layers among them."""
        from ..cache.remote import BlobRef

        try:
            with self._staging() as stage:
                refs = [BlobRef(b["digest"].split(":", 1)[1], int(b["size"])) for b in record.blobs]
                if not stage.download(refs):
                    return False
                if len(refs) >= 2:
                    layers = check_image(record, stage.read(refs[0]), stage.read(refs[1]), ())
                    stage.check_layers([(ref, desc, diff_id) for ref, (desc, diff_id, _) in zip(refs[2:], layers)
                                        if stage.staged(ref)])
                stage.commit()
                return True
        except Rejected as e:
            self._reject(f"a layer of {record.image!r} from the remote cache is not what its config says: {e}")
            return False

    def _record(self, key: str, result, stage: "_Staging") -> tuple[ActionRecord, dict] | None:
        """The result's record, checked against *key* and the result's outputs
        (:func:`check_result`), with the outputs by path; None when the
        remote has no record blob."""
        from ..cache.remote import BlobRef

        paths = [f.path for f in result.output_files]
        if len(set(paths)) != len(paths):
            raise Rejected("it names an output path twice")
        try:
            refs = {f.path: BlobRef(f.digest.hash, f.digest.size_bytes) for f in result.output_files}
        except ValueError as e:
            raise Rejected(f"it names a blob by a bad digest ({e})") from None
        record_ref = refs.get(RECORD_PATH)
        if record_ref is None:
            raise Rejected(f"it has no {RECORD_PATH}")
        if record_ref.size > MAX_RECORD_SIZE:
            raise Rejected(f"its record is {record_ref.size} bytes, more than a record can be")
        if not stage.download([record_ref], keep=False):
            return None
        record = parse_record(stage.read(record_ref))
        check_result(key, record, refs)
        return record, refs

    @contextlib.contextmanager
    def _staging(self) -> Iterator["_Staging"]:
        with self.store.temporary_dir("remote") as folder:
            yield _Staging(self.remote, self.store, folder)

    def _reject(self, reason: str) -> None:
        reject = getattr(self.remote, "reject", None)  # SafeRemote: one warning per run
        if reject is not None:
            reject(reason)


class _Staging:
    """Blobs downloaded for one result, kept aside until :meth:`commit`."""

    def __init__(self, remote, store: LocalStore, folder: Path) -> None:
        self.remote, self.store, self.dir = remote, store, folder
        self._keep: set[str] = set()

    def staged(self, ref) -> bool:
        return (self.dir / ref.hash).exists()

    def path(self, ref) -> Path:
        """Where the blob is: staged, or already in the store."""
        staged = self.dir / ref.hash
        return staged if staged.exists() else self.store.blob_path(ref.hash)

    def read(self, ref) -> bytes:
        data = self.path(ref).read_bytes()
        if hashlib.sha256(data).hexdigest() != ref.hash:  # a store blob damaged on disk
            raise Rejected(f"blob {ref.hash[:12]}… is damaged in the local store")
        return data

    def download(self, refs, keep: bool = True) -> bool:
        """Fetch the blobs the store lacks; True when every one arrived (verified)."""
        wanted = list({r.hash: r for r in refs if not self.staged(r) and
                       (not keep or not self.store.has_blob(r.hash))}.values())
        if keep:
            self._keep.update(r.hash for r in refs)
        if not wanted:
            return True
        got = self.remote.get_blobs([(r, self.dir / r.hash) for r in wanted])
        return all(got.get(r, False) for r in wanted)

    def check_layers(self, layers) -> None:
        """Each ``(ref, descriptor, diff_id)``'s blob unpacks to its diff_id."""
        for ref, desc, diff_id in layers:
            check_layer(self.path(ref), desc["mediaType"], diff_id)

    def commit(self) -> None:
        """Move the staged blobs (all checked) into the store."""
        for sha in sorted(self._keep):
            staged = self.dir / sha
            if staged.exists() and not self.store.has_blob(sha):
                dest = self.store.blob_path(sha)
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staged, dest)


def published_marker(key: str) -> bytes:
    """The CAS blob that says the remote holds the action result of ``key``
    (uploaded after it): one FindMissing asks about a whole build's."""
    return canonical({"mbuild-published": key})


def _action_result(outputs):
    from ..cache.remote import ActionResult

    result = ActionResult()
    for path, ref in outputs:
        f = result.output_files.add(path=path)
        f.digest.hash, f.digest.size_bytes = ref.hash, ref.size
    return result


# ---------------------------------------------------------------------- checks


def blob_path(desc: Mapping[str, Any]) -> str:
    """The output path of an OCI blob (a ``{"digest", …}`` descriptor)."""
    return BLOB_PREFIX + desc["digest"].split(":", 1)[1]


def _hex(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


def _digest(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("sha256:") and _hex(value[7:])


def parse_record(data: bytes) -> ActionRecord:
    """An :class:`ActionRecord` from a record blob, every field of the type
    mbuild writes (:class:`Rejected` if not)."""
    try:
        record = ActionRecord.from_json(json.loads(data))
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise Rejected(f"its record does not parse ({type(e).__name__})") from None
    kinds = {"key": str, "label": str, "kind": str, "image": (str, type(None)),
             "manifest_digest": (str, type(None)), "files": dict, "inputs": dict, "created": (int, float)}
    for name, kind in kinds.items():
        if not isinstance(getattr(record, name), kind):
            raise Rejected(f"its record's {name} is a {type(getattr(record, name)).__name__}")
    if not all(isinstance(p, str) and _hex(h) for p, h in record.files.items()):
        raise Rejected("its record names a file by a bad digest")
    for desc in record.blobs:
        if not (isinstance(desc, dict) and _digest(desc.get("digest")) and isinstance(desc.get("mediaType"), str)
                and isinstance(desc.get("size"), int) and not isinstance(desc["size"], bool) and desc["size"] >= 0):
            raise Rejected("its record names a blob by a bad descriptor")
    if bool(record.blobs) != bool(record.image and record.manifest_digest) or len(record.blobs) == 1:
        # An image is restored, and can be checked, only with its manifest, config and layers.
        raise Rejected("its record names an image without its blobs, or blobs without an image")
    return record


def check_result(key: str, record: ActionRecord, refs: Mapping[str, Any]) -> None:
    """The record is *key*'s and the result's outputs (*refs*, by path) are
    exactly what it names."""
    if record.key != key:
        raise Rejected(f"its record is for key {record.key[:12]}…")
    if record.blobs and hashlib.sha256(canonical(record.inputs)).hexdigest() != key:
        raise Rejected("its record's key document does not hash to the key")
    expected = {RECORD_PATH: None}
    for desc in record.blobs:
        expected[blob_path(desc)] = (desc["digest"][7:], desc["size"])
    for path, sha in record.files.items():
        expected[path] = (sha, None)
    if set(refs) != set(expected):
        extra, lacking = sorted(set(refs) - set(expected)), sorted(set(expected) - set(refs))
        raise Rejected(f"its outputs are not its record's (more: {extra[:3]}, lacking: {lacking[:3]})")
    for path, want in expected.items():
        if want is not None and (refs[path].hash != want[0] or want[1] not in (None, refs[path].size)):
            raise Rejected(f"its output {path} is blob {refs[path].hash[:12]}…/{refs[path].size}, "
                           f"not the record's")


def check_image(record: ActionRecord, manifest_bytes: bytes, config_bytes: bytes,
                base_diff_ids: Sequence[str]) -> list[tuple[Mapping[str, Any], str, bool]]:
    """The record's manifest and config are its image's and its key's; returns
    each layer's descriptor, its diff_id and whether it is the base's."""
    manifest_desc, config_desc, *layer_descs = record.blobs
    if manifest_desc["digest"] != record.manifest_digest or manifest_desc["mediaType"] != MANIFEST_TYPE:
        raise Rejected(f"its manifest blob is not the record's image {record.manifest_digest}")
    try:
        manifest, config = json.loads(manifest_bytes), json.loads(config_bytes)
        listed = [manifest["config"], *manifest["layers"]]
        rootfs = config["rootfs"]
        diff_ids = list(rootfs["diff_ids"])
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise Rejected(f"its manifest or config does not parse ({type(e).__name__})") from None
    fields = ("digest", "size", "mediaType")
    if manifest.get("mediaType", MANIFEST_TYPE) != MANIFEST_TYPE or \
            [[d.get(f) for f in fields] for d in listed] != [[d[f] for f in fields] for d in record.blobs[1:]]:
        raise Rejected("its manifest's config and layers are not the record's blobs")
    if rootfs.get("type") != "layers" or len(diff_ids) != len(layer_descs) or not all(map(_digest, diff_ids)):
        raise Rejected(f"its config lists {len(diff_ids)} layers for the manifest's {len(layer_descs)}")
    expected = record.inputs.get("config")
    if isinstance(expected, Mapping):
        for name in ("architecture", "os", "variant", "config"):
            if config.get(name) != expected.get(name):
                raise Rejected(f"its config's {name} is not the one the key's inputs give")
    base = list(base_diff_ids)
    if diff_ids[: len(base)] != base:
        raise Rejected("its layers do not start with the base image's")
    return [(desc, diff_id, i < len(base)) for i, (desc, diff_id) in enumerate(zip(layer_descs, diff_ids))]


def check_layer(path: Path, media_type: str, diff_id: str) -> None:
    """The layer blob at *path* unpacks to the tar whose digest is *diff_id*."""
    if media_type not in _GZIP_LAYERS + _PLAIN_LAYERS:
        raise Rejected(f"a layer of media type {media_type} cannot be checked")
    h = hashlib.sha256()
    try:
        with open(path, "rb") as raw, (gzip.GzipFile(fileobj=raw) if media_type in _GZIP_LAYERS else raw) as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise Rejected(f"layer {path.name[:12]}… does not unpack ({e})") from None
    if f"sha256:{h.hexdigest()}" != diff_id:
        raise Rejected(f"layer {path.name[:12]}… unpacks to sha256:{h.hexdigest()[:12]}…, not its diff_id "
                       f"{diff_id[:19]}…")


# ---------------------------------------------------------------------- restoring


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
    """Put the record's image into the engine from local blobs; True if the
    engine now has it under the record's manifest digest.

    Where the engine's containerd image store can be reached (a local engine
    with the containerd snapshotter), only the blobs the engine lacks are
    written into it (:mod:`buildkit.imagestore`): the base image's layers are
    there already, and nothing is re-hashed. Otherwise the image is loaded
    with ``docker load``, the base image's layers left out of the archive
    (the engine has them with the base image), so loading is proportional to
    what the build added; if the engine turns out not to have them, the whole
    image is tried.
    """
    if not record.blobs or not record.image:
        return False
    if _put_into_image_store(store, engine, record):
        return True
    omit = base_layer_blobs(store, record, base_diff_ids)
    if omit and _load(store, engine, record, omit):
        return True
    return has_blobs(store, list(record.blobs)) and _load(store, engine, record, set())


def _put_into_image_store(store: LocalStore, engine: Engine, record: ActionRecord) -> bool:
    from buildkit.imagestore import Blob, ImageStoreError
    from buildkit.llb import normalize_image_ref

    image_store = engine.image_store()
    if image_store is None or len(record.blobs) < 2:
        return False
    blobs = [Blob(b["digest"], int(b["size"]), b["mediaType"], store.blob_path(b["digest"].split(":", 1)[1]))
             for b in record.blobs]
    try:
        image_store.put_image(normalize_image_ref(record.image), blobs[0], blobs[1], blobs[2:])
        return engine.image_id(record.image) == record.manifest_digest
    except (ImageStoreError, EngineError, OSError):
        return False


def _load(store: LocalStore, engine: Engine, record: ActionRecord, omit: set[str]) -> bool:
    blobs = [b for b in record.blobs if b["digest"] not in omit]
    if not has_blobs(store, blobs):
        return False
    store.use()  # the archive is a temporary of the store's (swept if this process dies)
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
