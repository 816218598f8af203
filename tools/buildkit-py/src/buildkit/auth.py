"""The session's Auth service: registry credentials from the docker config.

The daemon asks for credentials per registry host; an empty answer means
anonymous, and the daemon then fetches tokens itself. Token signing
(``GetTokenAuthority``) stays UNIMPLEMENTED, which tells the daemon to use
plain credentials. Credentials are read as the docker CLI reads them
(:mod:`buildkit.dockerconfig`: credential helpers, ``credsStore``, ``auths``).
"""

from __future__ import annotations

import grpc

from . import dockerconfig
from .proto import filesync_pb2, filesync_pb2_grpc


def credentials_for(host: str) -> tuple[str, str]:
    """(username, secret) for a registry host, or ("", "") for anonymous."""
    try:
        return dockerconfig.credentials(host)
    except Exception:  # noqa: BLE001 - an unreadable config means anonymous, never a failed build
        return "", ""


class AuthService(filesync_pb2_grpc.AuthServicer):
    methods = (
        "/moby.filesync.v1.Auth/Credentials",
        "/moby.filesync.v1.Auth/FetchToken",
        "/moby.filesync.v1.Auth/GetTokenAuthority",
        "/moby.filesync.v1.Auth/VerifyTokenAuthority",
    )

    def Credentials(self, request, context):  # noqa: N802
        user, secret = credentials_for(request.Host)
        return filesync_pb2.CredentialsResponse(Username=user, Secret=secret)

    def FetchToken(self, request, context):  # noqa: N802
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "the daemon fetches tokens itself")

    def GetTokenAuthority(self, request, context):  # noqa: N802
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "no token authority")

    def VerifyTokenAuthority(self, request, context):  # noqa: N802
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "no token authority")

    def register(self, server: grpc.Server) -> None:
        filesync_pb2_grpc.add_AuthServicer_to_server(self, server)
