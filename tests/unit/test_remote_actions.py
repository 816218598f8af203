"""Fetching action results from a remote (mbuild.execution.remote): a result
is used only when it is its key's (record, outputs, manifest, config,
layers), and a refused one leaves nothing in the local store. Images are
made here by hand (gzip layers, config, manifest) and served from memory
(tests/faults/hostile_remote.Content); the poisoned answers are those of
the fault suite (tests/faults/poison.py)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from mbuild.cache.keys import canonical
from mbuild.cache.oci import MANIFEST_TYPE
from mbuild.cache.remote import SafeRemote
from mbuild.cache.store import ActionRecord, LocalStore
from mbuild.execution.remote import RemoteActions

from ..faults.hostile_remote import Content
from ..faults.poison import POISONS, RECORD_PATH, answer, blob_outputs, foreign_blobs, record_of

LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"


def layer(files: dict[str, bytes]) -> tuple[bytes, str]:
    """A gzip layer of *files* and its diff_id."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    tar_bytes = raw.getvalue()
    return gzip.compress(tar_bytes, mtime=0), "sha256:" + hashlib.sha256(tar_bytes).hexdigest()


BASE = [layer({"etc/os-release": b"base\n"})]


def desc(data: bytes, media_type: str) -> dict:
    return {"digest": "sha256:" + hashlib.sha256(data).hexdigest(), "size": len(data), "mediaType": media_type}


