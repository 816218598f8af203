"""Engines of a test's own: private Docker engines (``scripts/private_engine.py``)
and the TLS material to reach one over TCP, made with openssl in the test.

A private engine starts empty, as on a new machine; :func:`start_engine`
brings in the base images a test asks for with ``scripts/env-up``.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..conftest import REPO

_spec = importlib.util.spec_from_file_location("private_engine", REPO / "scripts" / "private_engine.py")
private_engine = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("private_engine", private_engine)
_spec.loader.exec_module(private_engine)
PrivateEngine = private_engine.PrivateEngine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@dataclass(frozen=True)
class Certs:
    """A CA, a server certificate for 127.0.0.1, and a client certificate, in
    the layouts dockerd (``server-*.pem``) and the docker CLI (``ca.pem``,
    ``cert.pem``, ``key.pem`` in ``DOCKER_CERT_PATH``) expect."""

    dir: Path

    @property
    def client_dir(self) -> Path:
        return self.dir / "client"


def make_certs(folder: Path, name: str = "test") -> Certs:
    """A fresh CA and certificates signed by it (RSA 2048, one day)."""
    folder.mkdir(parents=True, exist_ok=True)
    client = folder / "client"
    client.mkdir(exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}-ca",
             "-keyout", "ca-key.pem", "-out", "ca.pem", cwd=folder)
    (folder / "server.ext").write_text("subjectAltName = IP:127.0.0.1, DNS:localhost\n"
                                       "extendedKeyUsage = serverAuth\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server-key.pem",
             "-out", "server.csr", cwd=folder)
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial",
             "-days", "1", "-extfile", "server.ext", "-out", "server-cert.pem", cwd=folder)
    (folder / "client.ext").write_text("extendedKeyUsage = clientAuth\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}-client", "-keyout", "client/key.pem",
             "-out", "client.csr", cwd=folder)
    _openssl("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial",
             "-days", "1", "-extfile", "client.ext", "-out", "client/cert.pem", cwd=folder)
    (client / "ca.pem").write_bytes((folder / "ca.pem").read_bytes())
    for key in (folder / "server-key.pem", client / "key.pem"):
        os.chmod(key, 0o600)
    return Certs(folder)


def start_engine(folder: Path, images: tuple[str, ...] = ("mbuild-test/base:bookworm",),
                 tls_port: int | None = None, certs: Certs | None = None):
    """A started private engine holding ``images``, brought in by ``scripts/env-up``."""
    engine = PrivateEngine(folder, tls_port, certs.dir if certs else None).start()
    try:
        if images:
            engine.import_bases(REPO, images)
    except BaseException:
        engine.remove()
        raise
    return engine
