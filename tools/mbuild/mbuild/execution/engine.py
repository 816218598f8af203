"""A few Docker engine API calls, at the IO edge: is an image there (under
this digest), tag, push or save it, load an archive; and the engine's
containerd image store, where a local engine's can be reached.

The engine is the one every docker tool would use (``DOCKER_HOST``, the
docker context, else ``/var/run/docker.sock``; unix or TCP with TLS), found
by :mod:`buildkit.dockerhost`, or the engine behind a ``docker://`` BuildKit
address. Written on http.client (buildkit-py's EngineConnection) rather than the docker SDK because importing
the SDK costs more than a whole no-op build is allowed to take; the SDK
remains in use for tests.

A standalone buildkitd (``unix://``, ``tcp://``) has no engine behind it:
then :func:`engine_for` returns None and images are exported, not loaded.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from typing import Any, BinaryIO
from urllib.parse import quote

from buildkit.dockerhost import DockerHost
from buildkit.engineinfo import EngineConnection


class EngineError(Exception):
    pass


class Engine:
    def __init__(self, host: DockerHost | None = None, timeout: float = 30.0) -> None:
        if host is None:
            from buildkit.dockerhost import from_environment

            host = from_environment()
        self.host = host
        self.timeout = timeout
        self._image_store = None
        self._image_store_found = False
        self._lock = threading.Lock()  # job threads restore images side by side

    def image_store(self):
        """The engine's containerd image store (:class:`buildkit.imagestore.ContainerdImageStore`),
        when it is local and reachable from here; else None (then ``load`` is the way in)."""
        with self._lock:
            if not self._image_store_found:
                self._image_store_found = True
                if self.host.scheme == "unix":
                    from buildkit.imagestore import ContainerdImageStore, find_containerd

                    address = find_containerd(self.host.path)
                    self._image_store = ContainerdImageStore(address) if address else None
            return self._image_store

    def close(self) -> None:
        if self._image_store is not None:
            self._image_store.close()

    def _request(self, method: str, path: str, body: Any = None, headers: dict | None = None) -> tuple[int, bytes]:
        conn = EngineConnection(self.host, self.timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read()
        except OSError as e:
            raise EngineError(f"Docker engine at {self.host}: {e}") from None
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
        repo, tag = _split_tag(name)
        status, data = self._request("POST", f"/images/{quote(source, safe='')}/tag?repo={quote(repo)}&tag={quote(tag)}")
        if status not in (200, 201):
            raise EngineError(f"tagging {source} as {name}: HTTP {status}: {data[:200]!r}")

    def push(self, name: str, auth: str = "") -> str:
        """``docker push`` of ``name`` (with its tag) as the engine stores it;
        ``auth`` is the ``X-Registry-Auth`` value (:func:`registry_auth`).
        Returns the digest the registry got; EngineError with the engine's
        message if the push failed."""
        repo, tag = _split_tag(name)
        headers = {"X-Registry-Auth": auth or _ANONYMOUS}
        conn = EngineConnection(self.host, max(self.timeout, 600.0))
        try:
            conn.request("POST", f"/images/{quote(repo, safe='')}/push?tag={quote(tag)}", headers=headers)
            resp = conn.getresponse()
            if resp.status != 200:
                raise EngineError(f"pushing {name}: HTTP {resp.status}: {resp.read()[:300]!r}")
            digest = ""
            for line in resp:  # one JSON message a line: progress, then the pushed digest or an error
                if not line.strip():
                    continue
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if msg.get("error"):
                    raise EngineError(f"pushing {name}: {msg['error']}")
                # The classic store says it in "aux"; the containerd store only in the last status line.
                found = _PUSHED.search(msg.get("status") or "")
                digest = (msg.get("aux") or {}).get("Digest") or (found.group(1) if found else digest)
        except OSError as e:
            raise EngineError(f"Docker engine at {self.host}: pushing {name}: {e}") from None
        finally:
            conn.close()
        if not digest:
            raise EngineError(f"pushing {name}: the engine did not say which digest it pushed")
        return digest

    def save(self, name: str, out: BinaryIO) -> None:
        """``docker save`` of ``name`` into ``out`` (with the containerd image
        store: an OCI layout holding the image's own manifest, or index, and
        a ``manifest.json`` for ``docker load``)."""
        conn = EngineConnection(self.host, max(self.timeout, 600.0))
        try:
            conn.request("GET", f"/images/get?names={quote(name, safe='')}")
            resp = conn.getresponse()
            if resp.status != 200:
                raise EngineError(f"saving {name}: HTTP {resp.status}: {resp.read()[:300]!r}")
            while chunk := resp.read(1 << 20):
                out.write(chunk)
        except OSError as e:
            raise EngineError(f"Docker engine at {self.host}: saving {name}: {e}") from None
        finally:
            conn.close()

    def load(self, tarball: BinaryIO, size: int) -> str:
        """``docker load`` of a docker or OCI archive; returns the engine's answer."""
        status, data = self._request("POST", "/images/load?quiet=1", body=tarball,
                                     headers={"Content-Type": "application/x-tar", "Content-Length": str(size)})
        if status != 200:
            raise EngineError(f"loading image: HTTP {status}: {data[:300]!r}")
        return data.decode("utf-8", "replace")


_PUSHED = re.compile(r"digest: (sha256:[0-9a-f]{64})")
# An empty credential set: the engine then pushes anonymously.
_ANONYMOUS = base64.urlsafe_b64encode(b"{}").decode()


def _split_tag(name: str) -> tuple[str, str]:
    """``repo:tag`` -> (repo, tag), ``latest`` when the name has none."""
    if ":" in name.rsplit("/", 1)[-1]:
        repo, _, tag = name.rpartition(":")
        return repo, tag
    return name, "latest"


def registry_auth(username: str, secret: str, server: str) -> str:
    """The ``X-Registry-Auth`` header for a push: credentials as the docker
    CLI sends them (an identity token when there is no user name)."""
    doc = {"username": username, "password": secret, "serveraddress": server} if username else \
        {"identitytoken": secret, "serveraddress": server}
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode()


def engine_for(address) -> Engine | None:
    """The Docker engine behind a BuildKit address (``buildkit.transport.Address``),
    or None for a standalone buildkitd."""
    return Engine(address.docker) if address.scheme == "docker" and address.docker is not None else None
