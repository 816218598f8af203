"""A Remote Execution API v2 cache client (``grpc://`` / ``grpcs://``).

Speaks to the ActionCache, ContentAddressableStorage, Capabilities and
ByteStream services of one instance:

* the first call asks GetCapabilities (within the connect bound) and checks
  that SHA-256 is offered; it notes whether clients may update the action
  cache and the largest batch the server takes;
* blobs up to :data:`BYTESTREAM_THRESHOLD` (and within the batch limit) go
  through BatchUpdateBlobs / BatchReadBlobs; larger ones are streamed through
  ByteStream Write (``{instance}/uploads/{uuid}/blobs/{hash}/{size}``) and
  Read (``{instance}/blobs/{hash}/{size}``), a piece at a time, so a big file
  is never held in memory;
* every call carries the configured headers as metadata, and the deadline
  of the operation it belongs to (see :mod:`.base`): GetCapabilities, the
  retries of a busy server, and each batch or stream of a multi-blob
  operation all share it, each gRPC call being given what is left as its
  own deadline, which gRPC enforces whatever the peer does (a stalled
  stream, a connection never accepted, a drip of bytes). Waiting for
  another thread's GetCapabilities answer is bounded by it too.

mbuild's action keys are not digests of REAPI ``Action`` messages (mbuild
computes its own keys, see :mod:`mbuild.cache.keys`), so there is no true
size to pair with the hash. The action digest is ``{hash: key,
size_bytes: ACTION_KEY_SIZE}``: a fixed convention every mbuild agrees on,
nonzero so that servers which reject a zero size for a non-empty hash accept
it.
"""

from __future__ import annotations

import random
import re
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Callable, Iterable, Iterator, Mapping, Sequence, TypeVar

import grpc

from .base import (
    CHUNK,
    BlobRef,
    BlobSink,
    CorruptBlob,
    Deadline,
    Limits,
    RemoteAddress,
    RemoteError,
    SourceMismatch,
    TlsConfig,
    UpdatesDisabled,
    basic_auth_header,
    verified_chunks,
    write_verified,
)
from .proto import bytestream_pb2 as bs_pb2
from .proto import bytestream_pb2_grpc as bs_grpc
from .proto import remote_execution_pb2 as re_pb2
from .proto import remote_execution_pb2_grpc as re_grpc

ACTION_KEY_SIZE = 32  # see the module docstring
BYTESTREAM_THRESHOLD = 1 << 20  # blobs above this are streamed, whatever the batch limit
GRPC_MESSAGE_LIMIT = 4 << 20  # the default gRPC message size most servers keep
REQUEST_OVERHEAD = 1 << 10  # instance name, framing: bytes kept free in every batch
PER_BLOB_OVERHEAD = 128  # digest and framing of one blob inside a batch
MAX_BATCH_COUNT = 500  # blobs per batch request
FIND_MISSING_CHUNK = 5000  # digests per FindMissingBlobs request
_SHA256 = re_pb2.DigestFunction.SHA256
_HEX64 = re.compile(r"[0-9a-f]{64}")

_NOT_FOUND = 5  # google.rpc.Code
# Answers that mean "not now": BuildGrid, for one, answers RESOURCE_EXHAUSTED
# ("Concurrent RPC limit exceeded") when more calls are in flight than its
# thread pool takes. Retried with backoff within the call's deadline.
RETRY_CODES = frozenset({grpc.StatusCode.RESOURCE_EXHAUSTED})
_MIN_ATTEMPT = 0.05  # seconds: the least time worth starting one more attempt with
T = TypeVar("T")


# ---------------------------------------------------------------- pure helpers


def read_resource_name(instance_name: str, blob: BlobRef) -> str:
    """The ByteStream resource to read *blob* from."""
    prefix = f"{instance_name.strip('/')}/" if instance_name.strip("/") else ""
    return f"{prefix}blobs/{blob.hash}/{blob.size}"


def write_resource_name(instance_name: str, blob: BlobRef, upload_id: str | None = None) -> str:
    """The ByteStream resource to write *blob* to; a fresh upload id each time."""
    prefix = f"{instance_name.strip('/')}/" if instance_name.strip("/") else ""
    return f"{prefix}uploads/{upload_id or uuid.uuid4()}/blobs/{blob.hash}/{blob.size}"


def batch_limit(server_max_batch_total_size_bytes: int) -> int:
    """Bytes one batch request may carry: the server's limit (0 means none
    announced) capped by the gRPC message limit, less room for framing."""
    cap = GRPC_MESSAGE_LIMIT
    if server_max_batch_total_size_bytes > 0:
        cap = min(cap, server_max_batch_total_size_bytes)
    return max(0, cap - REQUEST_OVERHEAD)


