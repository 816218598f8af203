"""mbuild's own protobuf schemas for the remote cache protocols (the REAPI v2
cache subset, google.bytestream, a google.rpc.Status twin) and their generated
code, made on import by :mod:`mbuild.buildkit.proto.generate`::

    from mbuild.cache.remote.proto import remote_execution_pb2 as re_pb2
"""

from pathlib import Path as _Path

from mbuild.buildkit.proto.generate import ensure_generated as _ensure_generated

_ensure_generated(_Path(__file__).resolve().parent)
