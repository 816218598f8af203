"""What engine a daemon is, for messages: ``Docker engine 26.1.5`` or ``BuildKit v0.13.2``.

A Docker engine's embedded BuildKit often reports no version of its own
(``v0.0.0+unknown`` in distribution builds), so behind a ``docker://``
address the engine's ``GET /version`` names it instead.
"""

from __future__ import annotations

import http.client
import json

from .dockerhost import DockerHost

_UNKNOWN = ("", "unknown", "v0.0.0", "v0.0.0+unknown")


class EngineConnection(http.client.HTTPConnection):
    """An HTTP connection to a Docker engine's API over its socket (unix, or TCP with TLS)."""

    def __init__(self, host: DockerHost, timeout: float) -> None:
        super().__init__("docker", timeout=timeout)
        self._docker = host

    def connect(self) -> None:
        self.sock = self._docker.dial(self.timeout)


def docker_engine_version(host: DockerHost, timeout: float = 5.0) -> str | None:
    """The engine's version (``GET /version``), or None when it does not say."""
    conn = EngineConnection(host, timeout)
    try:
        conn.request("GET", "/version")
        resp = conn.getresponse()
        if resp.status != 200:
            return None
        return json.loads(resp.read()).get("Version") or None
    except (OSError, ValueError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def describe(buildkit_version: str, docker: DockerHost | None) -> str:
    """The engine as messages name it; ``docker`` is the engine behind a docker:// address."""
    bk = "" if buildkit_version in _UNKNOWN else buildkit_version
    if docker is not None:
        version = docker_engine_version(docker)
        name = f"Docker engine {version}" if version else "Docker engine (version unknown)"
        return f"{name} (BuildKit {bk})" if bk else name
    return f"BuildKit {bk}" if bk else "BuildKit (version unknown)"