def make_image(store: LocalStore, name: str, cmd: list[str], own: list[dict[str, bytes]]) -> ActionRecord:
    """An image on BASE with layers *own*, its blobs in *store*, and its record."""
    layers = BASE + [layer(files) for files in own]
    image_config = {"architecture": "amd64", "os": "linux", "config": {"Cmd": cmd}}
    inputs = {"schema": "test", "image": name, "config": {**image_config, "rootfs": {"type": "layers", "diff_ids": []}}}
    config = json.dumps({**image_config, "rootfs": {"type": "layers", "diff_ids": [d for _, d in layers]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST_TYPE, "config": desc(config, CONFIG_TYPE),
                           "layers": [desc(gz, LAYER_TYPE) for gz, _ in layers]}).encode()
    blobs = [desc(manifest, MANIFEST_TYPE), desc(config, CONFIG_TYPE), *(desc(gz, LAYER_TYPE) for gz, _ in layers)]
    for data in [manifest, config, *(gz for gz, _ in layers)]:
        store.put_blob_bytes(data)
    return ActionRecord(key=hashlib.sha256(canonical(inputs)).hexdigest(), label=f"//images:{name}",
                        kind="container_image", image=name, manifest_digest=blobs[0]["digest"], blobs=tuple(blobs),
                        inputs=inputs, created=1.0)


@pytest.fixture
def published(tmp_path):
    """Two images (app, tool) uploaded to an in-memory remote."""
    content = Content()
    store = LocalStore(tmp_path / "builder")
    app = make_image(store, "app:latest", ["/app"], [{"app/main": b"app\n"}, {"app/data": b"1\n"}])
    tool = make_image(store, "tool:latest", ["/tool"], [{"tool/main": b"tool\n"}, {"tool/data": b"2\n"}])
    publisher = RemoteActions(SafeRemote(content), store, upload=True)
    for record in (app, tool):
        publisher.publish(record)
    return content, app, tool


def fetcher(content: Content, tmp_path: Path) -> tuple[RemoteActions, LocalStore, list[str]]:
    warnings: list[str] = []
    store = LocalStore(tmp_path / "fresh")
    return RemoteActions(SafeRemote(content, warnings.append), store, upload=False), store, warnings


def stored(store: LocalStore) -> set[str]:
    """The blobs in *store* (and no temporary files anywhere under it; the
    session files under ``users/`` are the store's own bookkeeping of who uses it)."""
    files = [p for p in store.root.rglob("*") if p.is_file() and p.parent.name != "users"] \
        if store.root.exists() else []
    assert all(p.parent.parent.name == "cas" for p in files), files
    return {p.name for p in files}


def test_an_honest_result_is_restored_with_its_own_layers(published, tmp_path):
    content, app, _ = published
    actions, store, warnings = fetcher(content, tmp_path)
    base_ids = [d for _, d in BASE]
    record = actions.fetch(app.key, base_ids, image="app:latest")
    assert record == app and warnings == []
    assert stored(store) == {b["digest"][7:] for b in app.blobs[:2] + app.blobs[3:]}  # the base layer stays out
    assert actions.fetch_blobs(record) and stored(store) == {b["digest"][7:] for b in app.blobs}


@pytest.mark.parametrize("poison", sorted(POISONS))
def test_a_poisoned_result_is_refused_and_leaves_nothing(published, tmp_path, poison):
    content, app, tool = published
    foreign = foreign_blobs(content, app.key, tool.key)
    POISONS[poison](content, app.key, tool.key)
    actions, store, warnings = fetcher(content, tmp_path)
    assert actions.fetch(app.key, [d for _, d in BASE], image="app:latest") is None
    assert stored(store) == set(), "blobs of a refused result were kept"
    assert not foreign & stored(store)
    assert len(warnings) == 1 and "is not that action's" in warnings[0], warnings
    assert actions.remote.enabled  # a wrong answer is a miss, the remote stays on


def test_a_result_with_a_record_of_a_wrong_shape_is_a_miss(published, tmp_path):
    content, app, _ = published
    honest = record_of(content, app.key)
    shapes = [
        [1, 2],
        {**honest, "blobs": ["x"]},
        {**honest, "blobs": [{"digest": "sha256:zz", "size": 1, "mediaType": "m"}]},
        {**honest, "blobs": honest["blobs"][:1]},
        {**honest, "blobs": []},  # a digest alone: the engine would be told to tag whatever has it
        {**honest, "files": {"f": "not hex"}},
        {**honest, "created": "yesterday"},
        {**honest, "unknown": 1},
        {k: v for k, v in honest.items() if k != "kind"},
    ]
    for shape in shapes:
        ref = content.put_bytes(json.dumps(shape).encode())
        result = content.get_action_result(app.key)
        for f in result.output_files:
            if f.path == RECORD_PATH:
                f.digest.hash, f.digest.size_bytes = ref.hash, ref.size
        content.put_action_result(app.key, result)
        actions, store, warnings = fetcher(content, tmp_path / ref.hash[:8])
        assert actions.fetch(app.key) is None, shape
        assert stored(store) == set() and len(warnings) == 1, (shape, warnings)


def test_a_base_layer_fetched_after_all_is_checked_too(published, tmp_path):
    """A base layer is skipped while the engine is thought to have it, so a
    manifest may name any blob there; when it is downloaded after all
    (fetch_blobs, the engine lacking it), it must unpack to its diff_id."""
    content, app, _ = published
    record = record_of(content, app.key)
    manifest = json.loads(content.blob(record["blobs"][0]["digest"][7:]))
    stand_in = content.put_bytes(layer({"etc/os-release": b"someone else\n"})[0])  # a right blob, not the base
    manifest["layers"][0] = {"mediaType": LAYER_TYPE, "digest": f"sha256:{stand_in.hash}", "size": stand_in.size}
    forged = content.put_bytes(json.dumps(manifest).encode())
    head = {"digest": f"sha256:{forged.hash}", "size": forged.size, "mediaType": MANIFEST_TYPE}
    blobs = [head, record["blobs"][1], manifest["layers"][0], *record["blobs"][3:]]
    record.update(manifest_digest=head["digest"], blobs=blobs)
    answer(content, app.key, record, blob_outputs(record))
    actions, store, warnings = fetcher(content, tmp_path)
    got = actions.fetch(app.key, [d for _, d in BASE])
    assert got is not None and got.manifest_digest == head["digest"]  # nothing to tell yet
    assert actions.fetch_blobs(got) is False
    assert stand_in.hash not in stored(store)
    assert len(warnings) == 1 and "not what its config says" in warnings[0], warnings
