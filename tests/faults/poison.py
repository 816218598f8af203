"""Poisoned action-cache entries: the answer for key K made of right blobs
(every digest matches its bytes) of another image, the victim's entry being
rewritten in a :class:`~tests.faults.hostile_remote.Content` that already
holds the honest entries of K and of the other action (``other``).

Each function of :data:`POISONS` takes ``(content, key, other)`` and
replaces the action result under ``key``:

other-record     the other action's result as it is (its record says its key)
other-blobs      K's record, with the other image's blobs as outputs beside it
renamed-blobs    K's record and output paths, with the other image's digests
forged-record    a record saying K (with K's key document) for the other
                 image's manifest and blobs
swapped-layer    K's record, config and layers but one of its own layers
                 replaced in a new manifest by one of the other image's
renamed-image    K's record and blobs, saying the image is named ``renamed``
"""

from __future__ import annotations

import json
from typing import Callable

from mbuild.cache.keys import canonical
from mbuild.cache.remote import ActionResult, BlobRef

from .hostile_remote import Content

RECORD_PATH = "mbuild/record.json"
RENAMED = "mbuild-test-renamed-by-a-poisoned-entry:latest"


def result_of(content: Content, key: str) -> ActionResult:
    data = content.result_bytes(key)
    assert data is not None, f"no action result for {key[:12]}…"
    return ActionResult.FromString(data)


def record_of(content: Content, key: str) -> dict:
    ref = next(f.digest for f in result_of(content, key).output_files if f.path == RECORD_PATH)
    return json.loads(content.blob(ref.hash))


def blob_outputs(record: dict) -> list[tuple[str, BlobRef]]:
    return [(f"blobs/sha256/{b['digest'][7:]}", BlobRef(b["digest"][7:], b["size"])) for b in record["blobs"]]


def answer(content: Content, key: str, record: dict, outputs: list[tuple[str, BlobRef]]) -> None:
    """Store *record* and make it, with *outputs*, the result under *key*."""
    record_ref = content.put_bytes(canonical(record))
    result = ActionResult()
    for path, ref in [(RECORD_PATH, record_ref), *outputs]:
        f = result.output_files.add(path=path)
        f.digest.hash, f.digest.size_bytes = ref.hash, ref.size
    content.set_result(key, result)


def other_record(content: Content, key: str, other: str) -> None:
    content.set_result(key, content.result_bytes(other))


def other_blobs(content: Content, key: str, other: str) -> None:
    answer(content, key, record_of(content, key), blob_outputs(record_of(content, other)))


def renamed_blobs(content: Content, key: str, other: str) -> None:
    mine, theirs = blob_outputs(record_of(content, key)), blob_outputs(record_of(content, other))
    outputs = [(path, theirs[min(i, len(theirs) - 1)][1]) for i, (path, _) in enumerate(mine)]
    answer(content, key, record_of(content, key), outputs)


def forged_record(content: Content, key: str, other: str) -> None:
    record, theirs = record_of(content, key), record_of(content, other)
    record.update(manifest_digest=theirs["manifest_digest"], blobs=theirs["blobs"])
    answer(content, key, record, blob_outputs(record))


def swapped_layer(content: Content, key: str, other: str) -> None:
    record, theirs = record_of(content, key), record_of(content, other)
    manifest = json.loads(content.blob(record["blobs"][0]["digest"][7:]))
    stranger = next(b for b in reversed(theirs["blobs"][2:]) if b not in record["blobs"])
    manifest["layers"][-1] = {k: stranger[k] for k in ("mediaType", "digest", "size")}
    data = json.dumps(manifest, separators=(",", ":")).encode()
    ref = content.put_bytes(data)
    desc = {"digest": f"sha256:{ref.hash}", "size": ref.size, "mediaType": record["blobs"][0]["mediaType"]}
    record.update(manifest_digest=desc["digest"], blobs=[desc, record["blobs"][1], *record["blobs"][2:-1], stranger])
    answer(content, key, record, blob_outputs(record))


def renamed_image(content: Content, key: str, other: str) -> None:
    record = record_of(content, key)
    record["image"] = RENAMED
    answer(content, key, record, blob_outputs(record))


POISONS: dict[str, Callable[[Content, str, str], None]] = {
    "other-record": other_record,
    "other-blobs": other_blobs,
    "renamed-blobs": renamed_blobs,
    "forged-record": forged_record,
    "swapped-layer": swapped_layer,
    "renamed-image": renamed_image,
}


def foreign_blobs(content: Content, key: str, other: str) -> set[str]:
    """The other image's blobs that are not K's (hex digests): none may land
    in a store that fetched K. Ask before poisoning."""
    mine = {b["digest"][7:] for b in record_of(content, key)["blobs"]}
    return {b["digest"][7:] for b in record_of(content, other)["blobs"]} - mine
