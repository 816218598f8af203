"""The interface every remote cache client offers, and what they share.

Two protocols are spoken, both keyed by SHA-256:

* the Remote Execution API v2 cache services over gRPC (``grpc://``,
  ``grpcs://``), see :mod:`.reapi`;
* the Bazel HTTP cache protocol (``http://``, ``https://``): ``/ac/<key>``
  holds a serialized ``ActionResult``, ``/cas/<sha256>`` a blob, see
  :mod:`.http`.

The clients here raise :class:`RemoteError` (or a subclass) on every failure;
:class:`~.safe.SafeRemote` turns those into cache misses, so a remote cache
can never fail a build. Blob bytes are always checked against their digest
before they reach the caller: a client writes a downloaded blob to its
destination only once its SHA-256 and size match.

Deadlines
---------
Every operation (one call of a :class:`RemoteCache` method: an action
result read or write, a FindMissing, a batch of blob reads or writes, and
the GetCapabilities a gRPC client asks first) has one :class:`Deadline`,
set from the client's :class:`Limits` when the operation starts::

    seconds = timeout + bytes / min_rate     # bytes: the blobs it moves, 0 for the rest

It is shared by everything the operation does (resolving the host,
connecting, TLS, retries, several requests or batches), and each blocking
step is given what is left of it as its own limit (:meth:`Deadline.left`):
the gRPC call deadline for REAPI, the timeout of every single socket send
and receive for HTTP. No step can wait past the deadline, so the operation
ends by it whatever the peer does: a server that drips one byte a second,
stops after its headers or halfway through a body, or never accepts the
connection makes the operation fail with :class:`RemoteTimeout` on time
(the small margin is the time to notice: the scheduler's wake-up, a
socket being closed). Reaching the server is bounded further, by
``min(2 s, timeout)``, so a dead address is found out quickly.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, BinaryIO, Iterable, Iterator, Mapping, Protocol, runtime_checkable

if TYPE_CHECKING:  # the generated module is imported lazily by the clients
    from .proto.remote_execution_pb2 import ActionResult

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
CHUNK = 1 << 20  # streaming unit for files, downloads and ByteStream messages
DEFAULT_TIMEOUT = 10.0  # seconds one operation may take, bytes aside (see "Deadlines")
MAX_CONNECT_TIMEOUT = 2.0  # seconds to reach the server
MIN_TRANSFER_RATE = 1 << 20  # bytes/s a transfer is granted on top of the timeout


@dataclass(frozen=True)
class BlobRef:
    """A blob's name in a content-addressed store: hex SHA-256 and size."""

    hash: str
    size: int

    def __post_init__(self) -> None:
        if len(self.hash) != 64 or any(c not in "0123456789abcdef" for c in self.hash):
            raise ValueError(f"not a lowercase hex sha256: {self.hash!r}")
        if self.size < 0:
            raise ValueError(f"negative blob size {self.size}")

    @classmethod
    def of_bytes(cls, data: bytes) -> "BlobRef":
        return cls(hashlib.sha256(data).hexdigest(), len(data))

    @classmethod
    def of_file(cls, path: str | os.PathLike[str]) -> "BlobRef":
        h = hashlib.sha256()
        n = 0
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
                n += len(chunk)
        return cls(h.hexdigest(), n)

    @property
    def is_empty(self) -> bool:
        return self.size == 0 and self.hash == EMPTY_SHA256

    def __str__(self) -> str:
        return f"{self.hash}/{self.size}"


@dataclass(frozen=True)
class TlsConfig:
    """TLS material for ``grpcs://`` and ``https://``: a CA bundle to trust
    instead of the system's, and a client certificate for mutual TLS."""

    ca_cert: str | os.PathLike[str] | None = None
    client_cert: str | os.PathLike[str] | None = None
    client_key: str | os.PathLike[str] | None = None

    def __post_init__(self) -> None:
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("a TLS client certificate needs both client_cert and client_key")


# ---------------------------------------------------------------- errors


