"""A client-side content store served on the session: a directory in OCI
layout (``blobs/sha256/<hex>``, ``index.json``) that BuildKit's ``local``
cache exporter writes to and its importer reads from.

BuildKit reaches it with containerd's content API on the session, choosing
the store by the call metadata ``buildkit-attachable-store-id``
(``local:<dir>``). After a solve the client records the exported cache
manifest in the directory's ``index.json`` under a tag; before a solve it
looks the tag up to tell the importer which manifest to start from.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Mapping

import grpc

from .proto import content_pb2, content_pb2_grpc

STORE_HEADER = "buildkit-attachable-store-id"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
_CHUNK = 1 << 20


def store_id(directory: str | os.PathLike[str]) -> str:
    return f"local:{directory}"


def _blob(root: Path, digest: str) -> Path:
    algo, _, hexd = digest.partition(":")
    if algo != "sha256" or len(hexd) != 64 or not all(c in "0123456789abcdef" for c in hexd):
        raise ValueError(f"unsupported digest {digest!r}")
    return root / "blobs" / "sha256" / hexd


class ContentStoreService(content_pb2_grpc.ContentServicer):
    methods = tuple(f"/containerd.services.content.v1.Content/{m}" for m in ("Info", "Read", "Status", "Write"))

    def __init__(self, stores: Mapping[str, Path]) -> None:
        self._stores = {k: Path(v) for k, v in stores.items()}
        self._lock = threading.Lock()

    def register(self, server: grpc.Server) -> None:
        content_pb2_grpc.add_ContentServicer_to_server(self, server)

    def _root(self, context) -> Path:
        ids = [v for k, v in context.invocation_metadata() if k == STORE_HEADER]
        root = self._stores.get(ids[0]) if ids else None
        if root is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown content store {ids[:1]}")
        return root

    def Info(self, request, context):  # noqa: N802
        root = self._root(context)
        try:
            st = _blob(root, request.digest).stat()
        except (OSError, ValueError):
            context.abort(grpc.StatusCode.NOT_FOUND, f"content {request.digest} not found")
        info = content_pb2.Info(digest=request.digest, size=st.st_size)
        info.created_at.FromNanoseconds(st.st_mtime_ns)
        info.updated_at.FromNanoseconds(st.st_mtime_ns)
        return content_pb2.InfoResponse(info=info)

    def Read(self, request, context):  # noqa: N802
        root = self._root(context)
        try:
            f = open(_blob(root, request.digest), "rb")
        except (OSError, ValueError):
            context.abort(grpc.StatusCode.NOT_FOUND, f"content {request.digest} not found")
        with f:
            offset = max(0, request.offset)
            f.seek(offset)
            remaining = request.size if request.size > 0 else None
            while remaining is None or remaining > 0:
                data = f.read(_CHUNK if remaining is None else min(_CHUNK, remaining))
                if not data:
                    break
                yield content_pb2.ReadContentResponse(offset=offset, data=data)
                offset += len(data)
                if remaining is not None:
                    remaining -= len(data)

    def Status(self, request, context):  # noqa: N802
        return content_pb2.StatusResponse()

    def Write(self, request_iterator, context):  # noqa: N802
        root = self._root(context)
        started = time.time_ns()
        # Each write has a temp file of its own in the store's folder. (A shared ingest folder, made by
        # each write and removed by the last, raced: one write's rmdir fell between another's mkdir and
        # its check of it, and the export failed with EEXIST.)
        root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=root, prefix=".ingest-", suffix=".part")
        out = os.fdopen(fd, "w+b")
        h = hashlib.sha256()
        offset, total, expected = 0, 0, ""
        try:
            for req in request_iterator:
                total = req.total or total
                expected = req.expected or expected
                if expected and offset == 0 and not req.data:
                    try:
                        if _blob(root, expected).exists():
                            context.abort(grpc.StatusCode.ALREADY_EXISTS, f"content {expected} exists")
                    except ValueError:
                        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unsupported digest {expected!r}")
                if req.data:
                    if req.offset != offset:
                        if req.offset != 0:
                            context.abort(grpc.StatusCode.OUT_OF_RANGE, f"write at {req.offset}, have {offset}")
                        out.seek(0)
                        out.truncate()
                        h, offset = hashlib.sha256(), 0
                    out.write(req.data)
                    h.update(req.data)
                    offset += len(req.data)
                resp = content_pb2.WriteContentResponse(action=req.action, offset=offset, total=total)
                resp.started_at.FromNanoseconds(started)
                resp.updated_at.FromNanoseconds(time.time_ns())
                if req.action == content_pb2.COMMIT:
                    digest = "sha256:" + h.hexdigest()
                    if total and offset != total:
                        context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"size {offset} != {total}")
                    if expected and digest != expected:
                        context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"digest {digest} != {expected}")
                    out.flush()
                    dest = _blob(root, digest)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(tmp, dest)
                    resp.digest = digest
                    yield resp
                    return
                yield resp
        finally:
            out.close()
            if os.path.exists(tmp):
                os.unlink(tmp)


def read_tag(directory: Path, tag: str) -> str | None:
    """The manifest digest ``index.json`` names for ``tag``, if any."""
    try:
        index = json.loads((Path(directory) / "index.json").read_text())
    except (OSError, ValueError):
        return None
    for m in index.get("manifests") or ():
        if (m.get("annotations") or {}).get("org.opencontainers.image.ref.name") == tag:
            return m.get("digest")
    return None


def write_tag(directory: Path, tag: str, descriptor: Mapping) -> None:
    """Name ``descriptor`` ``tag`` in ``index.json`` (atomically; other tags kept)."""
    directory = Path(directory)
    path = directory / "index.json"
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError):
        index = {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": []}
    keep = [m for m in index.get("manifests") or ()
            if (m.get("annotations") or {}).get("org.opencontainers.image.ref.name") != tag]
    entry = dict(descriptor)
    entry["annotations"] = {**(entry.get("annotations") or {}), "org.opencontainers.image.ref.name": tag}
    index["manifests"] = keep + [entry]
    (directory / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".index-")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(index, f)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
