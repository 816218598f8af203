"""Client TLS settings for daemons reached over TCP."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TLSConfig:
    """Client TLS: the CA that signs the server's certificate, and the client's
    own certificate and key (PEM files). ``verify=False`` skips checking the
    server (``DOCKER_TLS`` without ``DOCKER_TLS_VERIFY``); ``server_name``
    overrides the name checked in the server's certificate."""

    ca_cert: str | None = None
    cert: str | None = None
    key: str | None = None
    server_name: str | None = None
    verify: bool = True

    @classmethod
    def from_dir(cls, folder: str | Path, verify: bool = True) -> "TLSConfig":
        """The docker layout: ``ca.pem``, ``cert.pem`` and ``key.pem`` in one folder
        (each used if present)."""
        folder = Path(folder).expanduser()

        def part(name: str) -> str | None:
            p = folder / name
            return str(p) if p.is_file() else None

        return cls(ca_cert=part("ca.pem"), cert=part("cert.pem"), key=part("key.pem"), verify=verify)

    def ssl_context(self) -> ssl.SSLContext:
        """A client context for Python's ``ssl`` (used under HTTP upgrades)."""
        ctx = ssl.create_default_context(cafile=self.ca_cert)
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert:
            ctx.load_cert_chain(self.cert, self.key)
        # HTTP/1.1 first (the upgrade), then HTTP/2 inside: no ALPN h2 here.
        return ctx

    def grpc_credentials(self):
        """Channel credentials for grpcio (a ``tcp://`` buildkitd)."""
        import grpc

        def read(path: str | None) -> bytes | None:
            return Path(path).read_bytes() if path else None

        return grpc.ssl_channel_credentials(root_certificates=read(self.ca_cert), private_key=read(self.key),
                                            certificate_chain=read(self.cert))