class RemoteError(Exception):
    """A remote cache call failed. ``reason`` is short and human (it ends up in
    the one-line warning: "connection refused", "no answer within 10 s")."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RemoteTimeout(RemoteError):
    pass


class CorruptBlob(RemoteError):
    """The server sent bytes that are not the blob asked for (wrong hash or
    size), or an action result that does not parse. Nothing was written."""

    def __init__(self, reason: str, blob: BlobRef | None = None, found: "dict[BlobRef, bool] | None" = None) -> None:
        super().__init__(reason)
        self.blob = blob
        # For multi-blob downloads: what was found and written despite the bad one.
        self.found = found


class UpdatesDisabled(RemoteError):
    """The server does not accept action results from clients (read-only)."""


class SourceMismatch(ValueError):
    """The local bytes given to ``put_blob`` are not the blob named: the file
    changed after it was digested. Nothing was stored (the upload was cut
    before its last byte). A local problem, not the server's."""


# ---------------------------------------------------------------- interface


@runtime_checkable
class RemoteCache(Protocol):
    """A remote action cache with its content-addressable store.

    Raw clients raise :class:`RemoteError` on failure; wrap them in
    :class:`~.safe.SafeRemote` for the never-fail behaviour (``None`` /
    ``False`` / everything-missing instead of errors)."""

    name: str  # for messages, e.g. "grpc://127.0.0.1:50051"

    def get_action_result(self, key_hex: str) -> "ActionResult | None":
        """The cached result for action key *key_hex*, or None when absent."""
        ...

    def put_action_result(self, key_hex: str, result: "ActionResult") -> None: ...

    def find_missing(self, blobs: Iterable[BlobRef]) -> set[BlobRef]:
        """The subset of *blobs* the store does not hold."""
        ...

    def put_blob(self, blob: BlobRef, source: bytes | Path) -> None:
        """Store *source* (bytes, or a file streamed from disk) as *blob*."""
        ...

    def get_blob(self, blob: BlobRef, dest: Path) -> bool:
        """Download *blob* to *dest* (atomically, only if its SHA-256 and size
        match); False when the store does not hold it."""
        ...

    def close(self) -> None: ...


# ---------------------------------------------------------------- URLs


from ...loading.remote_address import RemoteAddress, parse_remote_url  # noqa: F401 - re-exported


def open_remote(
    url: str,
    *,
    instance_name: str = "",
    headers: Mapping[str, str] = MappingProxyType({}),
    tls: TlsConfig | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    min_rate: float = MIN_TRANSFER_RATE,
) -> RemoteCache:
    """A raw client for *url* (see :func:`parse_remote_url`). Nothing is
    contacted until the first call. *headers* go with every request (HTTP
    headers, gRPC metadata), e.g. ``{"authorization": "Bearer …"}``;
    credentials in the URL become HTTP basic auth. *timeout* and *min_rate*
    are the :class:`Limits` every operation is held to (see "Deadlines" in
    the module docstring)."""
    addr = parse_remote_url(url, instance_name)
    limits = Limits(timeout, min_rate)
    if tls is not None and not addr.secure:
        raise ValueError(f"TLS options given for a plain-text remote cache URL {addr.display()}")
    if addr.is_grpc:
        from .reapi import ReapiCache

        return ReapiCache(addr, headers=headers, tls=tls, limits=limits)
    from .http import HttpCache

    return HttpCache(addr, headers=headers, tls=tls, limits=limits)


def basic_auth_header(username: str, password: str | None) -> str:
    import base64

    token = base64.b64encode(f"{username}:{password or ''}".encode()).decode("ascii")
    return f"Basic {token}"


# ---------------------------------------------------------------- deadlines


class Deadline:
    """The moment one remote operation must be over (see "Deadlines" in the
    module docstring). Made when the operation starts and passed to each of
    its steps, which take :meth:`left` as their own limit."""

    def __init__(self, seconds: float, *, at: float | None = None) -> None:
        self.seconds = seconds  # the operation's limit, for messages
        self.at = time.monotonic() + seconds if at is None else at

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def left(self) -> float:
        """Seconds left for the next blocking step; :class:`RemoteTimeout`
        when none are."""
        left = self.remaining()
        if left <= 0:
            raise self.exceeded()
        return left

    def within(self, seconds: float) -> "Deadline":
        """A deadline for one phase that must also be over within *seconds*
        (reaching the server), and never later than this one."""
        return Deadline(seconds, at=min(self.at, time.monotonic() + seconds))

    def exceeded(self) -> "RemoteTimeout":
        return RemoteTimeout(f"no answer within {round(self.seconds, 1):g} s")