def use_bytestream(size: int, limit: int) -> bool:
    """Whether a blob of *size* bytes travels by ByteStream rather than in a batch."""
    return size > BYTESTREAM_THRESHOLD or size + PER_BLOB_OVERHEAD > limit


def plan_batches(
    blobs: Sequence[BlobRef], limit: int, max_count: int = MAX_BATCH_COUNT
) -> tuple[list[list[BlobRef]], list[BlobRef]]:
    """Split *blobs* into batches of at most *limit* bytes (with per-blob
    overhead) and *max_count* blobs, in order, and the list of blobs that must
    be streamed instead. Duplicates are dropped."""
    batches: list[list[BlobRef]] = []
    streamed: list[BlobRef] = []
    current: list[BlobRef] = []
    total = 0
    seen: set[BlobRef] = set()
    for b in blobs:
        if b in seen:
            continue
        seen.add(b)
        if use_bytestream(b.size, limit):
            streamed.append(b)
            continue
        cost = b.size + PER_BLOB_OVERHEAD
        if current and (total + cost > limit or len(current) >= max_count):
            batches.append(current)
            current, total = [], 0
        current.append(b)
        total += cost
    if current:
        batches.append(current)
    return batches, streamed


def _digest(blob: BlobRef) -> re_pb2.Digest:
    return re_pb2.Digest(hash=blob.hash, size_bytes=blob.size)


def _action_digest(key_hex: str) -> re_pb2.Digest:
    if not _HEX64.fullmatch(key_hex):
        raise ValueError(f"action key must be a lowercase hex sha256, got {key_hex!r}")
    return re_pb2.Digest(hash=key_hex, size_bytes=ACTION_KEY_SIZE)


def _short(details: str | None) -> str:
    d = (details or "").strip()
    low = d.lower()
    if "connection refused" in low:
        return "connection refused"
    if "dns resolution failed" in low or "name or service not known" in low:
        return "cannot resolve the host"
    if "certificate_verify_failed" in low or "certificate verify failed" in low:
        return "TLS failure: the server's certificate is not trusted; check the CA certificate"
    if "ssl" in low or "handshake" in low or "certificate" in low or "tls" in low:
        m = re.search(r"(?:OPENSSL_internal|SSL routines):([A-Z_]+)", d)
        return f"TLS failure: {m.group(1).lower().replace('_', ' ')}" if m else f"TLS failure: {d[-120:]}"
    return d[:200] or "no details"


def rpc_error(e: grpc.RpcError, deadline: Deadline) -> RemoteError:
    """A :class:`RemoteError` with a short reason for a gRPC failure."""
    code = e.code() if hasattr(e, "code") else None
    details = e.details() if hasattr(e, "details") else str(e)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return deadline.exceeded()
    if code == grpc.StatusCode.UNAVAILABLE:
        return RemoteError(_short(details))
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return RemoteError(f"not authenticated ({_short(details)}); check the credentials")
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return RemoteError(f"permission denied ({_short(details)}); check the credentials")
    name = code.name.lower() if code is not None else "error"
    return RemoteError(f"{name}: {_short(details)}")


@dataclass(frozen=True)
class ServerInfo:
    """What GetCapabilities said (defaults when the server does not say)."""

    digest_functions: tuple[int, ...] = ()
    update_enabled: bool = True
    max_batch_total_size_bytes: int = 0
    max_cas_blob_size_bytes: int = 0


# ---------------------------------------------------------------- client


