"""buildkit-py's own protobuf schemas for BuildKit's wire, compiled into the
package when it is built (see the distribution's ``setup.py``).

Only the messages and fields the client uses are declared; package names,
field numbers and method names are BuildKit's. Import the modules you need::

    from buildkit.proto import ops_pb2, control_pb2

Nothing is imported here, so a caller that needs only ``ops_pb2`` does not pay
for gRPC.
"""
