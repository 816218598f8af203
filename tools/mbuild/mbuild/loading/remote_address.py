"""Remote cache URLs: ``grpc[s]://…`` (REAPI) and ``http[s]://…`` (the Bazel
HTTP cache protocol), parsed with no IO.

Here, in loading, because WORKSPACE.toml's ``[cache] remote`` is checked when
the workspace loads (an error at its line); the remote cache clients
(:mod:`mbuild.cache.remote`) use the same parser.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit


@dataclass(frozen=True)
class RemoteAddress:
    """A parsed remote cache URL."""

    scheme: str  # grpc | grpcs | http | https
    host: str
    port: int
    path: str  # http: base path ending in "/"; grpc: "" (the instance comes apart)
    instance_name: str  # grpc only
    username: str | None = None
    password: str | None = None

    @property
    def secure(self) -> bool:
        return self.scheme in ("grpcs", "https")

    @property
    def is_grpc(self) -> bool:
        return self.scheme in ("grpc", "grpcs")

    @property
    def hostport(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def display(self) -> str:
        """The address without credentials, for messages."""
        if self.is_grpc:
            tail = f"/{self.instance_name}" if self.instance_name else ""
            return f"{self.scheme}://{self.hostport}{tail}"
        return f"{self.scheme}://{self.hostport}{self.path}"


_DEFAULT_PORTS = {"grpc": 443, "grpcs": 443, "http": 80, "https": 443}


def parse_remote_url(url: str, instance_name: str = "") -> RemoteAddress:
    """Parse ``grpc[s]://[user:pass@]host[:port][/instance]`` or
    ``http[s]://[user:pass@]host[:port][/prefix/]``. For gRPC a path names the
    instance unless *instance_name* is given (they must agree if both are)."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(
            f"remote cache URL {url!r}: scheme must be grpc://, grpcs://, http:// or https://"
        )
    if not parts.hostname:
        raise ValueError(f"remote cache URL {url!r} has no host")
    if parts.query or parts.fragment:
        raise ValueError(f"remote cache URL {url!r}: no query or fragment allowed")
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError as e:
        raise ValueError(f"remote cache URL {url!r}: bad port ({e})") from None
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    path = unquote(parts.path)
    if scheme.startswith("grpc"):
        from_path = path.strip("/")
        if from_path and instance_name and from_path != instance_name:
            raise ValueError(
                f"remote cache URL {url!r} names instance {from_path!r} but instance_name is {instance_name!r}"
            )
        return RemoteAddress(scheme, parts.hostname, port, "", instance_name or from_path, user, password)
    if instance_name:
        raise ValueError("instance_name applies to grpc:// remote caches only")
    if not path.endswith("/"):
        path += "/"
    return RemoteAddress(scheme, parts.hostname, port, path, "", user, password)
