"""The Bazel HTTP cache client (mbuild.cache.remote.http) against a small
in-process HTTP server: paths, auth, keep-alive, status handling, lengths."""

from __future__ import annotations

import hashlib
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mbuild.cache.remote import ActionResult, BlobRef, CorruptBlob, RemoteError, SafeRemote, open_remote


class Store:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.requests: list[tuple[str, str, dict]] = []
        self.status: int | None = None  # force this status on every request
        self.length_lie = 0  # add this to Content-Length on HEAD/GET
        self.drop_after_reply = False  # close kept-alive connections silently


@pytest.fixture
def server():
    store = Store()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def _note(self):
            store.requests.append((self.command, self.path, dict(self.headers)))

        def _reply(self, status, body=b"", length=None):
            self.send_response(status)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            if store.drop_after_reply:
                self.close_connection = True

        def do_GET(self):
            self._note()
            if store.status:
                return self._reply(store.status, b"nope")
            if self.path not in store.data:
                return self._reply(404, b"missing")
            body = store.data[self.path]
            self._reply(200, body, len(body) + store.length_lie if store.length_lie else None)

        def do_HEAD(self):
            self._note()
            if store.status:
                return self._reply(store.status)
            if self.path not in store.data:
                return self._reply(404)
            self._reply(200, length=len(store.data[self.path]) + store.length_lie)

        def do_PUT(self):
            self._note()
            n = int(self.headers["Content-Length"])
            body = self.rfile.read(n)
            if len(body) != n:  # the client hung up mid-body: store nothing, as servers do
                self.close_connection = True
                return
            if store.status:
                return self._reply(store.status)
            store.data[self.path] = body
            self._reply(201)

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request, client_address):
            pass  # clients hanging up early are part of the tests

    httpd = Server(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    store.port = httpd.server_address[1]
    yield store
    httpd.shutdown()
    httpd.server_close()


def test_paths_auth_headers_and_round_trips(server, tmp_path):
    r = open_remote(f"http://bob:pw@127.0.0.1:{server.port}/my%20cache/", headers={"X-Team": "infra"})
    key = "cd" * 32
    assert r.get_action_result(key) is None
    ar = ActionResult(exit_code=0, stdout_raw=b"ok")
    r.put_action_result(key, ar)
    assert server.data[f"/my%20cache/ac/{key}"] == ar.SerializeToString()  # the body Bazel uses
    assert r.get_action_result(key) == ar
    data = os.urandom(3000)
    b = BlobRef.of_bytes(data)
    assert r.find_missing([b]) == {b}
    src = tmp_path / "src"
    src.write_bytes(data)
    r.put_blob(b, src)
    assert server.data[f"/my%20cache/cas/{b.hash}"] == data
    assert r.find_missing([b]) == set()
    assert r.get_blob(b, tmp_path / "out") and (tmp_path / "out").read_bytes() == data
    for method, path, headers in server.requests:
        assert path.startswith("/my%20cache/")
        assert headers["Authorization"] == "Basic Ym9iOnB3"
        assert headers["X-Team"] == "infra"
    puts = [h for m, _, h in server.requests if m == "PUT"]
    assert puts[-1]["Content-Length"] == str(len(data))
    r.close()


def test_connections_are_reused_and_stale_ones_retried(server, tmp_path):
    r = open_remote(f"http://127.0.0.1:{server.port}/")
    retried = []
    send = r._send

    def spy(conn, *args):
        try:
            return send(conn, *args)
        except Exception as e:
            retried.append(e)
            raise

    r._send = spy
    blobs = [BlobRef.of_bytes(bytes([i])) for i in range(3)]
    for b in blobs:
        r.find_missing([b])
    assert len(r._pool) == 1  # one kept-alive connection served all three
    server.drop_after_reply = True
    n = len(server.requests)
    assert r.find_missing(blobs[:1]) == set(blobs[:1])  # on the pooled connection, which the server then drops
    assert r.find_missing(blobs[:1]) == set(blobs[:1])  # the dead one fails, a fresh one answers
    assert len(server.requests) == n + 2
    assert retried, "the stale connection was not retried"
    assert r.find_missing(blobs) == set(blobs)  # parallel HEADs
    r.close()


def test_a_retry_never_lands_on_another_stale_connection(server):
    """After a server restart every idle pooled connection is dead: the
    retry must open a new one, not take the next dead one from the pool."""
    r = open_remote(f"http://127.0.0.1:{server.port}/")
    b = BlobRef.of_bytes(b"x")
    server.drop_after_reply = True
    stale = [r._new_conn() for _ in range(3)]
    for conn in stale:  # each answers once, and the server closes it after
        conn.request("HEAD", "/cas/" + b.hash)
        conn.getresponse().read()
    for conn in stale:
        r._give_back(conn)
    assert len(r._pool) == 3
    assert r.find_missing([b]) == {b}
    r.close()


def test_wrong_length_means_missing_or_corrupt(server, tmp_path):
    data = b"0123456789"
    b = BlobRef.of_bytes(data)
    server.data[f"/cas/{b.hash}"] = data
    server.length_lie = 5
    r = open_remote(f"http://127.0.0.1:{server.port}")
    assert r.find_missing([b]) == {b}  # a stored length that is not the size: upload it again
    with pytest.raises(CorruptBlob, match="15 bytes"):
        r.get_blob(b, tmp_path / "x")
    assert not (tmp_path / "x").exists()
    r.close()


def test_wrong_content_is_rejected(server, tmp_path):
    good = b"the right bytes"
    b = BlobRef.of_bytes(good)
    server.data[f"/cas/{b.hash}"] = b"the wrong bytes"  # same length
    warnings: list[str] = []
    safe = SafeRemote(open_remote(f"http://127.0.0.1:{server.port}"), warnings.append)
    assert safe.find_missing([b]) == set()  # looks present...
    assert safe.get_blob(b, tmp_path / "x") is False  # ...but is refused
    assert not (tmp_path / "x").exists() and list(tmp_path.iterdir()) == []
    assert len(warnings) == 1 and "corrupted data" in warnings[0]


def test_unparseable_action_result_is_corrupt(server):
    key = "ef" * 32
    server.data[f"/ac/{key}"] = b"\xff\xff\xff\xff"
    warnings: list[str] = []
    safe = SafeRemote(open_remote(f"http://127.0.0.1:{server.port}"), warnings.append)
    assert safe.get_action_result(key) is None
    assert safe.enabled and "corrupted data" in warnings[0]


@pytest.mark.parametrize("status, text", [(500, "HTTP 500"), (401, "check the credentials")])
def test_error_statuses(server, status, text):
    server.status = status
    r = open_remote(f"http://127.0.0.1:{server.port}")
    with pytest.raises(RemoteError, match=text):
        r.get_action_result("ab" * 32)
    with pytest.raises(RemoteError, match=text):
        r.put_blob(BlobRef.of_bytes(b"a"), b"a")
    r.close()


def test_a_truncated_upload_never_completes(server, tmp_path):
    src = tmp_path / "f"
    src.write_bytes(os.urandom(3 << 20))
    wrong = BlobRef(hashlib.sha256(b"other").hexdigest(), 3 << 20)
    warnings: list[str] = []
    safe = SafeRemote(open_remote(f"http://127.0.0.1:{server.port}"), warnings.append)
    safe.put_blob(wrong, src)
    assert f"/cas/{wrong.hash}" not in server.data
    assert safe.enabled and "not uploading" in warnings[0]