@dataclass(frozen=True)
class Limits:
    """How long a client's operations may take: *timeout* seconds, plus, for
    blob transfers, the time their bytes take at *min_rate* bytes/s (a
    slower server is given up on). Reaching the server is bounded by
    :attr:`connect_timeout`."""

    timeout: float = DEFAULT_TIMEOUT
    min_rate: float = MIN_TRANSFER_RATE

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise ValueError(f"timeout must be positive, got {self.timeout!r}")
        if not self.min_rate > 0:
            raise ValueError(f"min_rate must be positive, got {self.min_rate!r}")

    @property
    def connect_timeout(self) -> float:
        return min(MAX_CONNECT_TIMEOUT, self.timeout)

    def deadline(self, size: int = 0) -> Deadline:
        """The deadline of an operation starting now that moves *size* bytes."""
        return Deadline(self.timeout + size / self.min_rate)


# ---------------------------------------------------------------- blob bytes


def verified_chunks(blob: BlobRef, source: bytes | Path, chunk: int = CHUNK) -> Iterator[tuple[bytes, bool]]:
    """Yield ``(data, is_last)`` pieces of *source*, checking as it goes that
    it is *blob*. The last piece is held back until the whole source has been
    hashed: on a mismatch :class:`SourceMismatch` is raised *instead of*
    yielding it, so an upload in progress is cut short and never completes
    under the wrong name. Files are read piece by piece, never whole."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if len(data) != blob.size or hashlib.sha256(data).hexdigest() != blob.hash:
            raise SourceMismatch(f"bytes given for blob {blob} are not that blob")
        if not data:
            yield b"", True
            return
        for off in range(0, len(data), chunk):
            yield data[off : off + chunk], off + chunk >= len(data)
        return
    h = hashlib.sha256()
    n = 0
    with open(source, "rb") as f:
        pending = f.read(chunk)
        while True:
            h.update(pending)
            n += len(pending)
            if n > blob.size:
                raise SourceMismatch(f"{source} is larger than blob {blob}: it changed after it was digested")
            nxt = f.read(chunk)
            if not nxt:
                if n != blob.size or h.hexdigest() != blob.hash:
                    raise SourceMismatch(f"{source} is not blob {blob}: it changed after it was digested")
                yield pending, True
                return
            yield pending, False
            pending = nxt


class BlobSink:
    """Receives a blob's bytes into a temporary file beside *dest*, hashing as
    it goes, and renames it over *dest* only when everything matched.

    Use as a context manager: leaving it without :meth:`commit` (an error, a
    mismatch) deletes the temporary file, so *dest* is never created or
    touched unless the bytes are right."""

    def __init__(self, blob: BlobRef, dest: Path) -> None:
        self.blob = blob
        self.dest = Path(dest)
        self._h = hashlib.sha256()
        self.received = 0
        self._f: BinaryIO | None = None
        self._tmp: str | None = None

    def __enter__(self) -> "BlobSink":
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(dir=self.dest.parent, prefix=f".{self.dest.name}.", suffix=".part")
        self._f = os.fdopen(fd, "wb")
        return self

    def write(self, data: bytes) -> None:
        self.received += len(data)
        if self.received > self.blob.size:
            raise CorruptBlob(
                f"blob {self.blob.hash[:12]}… came with more than its {self.blob.size} bytes", self.blob
            )
        self._h.update(data)
        assert self._f is not None
        self._f.write(data)

    def commit(self) -> None:
        """Check the bytes, then move them into place; :class:`CorruptBlob`
        if they are not the blob."""
        assert self._f is not None and self._tmp is not None
        self._f.close()
        got = self._h.hexdigest()
        if self.received != self.blob.size or got != self.blob.hash:
            raise CorruptBlob(
                f"blob {self.blob.hash[:12]}…/{self.blob.size} arrived as {got[:12]}…/{self.received}",
                self.blob,
            )
        os.replace(self._tmp, self.dest)
        self._tmp = None

    def __exit__(self, *exc: object) -> None:
        if self._f is not None and not self._f.closed:
            self._f.close()
        if self._tmp is not None:
            try:
                os.unlink(self._tmp)
            except OSError:
                pass
            self._tmp = None


def write_verified(blob: BlobRef, data: bytes, dest: Path) -> None:
    """Write *data* to *dest* atomically if it is *blob*, else raise
    :class:`CorruptBlob` and leave nothing."""
    with BlobSink(blob, dest) as sink:
        sink.write(data)
        sink.commit()
