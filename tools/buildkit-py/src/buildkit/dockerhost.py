"""Where a Docker engine listens, found the way every docker tool finds it.

:func:`from_environment` follows the docker CLI's order:

1. ``DOCKER_HOST`` (``unix:///path`` or ``tcp://host:port``), with TLS from
   ``DOCKER_TLS_VERIFY`` (verify the server; client certificate) or
   ``DOCKER_TLS`` (TLS without verifying), the files ``ca.pem``, ``cert.pem``
   and ``key.pem`` being in ``DOCKER_CERT_PATH`` (default ``~/.docker``);
2. else the current context (``DOCKER_CONTEXT``, or ``currentContext`` in the
   docker config), with the context's own TLS files;
3. else ``unix:///var/run/docker.sock``.

:meth:`DockerHost.dial` opens a stream socket to it (TLS-wrapped over TCP),
for HTTP upgrades (``/grpc``, ``/session``) and plain engine API calls.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import urlsplit

from . import dockerconfig
from .errors import InvalidAddress
from .tls import TLSConfig

DEFAULT_SOCKET = "/var/run/docker.sock"


@dataclass(frozen=True)
class DockerHost:
    """A Docker engine endpoint: a unix socket, or TCP (with TLS when ``tls`` is set)."""

    scheme: str  # "unix" | "tcp"
    path: str = ""
    host: str = ""
    port: int = 0
    tls: TLSConfig | None = None
    origin: str = "default"  # where it came from: "DOCKER_HOST", "context NAME", "default", "address"

    def __str__(self) -> str:
        if self.scheme == "unix":
            return f"unix://{self.path}"
        return f"tcp://{self.host}:{self.port}"

    def dial(self, timeout: float) -> socket.socket:
        """A connected socket to the engine (TLS done, for TCP with TLS). Raises OSError."""
        if self.scheme == "unix":
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(timeout)
            try:
                s.connect(self.path)
            except BaseException:
                s.close()
                raise
            return s
        raw = socket.create_connection((self.host, self.port), timeout=timeout)
        if self.tls is None:
            return raw
        try:
            ctx = self.tls.ssl_context()
            return ctx.wrap_socket(raw, server_hostname=self.tls.server_name or self.host)
        except BaseException:
            raw.close()
            raise


def parse_docker_host(text: str, tls: TLSConfig | None = None, origin: str = "address") -> DockerHost:
    """``unix:///path`` or ``tcp://host:port`` (DOCKER_HOST syntax). A bad
    one is an InvalidAddress naming ``origin`` (DOCKER_HOST, a context)."""
    parts = urlsplit(text.strip())
    said = f"Docker host {text!r}" + ("" if origin == "address" else f" (from {origin})")
    if parts.scheme == "unix":
        if not parts.path:
            raise InvalidAddress(f"{said}: use unix:///path/to/docker.sock")
        return DockerHost("unix", path=parts.path, origin=origin)
    if parts.scheme in ("tcp", "https", "http"):
        try:
            host, port = parts.hostname, parts.port
        except ValueError:
            host, port = None, None
        if not host:
            raise InvalidAddress(f"{said}: use tcp://HOST:PORT")
        port = port or (2376 if tls is not None else 2375)
        return DockerHost("tcp", host=host, port=port, tls=tls, origin=origin)
    raise InvalidAddress(f"{said}: use unix:///path/to/docker.sock or tcp://HOST:PORT "
                         "(ssh:// and npipe:// are not supported)")


def tls_from_environment(environ: Mapping[str, str] = os.environ) -> TLSConfig | None:
    """TLS as DOCKER_TLS_VERIFY / DOCKER_TLS / DOCKER_CERT_PATH ask for it, or None."""
    verify = bool(environ.get("DOCKER_TLS_VERIFY"))
    if not verify and not environ.get("DOCKER_TLS"):
        return None
    folder = environ.get("DOCKER_CERT_PATH") or str(dockerconfig.config_dir(environ))
    tls = TLSConfig.from_dir(folder, verify=verify)
    if verify and tls.ca_cert is None:
        raise InvalidAddress(f"DOCKER_TLS_VERIFY is set but {folder} (DOCKER_CERT_PATH) has no ca.pem; put the "
                             "engine's CA there with cert.pem and key.pem, or unset DOCKER_TLS_VERIFY")
    if (tls.cert is None) != (tls.key is None):
        raise InvalidAddress(f"{folder} (DOCKER_CERT_PATH) has {'cert.pem' if tls.cert else 'key.pem'} without "
                             f"{'key.pem' if tls.cert else 'cert.pem'}; a client certificate needs both")
    return tls


def from_environment(environ: Mapping[str, str] = os.environ) -> DockerHost:
    """The engine the docker CLI would talk to in this environment."""
    if environ.get("DOCKER_HOST"):
        return parse_docker_host(environ["DOCKER_HOST"], tls_from_environment(environ), origin="DOCKER_HOST")
    name = dockerconfig.current_context_name(environ)
    endpoint = dockerconfig.context_endpoint(name, environ)
    if endpoint is not None:
        tls = None
        if endpoint.host.startswith("tcp://") and (endpoint.tls_dir or endpoint.skip_tls_verify):
            tls = TLSConfig.from_dir(endpoint.tls_dir, verify=not endpoint.skip_tls_verify) \
                if endpoint.tls_dir else TLSConfig(verify=False)
        return parse_docker_host(endpoint.host, tls, origin=f"context {name}")
    if name != "default":
        raise InvalidAddress(f"docker context {name!r} (from DOCKER_CONTEXT or {dockerconfig.config_dir(environ)}"
                             f"/config.json) does not exist; list contexts with `docker context ls`")
    return DockerHost("unix", path=DEFAULT_SOCKET, origin="default")
