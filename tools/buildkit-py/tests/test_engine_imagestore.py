"""Writing an image straight into the engine's containerd image store: the
engine sees it under the manifest digest of its bytes, runs it, and only the
blobs it lacked were written."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import grpc
import pytest

from buildkit import SolveRequest, exporters, llb
from buildkit.dockerhost import from_environment
from buildkit.imagestore import LEASE_KEY, Blob, ContainerdImageStore, ImageStoreError, find_containerd
from buildkit.proto import ctrleases_pb2

from bk_testenv import BASE_IMAGE, docker


@pytest.fixture(scope="module")
def store():
    host = from_environment()
    assert host.scheme == "unix", f"these tests need a local engine on a unix socket, not {host}"
    address = find_containerd(host.path)
    assert address is not None, f"no containerd found for the dockerd on {host.path}"
    with ContainerdImageStore(address) as s:
        yield s


def oci_blobs(buildkit, tmp_path: Path, marker: str, name: str):
    st = llb.image(BASE_IMAGE).run(["sh", "-c", f"echo {marker} > /marker.txt"]).root()
    tar = tmp_path / "image.tar"
    result = buildkit.solve(SolveRequest(definition=st, exports=(exporters.oci_tarball(tar, name, st.image_config()),)))
    out = tmp_path / "layout"
    with tarfile.open(tar) as t:
        t.extractall(out, filter="data")
    desc = json.loads((out / "index.json").read_text())["manifests"][0]
    manifest = json.loads((out / "blobs/sha256" / desc["digest"].split(":")[1]).read_bytes())

    def blob(d: dict) -> Blob:
        return Blob(d["digest"], d["size"], d["mediaType"], out / "blobs/sha256" / d["digest"].split(":")[1])

    return result.manifest_digest, blob(desc), blob(manifest["config"]), [blob(d) for d in manifest["layers"]]


def test_an_image_written_into_the_store_runs_under_its_manifest_digest(buildkit, store, tmp_path, run_id):
    ref = f"docker.io/library/buildkit-test-imagestore-{run_id}:latest"
    digest, manifest, config, layers = oci_blobs(buildkit, tmp_path, f"marker-{run_id}", ref)
    assert manifest.digest == digest
    try:
        written = store.put_image(ref, manifest, config, layers)
        assert set(written) <= {manifest.digest, config.digest, *(l.digest for l in layers)}
        assert store.image_target(ref) == digest
        inspect = docker("image", "inspect", "-f", "{{.Id}}", ref)
        assert inspect.stdout.decode().strip() == digest, inspect.stderr
        run = docker("run", "--rm", ref, "cat", "/marker.txt")
        assert run.stdout.decode() == f"marker-{run_id}\n", run.stderr
        # A second write of the same image writes nothing.
        assert store.put_image(ref, manifest, config, layers) == []
    finally:
        docker("rmi", "-f", ref)


class _CollectsAfterLookup(ContainerdImageStore):
    """A store whose garbage collector runs at the worst moment: just after
    ``has_blob`` has answered yes for ``digest``, the only lease that held it
    is deleted with a synchronous collection."""

    def __init__(self, address, digest: str, other_lease: str) -> None:
        super().__init__(address)
        self.digest, self.other_lease, self.collected = digest, other_lease, False

    def has_blob(self, digest: str) -> bool:
        found = super().has_blob(digest)
        if found and digest == self.digest and not self.collected:
            self._leases.Delete(ctrleases_pb2.DeleteRequest(id=self.other_lease, sync=True), metadata=self._md)
            self.collected = True
        return found


def test_a_blob_found_unreferenced_is_held_until_the_image_refers_to_it(buildkit, store, tmp_path, run_id):
    # What a build's export leaves: a manifest in the store that only the
    # export's lease holds. That lease ends, and the collector runs, between
    # put_image's lookup and its use of the blob.
    ref = f"docker.io/library/buildkit-test-imagestore-gc-{run_id}:latest"
    _, manifest, config, layers = oci_blobs(buildkit, tmp_path, f"gc-{run_id}", ref)
    other = f"buildkit-test-{run_id}"
    store._leases.Create(ctrleases_pb2.CreateRequest(id=other), metadata=store._md)
    try:
        store._hold(other, manifest.digest)
        store._write(manifest, store._md + ((LEASE_KEY, other),), {})
        assert store.has_blob(manifest.digest)
        with _CollectsAfterLookup(store.address, manifest.digest, other) as racing:
            racing.put_image(ref, manifest, config, layers)
            assert racing.collected
        assert store.has_blob(manifest.digest), "the manifest was collected although an image refers to it"
        assert store.image_target(ref) == manifest.digest
        run = docker("run", "--rm", ref, "cat", "/marker.txt")
        assert run.stdout.decode() == f"gc-{run_id}\n", run.stderr
    finally:
        docker("rmi", "-f", ref)
        try:
            store._leases.Delete(ctrleases_pb2.DeleteRequest(id=other), metadata=store._md)
        except grpc.RpcError:
            pass  # already deleted by the race


def test_a_blob_neither_in_the_store_nor_on_disk_is_refused(buildkit, store, tmp_path, run_id):
    ref = f"docker.io/library/buildkit-test-imagestore-missing-{run_id}:latest"
    _, manifest, config, layers = oci_blobs(buildkit, tmp_path, f"other-{run_id}", ref)
    bogus = Blob("sha256:" + "2" * 64, 10, layers[-1].media_type, tmp_path / "nowhere")
    with pytest.raises(ImageStoreError, match="neither in containerd nor at"):
        store.put_image(ref, manifest, config, [*layers[:-1], bogus])
    assert store.image_target(ref) is None


def test_a_wrong_digest_is_refused_by_containerd(store, tmp_path, run_id):
    data = tmp_path / "blob"
    data.write_bytes(b"not what the digest says")
    liar = Blob("sha256:" + "3" * 64, data.stat().st_size, "application/octet-stream", data)
    with pytest.raises(ImageStoreError):
        store.put_image(f"docker.io/library/buildkit-test-imagestore-liar-{run_id}:latest", liar, liar, [])


def test_no_containerd_for_a_socket_nobody_listens_on(tmp_path):
    assert find_containerd(str(tmp_path / "nothing.sock")) is None
