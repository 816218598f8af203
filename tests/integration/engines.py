"""Engines of a test's own: private Docker engines (``scripts/private_engine.py``)
and the TLS material to reach one over TCP, made with openssl in the test.

A private engine starts empty, as on a new machine; :func:`start_engine`
imports the base images the way ``scripts/env-up`` does on a bare machine
(``docker import``), only those a test asks for.
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


def import_image(engine, name: str, tarball: Path, *changes: str) -> None:
    """``docker import`` a rootfs tarball into ``engine``, as env-up does."""
    args = ["docker", "-H", engine.host, "import"]
    for change in changes:
        args += ["--change", change]
    subprocess.run([*args, str(tarball), name], check=True, capture_output=True, timeout=600)


ROOTFS_CACHE = Path(os.environ.get("MBUILD_ENV_CACHE", "/var/cache/mbuild-env"))
PATH_ENV = "ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"
# name -> (rootfs tarball made by scripts/env-up, docker import --change lines)
STAND_INS = {
    "mbuild-test/base:bookworm": ("rootfs-py311-slim-v1.tar", (PATH_ENV,)),
    "python:3.11-slim": ("rootfs-py311-slim-v1.tar", (PATH_ENV, "ENV LANG=C.UTF-8", 'CMD ["python3"]')),
    "python:3.11": ("rootfs-py311-full-v1.tar", (PATH_ENV, "ENV LANG=C.UTF-8", 'CMD ["python3"]')),
}


def start_engine(folder: Path, images: tuple[str, ...] = ("mbuild-test/base:bookworm",),
                 tls_port: int | None = None, certs: Certs | None = None):
    """A started private engine holding ``images`` (imported from env-up's rootfs tarballs)."""
    engine = PrivateEngine(folder, tls_port, certs.dir if certs else None).start()
    try:
        for name in images:
            tarball, changes = STAND_INS[name]
            import_image(engine, name, ROOTFS_CACHE / tarball, *changes)
    except BaseException:
        engine.remove()
        raise
    return engine
