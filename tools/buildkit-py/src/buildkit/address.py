"""BuildKit daemon addresses: parsing, with no IO and no gRPC.

``docker://``
    The Docker engine every docker tool would use here: ``DOCKER_HOST`` (with
    ``DOCKER_TLS_VERIFY``/``DOCKER_CERT_PATH``), else the current docker
    context, else ``/var/run/docker.sock`` (:mod:`buildkit.dockerhost`).
``docker:///path/to/docker.sock``, ``docker://HOST:PORT``
    A Docker engine on that socket, or on TCP (TLS as the environment says,
    or as given).
``unix:///run/buildkit/buildkitd.sock``, ``tcp://HOST:PORT``
    A standalone buildkitd (TCP optionally with TLS).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import urlsplit

from . import dockerhost
from .dockerhost import DockerHost
from .errors import InvalidAddress
from .tls import TLSConfig

SCHEMES = ("docker", "unix", "tcp")


@dataclass(frozen=True)
class Address:
    """A parsed BuildKit address; ``str()`` gives it back in URL form."""

    scheme: str  # "docker" | "unix" | "tcp"
    path: str = ""  # socket path for unix://
    host: str = ""
    port: int = 0
    tls: TLSConfig | None = None
    docker: DockerHost | None = None  # the engine, for docker://

    def __str__(self) -> str:
        if self.scheme == "docker" and self.docker is not None:
            d = self.docker
            where = d.path if d.scheme == "unix" else f"{d.host}:{d.port}"
            text = f"docker://{where}"
            return text if d.origin in ("address", "default") else f"{text} (from {d.origin})"
        if self.scheme == "tcp":
            return f"tcp://{self.host}:{self.port}"
        return f"{self.scheme}://{self.path}"


def parse_address(text: str, tls: TLSConfig | None = None, environ: Mapping[str, str] = os.environ) -> Address:
    """Parse ``docker://[/sock | HOST:PORT]``, ``unix:///sock`` or ``tcp://h:p``.

    ``docker://`` alone is resolved from ``environ`` now (DOCKER_HOST, the
    docker context). Raises :class:`~buildkit.errors.InvalidAddress`.
    """
    text = (text or "docker://").strip()
    parts = urlsplit(text)
    scheme = parts.scheme
    if scheme == "docker":
        if parts.netloc:
            tls = tls or dockerhost.tls_from_environment(environ)
            host = dockerhost.parse_docker_host(f"tcp://{parts.netloc}", tls)
        elif parts.path:
            host = dockerhost.parse_docker_host(f"unix://{parts.path}")
        else:
            host = dockerhost.from_environment(environ)
        return Address("docker", path=host.path, host=host.host, port=host.port, tls=host.tls, docker=host)
    if scheme == "unix":
        if not parts.path:
            raise InvalidAddress(f"BuildKit address {text!r}: use unix:///path/to/buildkitd.sock")
        return Address("unix", path=parts.path)
    if scheme == "tcp":
        try:
            host, port = parts.hostname, parts.port
        except ValueError:
            host, port = None, None
        if not host or not port:
            raise InvalidAddress(f"BuildKit address {text!r}: use tcp://HOST:PORT")
        return Address("tcp", host=host, port=port, tls=tls)
    raise InvalidAddress(
        f"BuildKit address {text!r}: unknown scheme; use docker:// (the Docker engine of DOCKER_HOST or "
        "the docker context), docker:///path/to/docker.sock, docker://HOST:PORT, unix:///path or tcp://HOST:PORT"
    )
