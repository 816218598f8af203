"""mbuild's own protobuf schemas for BuildKit's wire, and their generated code.

Importing this package makes sure the generated modules exist and match the
``.proto`` sources (see :mod:`generate`). Import the modules from here::

    from mbuild.buildkit.proto import ops_pb2, control_pb2
"""

from .generate import ensure_generated as _ensure_generated

_ensure_generated()

from . import (  # noqa: E402
    control_pb2,
    control_pb2_grpc,
    filesync_pb2,
    filesync_pb2_grpc,
    fsutil_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    ops_pb2,
    secrets_pb2,
    secrets_pb2_grpc,
    worker_pb2,
)

__all__ = [
    "control_pb2",
    "control_pb2_grpc",
    "filesync_pb2",
    "filesync_pb2_grpc",
    "fsutil_pb2",
    "gateway_pb2",
    "gateway_pb2_grpc",
    "ops_pb2",
    "secrets_pb2",
    "secrets_pb2_grpc",
    "worker_pb2",
]