class ReapiCache:
    """A REAPI v2 remote cache client; see the module docstring."""

    def __init__(
        self,
        addr: RemoteAddress,
        *,
        headers: Mapping[str, str] = MappingProxyType({}),
        tls: TlsConfig | None = None,
        limits: Limits = Limits(),
        channel: grpc.Channel | None = None,
    ) -> None:
        self.name = addr.display()
        self.instance_name = addr.instance_name
        self.limits = limits
        self.timeout = limits.timeout
        self.connect_timeout = limits.connect_timeout
        md: list[tuple[str, str]] = []
        names = {k.lower() for k in headers}
        if addr.username is not None and "authorization" not in names:
            md.append(("authorization", basic_auth_header(addr.username, addr.password)))
        md += [(k.lower(), v) for k, v in headers.items()]
        self._metadata = tuple(md)
        options = [
            ("grpc.max_receive_message_length", 64 << 20),
            ("grpc.max_send_message_length", 64 << 20),
            ("grpc.primary_user_agent", "mbuild"),
            ("grpc.enable_retries", 0),
            ("grpc.enable_http_proxy", 0),  # direct, like the HTTP client (Bazel does the same)
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 2000),
        ]
        if channel is None:
            if addr.secure:
                channel = grpc.secure_channel(addr.hostport, _credentials(tls), options)
            else:
                channel = grpc.insecure_channel(addr.hostport, options)
        self._channel = channel
        self._ac = re_grpc.ActionCacheStub(channel)
        self._cas = re_grpc.ContentAddressableStorageStub(channel)
        self._caps_stub = re_grpc.CapabilitiesStub(channel)
        self._bs = bs_grpc.ByteStreamStub(channel)
        self._lock = threading.Lock()
        self._info: ServerInfo | None = None

    # ------------------------------------------------------------ setup

    def server_info(self, deadline: Deadline | None = None) -> ServerInfo:
        """Ask GetCapabilities once (within the connect bound, so a down
        server is found out quickly, and within *deadline*, the operation's
        that needs it) and check SHA-256 is offered."""
        if self._info is not None:
            return self._info
        deadline = deadline or self.limits.deadline()
        if not self._lock.acquire(timeout=deadline.left()):  # another thread is asking
            raise deadline.exceeded()
        try:
            if self._info is None:
                self._info = self._ask_capabilities(deadline.within(self.connect_timeout))
            return self._info
        finally:
            self._lock.release()

    def _ask_capabilities(self, deadline: Deadline) -> ServerInfo:
        req = re_pb2.GetCapabilitiesRequest(instance_name=self.instance_name)
        try:
            caps = self._retrying(
                lambda t: self._caps_stub.GetCapabilities(req, timeout=t, metadata=self._metadata, wait_for_ready=False),
                deadline,
            )
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNIMPLEMENTED:
                raise rpc_error(e, deadline) from None
            info = ServerInfo()  # a cache without Capabilities: assume the defaults
        else:
            cc = caps.cache_capabilities
            update_enabled = True
            if caps.HasField("cache_capabilities") and cc.HasField("action_cache_update_capabilities"):
                update_enabled = cc.action_cache_update_capabilities.update_enabled
            info = ServerInfo(
                digest_functions=tuple(cc.digest_functions),
                update_enabled=update_enabled,
                max_batch_total_size_bytes=cc.max_batch_total_size_bytes,
                max_cas_blob_size_bytes=cc.max_cas_blob_size_bytes,
            )
        if info.digest_functions and _SHA256 not in info.digest_functions:
            names = ", ".join(re_pb2.DigestFunction.Value.Name(v) for v in info.digest_functions)
            raise RemoteError(f"server does not offer SHA-256 digests (only {names})")
        return info

    def _batch_limit(self, deadline: Deadline) -> int:
        return batch_limit(self.server_info(deadline).max_batch_total_size_bytes)

    @staticmethod
    def _retrying(attempt: Callable[[float], T], deadline: Deadline) -> T:
        """Run ``attempt(seconds_left)`` until it succeeds, fails for good, or
        *deadline* passes; :data:`RETRY_CODES` are retried with jittered
        exponential backoff. Raises the last ``grpc.RpcError``, or
        :class:`RemoteTimeout` when no time is left for an attempt."""
        delay = 0.02
        while True:
            try:
                return attempt(deadline.left())
            except grpc.RpcError as e:
                pause = delay * (0.5 + random.random())
                # Another attempt needs time to answer: with less than
                # _MIN_ATTEMPT left it would only turn this error into a timeout.
                if e.code() not in RETRY_CODES or deadline.remaining() <= pause + _MIN_ATTEMPT:
                    raise
                time.sleep(pause)
                delay = min(delay * 2, 0.5)

    def _call(self, method, request, deadline: Deadline):
        try:
            return self._retrying(lambda left: method(request, timeout=left, metadata=self._metadata), deadline)
        except grpc.RpcError as e:
            raise rpc_error(e, deadline) from None

    # ------------------------------------------------------------ action cache

    def get_action_result(self, key_hex: str) -> re_pb2.ActionResult | None:
        digest = _action_digest(key_hex)
        deadline = self.limits.deadline()
        self.server_info(deadline)
        req = re_pb2.GetActionResultRequest(
            instance_name=self.instance_name, action_digest=digest, digest_function=_SHA256
        )
        try:
            return self._retrying(
                lambda t: self._ac.GetActionResult(req, timeout=t, metadata=self._metadata), deadline
            )
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise rpc_error(e, deadline) from None

    def put_action_result(self, key_hex: str, result: re_pb2.ActionResult) -> None:
        digest = _action_digest(key_hex)
        deadline = self.limits.deadline()
        if not self.server_info(deadline).update_enabled:
            raise UpdatesDisabled("the server does not let clients update the action cache")
        req = re_pb2.UpdateActionResultRequest(
            instance_name=self.instance_name, action_digest=digest, action_result=result, digest_function=_SHA256
        )
        try:
            self._retrying(
                lambda t: self._ac.UpdateActionResult(req, timeout=t, metadata=self._metadata), deadline
            )
        except grpc.RpcError as e:
            if e.code() in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.PERMISSION_DENIED):
                raise UpdatesDisabled(f"{e.code().name.lower()}: {_short(e.details())}") from None
            raise rpc_error(e, deadline) from None

    # ------------------------------------------------------------ CAS

    def find_missing(self, blobs: Iterable[BlobRef]) -> set[BlobRef]:
        wanted = {b for b in blobs if not b.is_empty}  # the empty blob is always there
        if not wanted:
            return set()
        deadline = self.limits.deadline()
        self.server_info(deadline)
        by_key = {(b.hash, b.size): b for b in wanted}
        ordered = list(wanted)
        missing: set[BlobRef] = set()
        for i in range(0, len(ordered), FIND_MISSING_CHUNK):
            req = re_pb2.FindMissingBlobsRequest(
                instance_name=self.instance_name,
                blob_digests=[_digest(b) for b in ordered[i : i + FIND_MISSING_CHUNK]],
                digest_function=_SHA256,
            )
            resp = self._call(self._cas.FindMissingBlobs, req, deadline)
            for d in resp.missing_blob_digests:
                b = by_key.get((d.hash, d.size_bytes))
                if b is not None:
                    missing.add(b)
        return missing

    def put_blob(self, blob: BlobRef, source: bytes | Path) -> None:
        self.put_blobs([(blob, source)])

    def put_blobs(self, items: Iterable[tuple[BlobRef, bytes | Path]]) -> None:
        """Upload several blobs within one deadline: small ones together in
        batches, big ones streamed. Blobs over the server's
        ``max_cas_blob_size_bytes`` are skipped (the server would refuse them)."""
        sources: dict[BlobRef, bytes | Path] = {}
        for blob, source in items:
            sources.setdefault(blob, source)
        for blob in [b for b in sources if b.is_empty]:
            for _ in verified_chunks(blob, sources.pop(blob)):  # checks the source is empty
                pass
        if not sources:
            return
        deadline = self.limits.deadline(sum(b.size for b in sources))
        cap = self.server_info(deadline).max_cas_blob_size_bytes
        if cap > 0:  # the server would refuse these: a cache may simply not hold them
            for blob in [b for b in sources if b.size > cap]:
                del sources[blob]
        batches, streamed = plan_batches(list(sources), self._batch_limit(deadline))
        for batch in batches:
            self._batch_update(batch, sources, deadline)
        for blob in streamed:
            self._write(blob, sources[blob], deadline)

    def _batch_update(self, batch: list[BlobRef], sources: Mapping[BlobRef, bytes | Path], deadline: Deadline) -> None:
        req = re_pb2.BatchUpdateBlobsRequest(instance_name=self.instance_name, digest_function=_SHA256)
        for blob in batch:
            data = b"".join(chunk for chunk, _ in verified_chunks(blob, sources[blob]))
            req.requests.add(digest=_digest(blob), data=data)
        resp = self._call(self._cas.BatchUpdateBlobs, req, deadline)
        for r in resp.responses:
            if r.status.code != 0:
                raise RemoteError(
                    f"upload of blob {r.digest.hash[:12]}… refused (code {r.status.code}: {_short(r.status.message)})"
                )

    def _write(self, blob: BlobRef, source: bytes | Path, deadline: Deadline) -> None:
        resource = write_resource_name(self.instance_name, blob)
        problem: list[SourceMismatch] = []

        def requests() -> Iterator[bs_pb2.WriteRequest]:
            offset = 0
            try:
                for data, last in verified_chunks(blob, source, CHUNK):
                    yield bs_pb2.WriteRequest(
                        resource_name=resource if offset == 0 else "",
                        write_offset=offset,
                        finish_write=last,
                        data=data,
                    )
                    offset += len(data)
            except SourceMismatch as e:  # cut the stream before its last piece
                problem.append(e)
                raise

        try:
            resp = self._retrying(lambda left: self._bs.Write(requests(), timeout=left, metadata=self._metadata), deadline)
        except grpc.RpcError as e:
            if problem:
                raise problem[0] from None
            raise rpc_error(e, deadline) from None
        if problem:
            raise problem[0]
        if resp.committed_size not in (blob.size, -1):
            raise RemoteError(f"ByteStream write of {blob} committed {resp.committed_size} bytes")

    def get_blob(self, blob: BlobRef, dest: Path) -> bool:
        return self.get_blobs([(blob, dest)])[blob]

    def get_blobs(self, items: Iterable[tuple[BlobRef, Path]]) -> dict[BlobRef, bool]:
        """Download several blobs within one deadline; small ones together in
        batches. Each value says whether that blob was found (and written, verified)."""
        dests: dict[BlobRef, list[Path]] = {}
        for blob, dest in items:
            dests.setdefault(blob, []).append(Path(dest))
        found: dict[BlobRef, bool] = {}
        for blob in [b for b in dests if b.is_empty]:
            for dest in dests.pop(blob):
                write_verified(blob, b"", dest)
            found[blob] = True
        if not dests:
            return found
        deadline = self.limits.deadline(sum(b.size for b in dests))
        batches, streamed = plan_batches(list(dests), self._batch_limit(deadline))
        corrupt: CorruptBlob | None = None
        for batch in batches:
            got, bad = self._batch_read(batch, dests, deadline)
            found.update(got)
            corrupt = corrupt or bad
        for blob in streamed:
            try:
                found[blob] = self._read(blob, dests[blob], deadline)
            except CorruptBlob as e:
                found[blob] = False
                corrupt = corrupt or e
        if corrupt is not None:  # the good ones are written; report the bad one
            raise CorruptBlob(corrupt.reason, corrupt.blob, found=found)
        return found

    def _batch_read(
        self, batch: list[BlobRef], dests: Mapping[BlobRef, list[Path]], deadline: Deadline
    ) -> tuple[dict[BlobRef, bool], CorruptBlob | None]:
        req = re_pb2.BatchReadBlobsRequest(
            instance_name=self.instance_name, digests=[_digest(b) for b in batch], digest_function=_SHA256
        )
        resp = self._call(self._cas.BatchReadBlobs, req, deadline)
        found = {b: False for b in batch}
        by_key = {(b.hash, b.size): b for b in batch}
        corrupt: CorruptBlob | None = None
        for r in resp.responses:
            blob = by_key.get((r.digest.hash, r.digest.size_bytes))
            if blob is None or r.status.code == _NOT_FOUND:
                continue
            if r.status.code != 0:
                raise RemoteError(
                    f"read of blob {blob.hash[:12]}… failed (code {r.status.code}: {_short(r.status.message)})"
                )
            if r.compressor != re_pb2.Compressor.IDENTITY:
                corrupt = CorruptBlob(f"blob {blob.hash[:12]}… came compressed, unasked", blob)
                continue
            try:
                for dest in dests[blob]:
                    write_verified(blob, r.data, dest)
            except CorruptBlob as e:
                corrupt = corrupt or e
                continue
            found[blob] = True
        return found, corrupt

    def _read(self, blob: BlobRef, dests: list[Path], deadline: Deadline) -> bool:
        req = bs_pb2.ReadRequest(resource_name=read_resource_name(self.instance_name, blob))
        first, *others = dests

        def attempt(left: float) -> None:
            call = self._bs.Read(req, timeout=left, metadata=self._metadata)
            try:
                with BlobSink(blob, first) as sink:  # a fresh one for each attempt
                    for piece in call:
                        sink.write(piece.data)
                    sink.commit()
            finally:
                call.cancel()  # ends the stream if we stopped early; a no-op once it is done

        try:
            self._retrying(attempt, deadline)
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                return False
            raise rpc_error(e, deadline) from None
        for dest in others:
            with BlobSink(blob, dest) as sink, open(first, "rb") as f:
                while chunk := f.read(CHUNK):
                    sink.write(chunk)
                sink.commit()
        return True

    def close(self) -> None:
        self._channel.close()

    def __repr__(self) -> str:
        return f"ReapiCache({self.name!r})"


def _credentials(tls: TlsConfig | None) -> grpc.ChannelCredentials:
    if tls is None:
        return grpc.ssl_channel_credentials()

    def read(p) -> bytes | None:
        return Path(p).read_bytes() if p is not None else None

    return grpc.ssl_channel_credentials(
        root_certificates=read(tls.ca_cert),
        private_key=read(tls.client_key),
        certificate_chain=read(tls.client_cert),
    )


__all__ = [
    "ACTION_KEY_SIZE",
    "BYTESTREAM_THRESHOLD",
    "ReapiCache",
    "ServerInfo",
    "batch_limit",
    "plan_batches",
    "read_resource_name",
    "use_bytestream",
    "write_resource_name",
]
