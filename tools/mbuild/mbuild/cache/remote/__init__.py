"""Remote caches: the REAPI v2 cache services over gRPC and the Bazel HTTP
cache protocol, behind one interface, and a wrapper that makes any remote
failure a cache miss.

    from mbuild.cache.remote import open_safe_remote, BlobRef

    remote = open_safe_remote("grpc://127.0.0.1:50051", warn=ui.warn)
    result = remote.get_action_result(key)          # ActionResult | None
    remote.get_blob(BlobRef(sha, size), dest)       # True only if verified

The REAPI messages (``ActionResult``, ``OutputFile``, ``Digest``) are in
:mod:`mbuild.cache.remote.proto.remote_execution_pb2`, also reachable as
:data:`re_pb2` here.
"""

from .base import (
    BlobRef,
    CorruptBlob,
    RemoteAddress,
    RemoteCache,
    RemoteError,
    RemoteTimeout,
    SourceMismatch,
    TlsConfig,
    UpdatesDisabled,
    open_remote,
    parse_remote_url,
)
from .proto import remote_execution_pb2 as re_pb2
from .safe import SafeRemote, open_safe_remote

ActionResult = re_pb2.ActionResult
OutputFile = re_pb2.OutputFile
Digest = re_pb2.Digest

__all__ = [
    "ActionResult",
    "BlobRef",
    "CorruptBlob",
    "Digest",
    "OutputFile",
    "RemoteAddress",
    "RemoteCache",
    "RemoteError",
    "RemoteTimeout",
    "SafeRemote",
    "SourceMismatch",
    "TlsConfig",
    "UpdatesDisabled",
    "open_remote",
    "open_safe_remote",
    "parse_remote_url",
    "re_pb2",
]
