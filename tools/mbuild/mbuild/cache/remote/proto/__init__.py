"""mbuild's own protobuf schemas for the remote cache protocols (the REAPI v2
cache subset, google.bytestream, a google.rpc.Status twin), compiled into the
package when it is built (see the distribution's ``setup.py``)::

    from mbuild.cache.remote.proto import remote_execution_pb2 as re_pb2
"""
