"""An image written straight into a Docker engine's containerd image store.

With the containerd image store (``{"features":{"containerd-snapshotter":
true}}``), a Docker engine keeps its images in containerd: blobs in the
content store, and a record per name (namespace ``moby``) pointing at the
manifest. ``docker load`` of an archive re-reads and re-hashes every layer it
holds, even those the engine already has; written here, only the blobs the
engine lacks are sent, and the image keeps the manifest digest of its bytes,
by construction.

What :meth:`ContainerdImageStore.put_image` does, as containerd's own
importer does it:

1. a lease, so that nothing written is collected before an image refers to it.
   Each blob is added to the lease *before* the store is asked whether it
   has it: a blob that is there but unreferenced (an export's, whose own
   lease has just ended) may otherwise be collected between the question and
   the manifest that would refer to it. The lease expires on its own after
   an hour (``containerd.io/gc.expire``), so a writer killed midway pins
   nothing for ever;
2. each blob the store lacks is written and committed under its digest
   (containerd checks the digest and size it is told to expect);
3. the manifest carries the garbage-collection labels that tie its config
   and layers to it (``containerd.io/gc.ref.content.config``, ``.l.<i>``);
4. the image record is created, or moved to the new manifest;
5. the lease is released. The engine unpacks the layers on first use, as for
   an image BuildKit exported with ``unpack=false``.

:func:`find_containerd` finds the containerd of a local Docker engine the way
one would by hand: the process listening on the engine's socket is dockerd,
and its ``--containerd`` flag (or its default, a containerd it runs under its
exec root) says where containerd listens, ``--containerd-namespace`` in which
namespace. Only local engines on unix sockets have one to find.

Written here because no Python containerd client is maintained; the protocol
is containerd's gRPC API (``buildkit/proto/ctr*.proto``, ``content.proto``).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Mapping, Sequence

import grpc

from .proto import content_pb2, content_pb2_grpc, ctrimages_pb2, ctrimages_pb2_grpc, ctrleases_pb2, \
    ctrleases_pb2_grpc

NAMESPACE_KEY = "containerd-namespace"
LEASE_KEY = "containerd-lease"
_CHUNK = 1 << 20
_LEASE_LIFE = timedelta(hours=1)  # far beyond any write; ends a killed writer's hold
_MANAGED_SOCKET = "containerd/containerd.sock"  # under dockerd's exec root, when dockerd runs its own
_DEFAULT_EXEC_ROOT = "/var/run/docker"


@dataclass(frozen=True)
class Blob:
    """One blob of an image: its digest, size and media type, and where its bytes are."""

    digest: str
    size: int
    media_type: str
    path: Path


@dataclass(frozen=True)
class ContainerdAddress:
    socket: str
    namespace: str = "moby"


def _listening_inode(path: str) -> str | None:
    try:
        with open("/proc/net/unix") as f:
            next(f, None)
            for line in f:
                parts = line.split()
                # Inode is field 7; state 01 with the listening flag: a server socket.
                if len(parts) >= 8 and parts[7] == path and parts[3] == "00010000":
                    return parts[6]
    except OSError:
        return None
    return None


def _pid_holding(inode: str) -> int | None:
    target = f"socket:[{inode}]"
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as f:
                if f.read().strip() != "dockerd":
                    continue
            for fd in os.listdir(f"/proc/{entry}/fd"):
                if os.readlink(f"/proc/{entry}/fd/{fd}") == target:
                    return int(entry)
        except OSError:
            continue
    return None


def _flag(args: Sequence[str], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def find_containerd(docker_socket: str) -> ContainerdAddress | None:
    """The containerd (and namespace) of the dockerd listening on ``docker_socket``,
    or None when it cannot be found from here (another user's process, a remote
    engine, no containerd image store)."""
    inode = _listening_inode(os.path.realpath(docker_socket)) or _listening_inode(docker_socket)
    pid = _pid_holding(inode) if inode else None
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return None
    socket = _flag(args, "--containerd") or os.path.join(_flag(args, "--exec-root") or _DEFAULT_EXEC_ROOT,
                                                         _MANAGED_SOCKET)
    if not os.path.exists(socket):
        return None
    return ContainerdAddress(socket, _flag(args, "--containerd-namespace") or "moby")


class ImageStoreError(Exception):
    """The store refused a write (a digest mismatch, a missing blob, no such namespace)."""


class ContainerdImageStore:
    """Blobs and image records of one containerd namespace."""

    def __init__(self, address: ContainerdAddress, timeout: float = 60.0) -> None:
        self.address = address
        self.timeout = timeout
        self._channel = grpc.insecure_channel(f"unix:{address.socket}")
        self._content = content_pb2_grpc.ContentStub(self._channel)
        self._images = ctrimages_pb2_grpc.ImagesStub(self._channel)
        self._leases = ctrleases_pb2_grpc.LeasesStub(self._channel)
        self._md = ((NAMESPACE_KEY, address.namespace),)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "ContainerdImageStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ reading

    def has_blob(self, digest: str) -> bool:
        try:
            self._content.Info(content_pb2.InfoRequest(digest=digest), metadata=self._md, timeout=self.timeout)
            return True
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                return False
            raise ImageStoreError(f"containerd at {self.address.socket}: {e.details()}") from None

    def image_target(self, name: str) -> str | None:
        """The digest the image record ``name`` points at, or None."""
        try:
            resp = self._images.Get(ctrimages_pb2.GetImageRequest(name=name), metadata=self._md,
                                    timeout=self.timeout)
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise ImageStoreError(f"containerd at {self.address.socket}: {e.details()}") from None
        return resp.image.target.digest

    # ------------------------------------------------------------------ writing

    def put_image(self, name: str, manifest: Blob, config: Blob, layers: Sequence[Blob],
                  labels: Mapping[str, str] | None = None) -> list[str]:
        """Store the image ``name`` (a full reference, e.g. ``docker.io/library/app:latest``)
        from its blobs; returns the digests that had to be written.

        Blobs the store already has are not read. Raises
        :class:`ImageStoreError` when the store refuses a write, or when a
        blob it lacks is not on disk either.
        """
        lease = f"buildkit-py-{secrets.token_hex(8)}"
        expires = datetime.now(timezone.utc) + _LEASE_LIFE
        try:
            self._leases.Create(ctrleases_pb2.CreateRequest(
                id=lease, labels={"containerd.io/gc.expire": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}),
                metadata=self._md, timeout=self.timeout)
        except grpc.RpcError as e:
            raise ImageStoreError(f"containerd at {self.address.socket}: {e.details()}") from None
        md = self._md + ((LEASE_KEY, lease),)
        written: list[str] = []
        try:
            gc_labels = {"containerd.io/gc.ref.content.config": config.digest}
            gc_labels.update({f"containerd.io/gc.ref.content.l.{i}": layer.digest for i, layer in enumerate(layers)})
            for blob in [*layers, config, manifest]:
                self._hold(lease, blob.digest)
            for blob in [*layers, config]:
                if not self.has_blob(blob.digest):
                    self._write(blob, md, {})
                    written.append(blob.digest)
            if self.has_blob(manifest.digest):
                self._label(manifest.digest, gc_labels, md)
            else:
                self._write(manifest, md, gc_labels)
                written.append(manifest.digest)
            self._record(name, manifest, labels or {}, md)
        except grpc.RpcError as e:
            raise ImageStoreError(f"containerd at {self.address.socket}: {e.details()}") from None
        finally:
            try:
                self._leases.Delete(ctrleases_pb2.DeleteRequest(id=lease), metadata=self._md, timeout=self.timeout)
            except grpc.RpcError:
                pass  # the lease expires with containerd's own clean-up
        return written

    def _hold(self, lease: str, digest: str) -> None:
        resource = ctrleases_pb2.Resource(id=digest, type="content")
        self._leases.AddResource(ctrleases_pb2.AddResourceRequest(id=lease, resource=resource),
                                 metadata=self._md, timeout=self.timeout)

    def _write(self, blob: Blob, md, labels: Mapping[str, str]) -> None:
        if not blob.path.is_file():
            raise ImageStoreError(f"blob {blob.digest} is neither in containerd nor at {blob.path}")
        ref = f"buildkit-py-{blob.digest}-{secrets.token_hex(4)}"  # two writers of one blob must not share a ref

        def requests():
            offset = 0
            with open(blob.path, "rb") as f:
                while True:
                    data = f.read(_CHUNK)
                    if not data:
                        break
                    yield content_pb2.WriteContentRequest(action=content_pb2.WRITE, ref=ref, total=blob.size,
                                                          expected=blob.digest, offset=offset, data=data)
                    offset += len(data)
            yield content_pb2.WriteContentRequest(action=content_pb2.COMMIT, ref=ref, total=blob.size,
                                                  expected=blob.digest, offset=offset, labels=dict(labels))

        try:
            for _ in self._content.Write(requests(), metadata=md, timeout=self.timeout):
                pass
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.ALREADY_EXISTS:
                if labels:
                    self._label(blob.digest, labels, md)
                return
            raise

    def _label(self, digest: str, labels: Mapping[str, str], md) -> None:
        info = content_pb2.Info(digest=digest, labels=dict(labels))
        req = content_pb2.UpdateRequest(info=info)
        req.update_mask.paths.extend(f"labels.{k}" for k in labels)
        self._content.Update(req, metadata=md, timeout=self.timeout)

    def _record(self, name: str, manifest: Blob, labels: Mapping[str, str], md) -> None:
        image = ctrimages_pb2.Image(name=name, labels=dict(labels))
        image.target.media_type = manifest.media_type
        image.target.digest = manifest.digest
        image.target.size = manifest.size
        try:
            self._images.Create(ctrimages_pb2.CreateImageRequest(image=image), metadata=md, timeout=self.timeout)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise
            req = ctrimages_pb2.UpdateImageRequest(image=image)
            req.update_mask.paths.extend(["target", "labels"])
            self._images.Update(req, metadata=md, timeout=self.timeout)
