"""The session's Auth service: registry credentials from ``~/.docker/config.json``.

The daemon asks for credentials per registry host; an empty answer means
anonymous, and the daemon then fetches tokens itself. Token signing
(``GetTokenAuthority``) stays UNIMPLEMENTED, which tells the daemon to use
plain credentials. Credential files and helpers are read with the docker SDK's
``docker.auth`` (a maintained port of the Docker CLI's logic).
"""

from __future__ import annotations

import grpc

from .proto import filesync_pb2, filesync_pb2_grpc

# The daemon names Docker Hub by its API host; config.json by its index.
_HOST_ALIASES = {"registry-1.docker.io": "docker.io", "index.docker.io": "docker.io"}


def credentials_for(host: str) -> tuple[str, str]:
    """(username, secret) for a registry host, or ("", "") for anonymous."""
    try:
        from docker import auth

        config = auth.load_config()
        found = config.resolve_authconfig(_HOST_ALIASES.get(host, host)) or {}
    except Exception:  # an unreadable config means anonymous, never a failed build
        return "", ""
    token = found.get("IdentityToken") or ""
    if token:
        return "", token
    return found.get("Username") or found.get("username") or "", found.get("Password") or found.get("password") or ""


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
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "mbuild lets the daemon fetch tokens")

    def GetTokenAuthority(self, request, context):  # noqa: N802
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "no token authority")

    def VerifyTokenAuthority(self, request, context):  # noqa: N802
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "no token authority")

    def register(self, server: grpc.Server) -> None:
        filesync_pb2_grpc.add_AuthServicer_to_server(self, server)
