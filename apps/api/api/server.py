"""A tiny stdlib HTTP service exposing ``GET /health``."""

from __future__ import annotations

import json
import os
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from packaging.version import Version  # the one PyPI dependency (root pyproject)
from py_core import health_payload

from api import __version__

SERVICE = "api"
DEFAULT_PORT = 8000
# Normalised through packaging so "0.1.0" and "0.1" both read "0.1.0"-style PEP 440.
VERSION = str(Version(__version__))


class Handler(BaseHTTPRequestHandler):
    server_version = f"ai-mono-{SERVICE}/{VERSION}"

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        if self.path.split("?", 1)[0] == "/health":
            self._send_json(HTTPStatus.OK, health_payload(SERVICE, VERSION))
        else:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": "not found"})

    def _send_json(self, status: HTTPStatus, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt: str, *args) -> None:
        # One line per request on stdout (container logs), not stderr.
        print(f"{self.address_string()} {fmt % args}", flush=True)


def make_server(host: str = "0.0.0.0", port: int | None = None) -> ThreadingHTTPServer:
    """Bind the service; ``port`` defaults to $PORT, else 8000 (0 = ephemeral)."""
    if port is None:
        port = int(os.environ.get("PORT", DEFAULT_PORT))
    return ThreadingHTTPServer((host, port), Handler)
