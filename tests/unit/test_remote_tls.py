"""grpcs:// and https:// remote caches with a private CA and mutual TLS, against
in-process servers (certificates made with the openssl command)."""

from __future__ import annotations

import os
import ssl
import subprocess
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import pytest

from mbuild.cache.remote import BlobRef, RemoteError, SafeRemote, TlsConfig, open_remote
from mbuild.cache.remote.proto import remote_execution_pb2 as re_pb2
from mbuild.cache.remote.proto import remote_execution_pb2_grpc as re_grpc


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=mbuild test CA",
             "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                 "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-days", "2", "-extfile", "san.ext", "-out", f"{name}.pem", cwd=d)
    return d


class Caps(re_grpc.CapabilitiesServicer, re_grpc.ActionCacheServicer):
    def GetCapabilities(self, request, context):
        return re_pb2.ServerCapabilities(
            cache_capabilities=re_pb2.CacheCapabilities(digest_functions=[re_pb2.DigestFunction.SHA256])
        )

    def GetActionResult(self, request, context):
        return re_pb2.ActionResult(exit_code=0, stdout_raw=request.action_digest.hash.encode())


@pytest.fixture(scope="module")
def grpcs_server(pki):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    re_grpc.add_CapabilitiesServicer_to_server(Caps(), server)
    re_grpc.add_ActionCacheServicer_to_server(Caps(), server)
    creds = grpc.ssl_server_credentials(
        [((pki / "server.key").read_bytes(), (pki / "server.pem").read_bytes())],
        root_certificates=(pki / "ca.pem").read_bytes(),
        require_client_auth=True,
    )
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    yield port
    server.stop(grace=None)


@pytest.fixture(scope="module")
def https_server(pki):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_HEAD(self):
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request, client_address):
            pass

    httpd = Server(("127.0.0.1", 0), Handler)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki / "ca.pem"))
    ctx.load_cert_chain(str(pki / "server.pem"), str(pki / "server.key"))
    ctx.verify_mode = ssl.CERT_REQUIRED
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def mtls(pki: Path) -> TlsConfig:
    return TlsConfig(ca_cert=pki / "ca.pem", client_cert=pki / "client.pem", client_key=pki / "client.key")


def test_grpcs_with_private_ca_and_client_cert(pki, grpcs_server):
    r = open_remote(f"grpcs://127.0.0.1:{grpcs_server}", tls=mtls(pki))
    key = os.urandom(32).hex()
    assert r.get_action_result(key).stdout_raw == key.encode()
    r.close()


def test_grpcs_without_the_ca_fails_safely(pki, grpcs_server):
    warnings: list[str] = []
    safe = SafeRemote(open_remote(f"grpcs://127.0.0.1:{grpcs_server}", timeout=2), warnings.append)
    assert safe.get_action_result("ab" * 32) is None
    assert len(warnings) == 1 and f"grpcs://127.0.0.1:{grpcs_server}" in warnings[0]
    assert "certificate is not trusted; check the CA certificate" in warnings[0]


def test_https_with_private_ca_and_client_cert(pki, https_server):
    r = open_remote(f"https://127.0.0.1:{https_server}/", tls=mtls(pki))
    b = BlobRef.of_bytes(b"x")
    assert r.find_missing([b]) == {b}
    r.close()


def test_https_without_the_ca_is_a_tls_failure(pki, https_server):
    r = open_remote(f"https://127.0.0.1:{https_server}/", timeout=2)
    with pytest.raises(RemoteError, match="TLS failure: the server's certificate is not trusted"):
        r.find_missing([BlobRef.of_bytes(b"x")])
    r.close()
