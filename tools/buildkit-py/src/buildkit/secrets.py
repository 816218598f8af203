"""The session's Secrets service: secret mounts and secret env read from here.

A secret comes from a file or an environment variable, read when the daemon
asks for it, so its bytes never enter the LLB, a cache key or a layer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import grpc

from .proto import secrets_pb2, secrets_pb2_grpc


@dataclass(frozen=True)
class SecretSource:
    """Where a secret's bytes come from: exactly one of ``file`` and ``env``."""

    id: str
    file: str | None = None
    env: str | None = None

    def read(self) -> bytes | None:
        if self.file is not None:
            try:
                return Path(self.file).expanduser().read_bytes()
            except OSError:
                return None
        if self.env is not None:
            value = os.environ.get(self.env)
            return None if value is None else value.encode()
        return None


class SecretsService(secrets_pb2_grpc.SecretsServicer):
    methods = ("/moby.buildkit.secrets.v1.Secrets/GetSecret",)

    def __init__(self, sources: Mapping[str, SecretSource]) -> None:
        self._sources = dict(sources)

    def GetSecret(self, request, context):  # noqa: N802 - gRPC method name
        source = self._sources.get(request.ID)
        data = source.read() if source else None
        if data is None:
            # NOT_FOUND lets the daemon skip an optional secret mount.
            context.abort(grpc.StatusCode.NOT_FOUND, f"secret {request.ID} not found")
        return secrets_pb2.GetSecretResponse(data=data)

    def register(self, server: grpc.Server) -> None:
        secrets_pb2_grpc.add_SecretsServicer_to_server(self, server)
