"""The session's Secrets service: secret mounts and secret env read from here.

A secret comes from a file or an environment variable, read when the daemon
asks for it, so its bytes never enter the LLB, a cache key or a layer.

Sources are given as :class:`SecretSource` values, or parsed from the
``docker buildx build --secret`` syntax::

    secrets = parse_secret_specs(["id=npmrc,src=~/.npmrc", "id=token,env=GITHUB_TOKEN", "id=AWS_PROFILE"])
    SolveRequest(definition=st, secrets=secrets)

Every source is checked when the solve starts (the file exists and is small
enough, the variable is set), so a typo fails the build at once with a line
that names the secret, not later as a step that cannot find its file.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import grpc

from .errors import BuildKitError
from .proto import secrets_pb2, secrets_pb2_grpc
from .specs import by_id

# The daemon refuses a secret larger than this (BuildKit's MaxSecretSize).
MAX_SECRET_SIZE = 500 * 1024
SPEC_SYNTAX = "id=ID[,src=PATH | ,env=VAR][,type=file|env]"


class SecretError(BuildKitError, ValueError):
    """A secret spec that cannot be parsed, or a source that cannot be read."""


@dataclass(frozen=True)
class SecretSource:
    """Where secret ``id``'s bytes come from: a ``file``, or an ``env`` variable.

    With neither, the source is resolved as buildx does when the solve starts:
    the environment variable named ``id`` if it is set, else the file named
    ``id`` (relative to the current directory).
    """

    id: str
    file: str | None = None  # a path; "~" is expanded
    env: str | None = None  # the name of an environment variable

    def __post_init__(self) -> None:
        if not self.id:
            raise SecretError("a secret needs an id")
        if self.file is not None and self.env is not None:
            raise SecretError(f"secret {self.id!r}: give a file or an env variable, not both")

    @classmethod
    def parse(cls, spec: str) -> "SecretSource":
        """One ``--secret`` value: ``id=ID[,src=PATH][,env=VAR][,type=file|env]``.

        ``source`` is a synonym of ``src``; with ``type=env`` a ``src`` names the
        variable. Raises :class:`SecretError` naming the spec.
        """
        try:
            fields = next(csv.reader([spec], skipinitialspace=True), [])
        except csv.Error as e:
            raise SecretError(f"secret {spec!r}: {e}; use {SPEC_SYNTAX}") from None
        sid, src, env, kind = "", None, None, None
        for item in fields:
            key, eq, value = item.partition("=")
            key = key.strip().lower()
            if not eq:
                raise SecretError(f"secret {spec!r}: {item!r} is not key=value; use {SPEC_SYNTAX}")
            if key == "id":
                sid = value
            elif key in ("src", "source"):
                src = value
            elif key == "env":
                env = value
            elif key == "type":
                if value not in ("file", "env"):
                    raise SecretError(f"secret {spec!r}: type {value!r}: use type=file or type=env")
                kind = value
            else:
                raise SecretError(f"secret {spec!r}: unknown key {key!r}; use {SPEC_SYNTAX}")
        if not sid:
            raise SecretError(f"secret {spec!r} has no id; use {SPEC_SYNTAX}")
        if kind == "env" and env is None:
            env, src = src or sid, None
        elif kind == "file" and src is None and env is None:
            src = sid
        if src is not None and env is not None:
            raise SecretError(f"secret {spec!r}: give src or env, not both")
        return cls(sid, file=src, env=env)

    def resolved(self, environ: Mapping[str, str] = os.environ) -> "SecretSource":
        """This source with the buildx default applied when it names neither file nor env."""
        if self.file is not None or self.env is not None:
            return self
        if self.id in environ:
            return SecretSource(self.id, env=self.id)
        return SecretSource(self.id, file=self.id)

    def check(self, environ: Mapping[str, str] = os.environ) -> None:
        """Raise :class:`SecretError` unless the source can be read now."""
        src = self.resolved(environ)
        if src.env is not None:
            if src.env not in environ:
                raise SecretError(f"secret {self.id!r}: the environment variable {src.env} is not set")
            return
        path = Path(src.file).expanduser()
        try:
            size = path.stat().st_size
        except OSError as e:
            raise SecretError(f"secret {self.id!r}: cannot read {path}: {e.strerror}") from None
        if not path.is_file():
            raise SecretError(f"secret {self.id!r}: {path} is not a file")
        if size > MAX_SECRET_SIZE:
            raise SecretError(f"secret {self.id!r}: {path} has {size} bytes; BuildKit takes at most "
                              f"{MAX_SECRET_SIZE} bytes per secret")

    def read(self, environ: Mapping[str, str] = os.environ) -> bytes | None:
        """The secret's bytes, or None when the file or variable is gone."""
        src = self.resolved(environ)
        if src.env is not None:
            value = environ.get(src.env)
            return None if value is None else value.encode()
        try:
            return Path(src.file).expanduser().read_bytes()
        except OSError:
            return None


def parse_secret_specs(specs: Iterable[str]) -> dict[str, SecretSource]:
    """``--secret`` values to the ``SolveRequest.secrets`` mapping (by id);
    an id given twice is a :class:`SecretError`."""
    return by_id((SecretSource.parse(spec) for spec in specs), "secret", SecretError)


class SecretsService(secrets_pb2_grpc.SecretsServicer):
    """Answers the daemon's ``GetSecret`` from ``sources`` (by id), checked up front."""

    methods = ("/moby.buildkit.secrets.v1.Secrets/GetSecret",)

    def __init__(self, sources: Mapping[str, SecretSource], environ: Mapping[str, str] = os.environ) -> None:
        self._environ = environ
        self._sources = {}
        for key, source in sources.items():
            if key != source.id:
                raise SecretError(f"secret {source.id!r} is filed under the id {key!r}; use the same id")
            source.check(environ)
            self._sources[key] = source.resolved(environ)

    def GetSecret(self, request, context):  # noqa: N802 - gRPC method name
        source = self._sources.get(request.ID)
        data = source.read(self._environ) if source else None
        if data is None:
            # NOT_FOUND lets the daemon skip an optional secret mount.
            context.abort(grpc.StatusCode.NOT_FOUND, f"secret {request.ID} not found")
        return secrets_pb2.GetSecretResponse(data=data)

    def register(self, server: grpc.Server) -> None:
        secrets_pb2_grpc.add_SecretsServicer_to_server(self, server)
