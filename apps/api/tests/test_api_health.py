"""Start the API on an ephemeral port and query it (stdlib + pytest only)."""

import json
import threading
import urllib.error
import urllib.request

import pytest

from api.server import make_server


@pytest.fixture()
def base_url():
    server = make_server("127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_health_ok(base_url):
    with urllib.request.urlopen(f"{base_url}/health", timeout=5) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/json"
        body = json.load(resp)
    assert body["status"] == "ok"
    assert body["service"] == "api"
    assert body["version"] == "api/0.1.0"


def test_unknown_path_is_404(base_url):
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{base_url}/nope", timeout=5)
    assert err.value.code == 404


def test_port_env_override(monkeypatch):
    monkeypatch.setenv("PORT", "0")
    server = make_server("127.0.0.1")
    try:
        assert server.server_address[1] != 8000
    finally:
        server.server_close()
