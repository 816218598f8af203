"""A few Docker engine API calls over its unix socket, at the IO edge.

Used on the no-op path (is the image still there, under this digest?) and to
read base images. Written on http.client rather than the docker SDK because
importing the SDK costs more than a whole no-op build is allowed to take;
the SDK remains in use for tests and rarer paths.
"""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any, BinaryIO
from urllib.parse import quote

DEFAULT_SOCKET = "/var/run/docker.sock"


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("docker", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


class EngineError(Exception):
    pass


class Engine:
    def __init__(self, socket_path: str = DEFAULT_SOCKET, timeout: float = 30.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def _request(self, method: str, path: str, body: Any = None, headers: dict | None = None) -> tuple[int, bytes]:
        conn = _UnixConnection(self.socket_path, self.timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read()
        except OSError as e:
            raise EngineError(f"Docker engine at unix://{self.socket_path}: {e}") from None
        finally:
            conn.close()

    def inspect_image(self, ref: str) -> dict | None:
        status, data = self._request("GET", f"/images/{quote(ref, safe='')}/json")
        if status == 404:
            return None
        if status != 200:
            raise EngineError(f"inspecting image {ref}: HTTP {status}: {data[:200]!r}")
        return json.loads(data)

    def image_id(self, ref: str) -> str | None:
        found = self.inspect_image(ref)
        return found.get("Id") if found else None

    def tag(self, source: str, name: str) -> None:
        repo, _, tag = name.rpartition(":") if ":" in name.rsplit("/", 1)[-1] else (name, "", "latest")
        status, data = self._request("POST", f"/images/{quote(source, safe='')}/tag?repo={quote(repo)}&tag={quote(tag)}")
        if status not in (200, 201):
            raise EngineError(f"tagging {source} as {name}: HTTP {status}: {data[:200]!r}")

    def load(self, tarball: BinaryIO, size: int) -> str:
        """``docker load`` of a docker or OCI archive; returns the engine's answer."""
        status, data = self._request("POST", "/images/load?quiet=1", body=tarball,
                                     headers={"Content-Type": "application/x-tar", "Content-Length": str(size)})
        if status != 200:
            raise EngineError(f"loading image: HTTP {status}: {data[:300]!r}")
        return data.decode("utf-8", "replace")
