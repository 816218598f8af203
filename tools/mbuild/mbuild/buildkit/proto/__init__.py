"""mbuild's own protobuf schemas for BuildKit's wire, and their generated code.

Importing this package makes sure the generated modules exist and match the
``.proto`` sources (see :mod:`generate`); import the modules you need::

    from mbuild.buildkit.proto import ops_pb2, control_pb2

Nothing else is imported here: a caller that needs only ``ops_pb2`` does not
pay for gRPC.
"""

from .generate import ensure_generated as _ensure_generated

_ensure_generated()
