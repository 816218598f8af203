"""mbuild's own protobuf schemas for the remote cache protocols (the REAPI v2
cache subset, google.bytestream, a google.rpc.Status twin) and their generated
code. Importing this package makes sure the generated modules exist and match
the ``.proto`` sources (see :mod:`generate`)::

    from mbuild.cache.remote.proto import remote_execution_pb2 as re_pb2
"""

from .generate import ensure_generated as _ensure_generated

_ensure_generated()

from . import (  # noqa: E402
    bytestream_pb2,
    bytestream_pb2_grpc,
    remote_execution_pb2,
    remote_execution_pb2_grpc,
    status_pb2,
)

__all__ = [
    "bytestream_pb2",
    "bytestream_pb2_grpc",
    "remote_execution_pb2",
    "remote_execution_pb2_grpc",
    "status_pb2",
]
