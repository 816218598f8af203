"""The BuildKit daemon of one command, and the Docker engine behind it.

Opened on first use and shared by every thread of the command: analysis
resolves base images through it, execution solves on it. The Docker engine
API is only used where there is one (a ``docker://`` address), for images in
that engine: to check that a cached image is still there, tag, push or save
it, and to put a restored image in (its containerd store, or ``docker load``).
"""

from __future__ import annotations

import threading
from functools import cached_property

from .engine import Engine, engine_for


class Daemon:
    def __init__(self, address: str) -> None:
        self.text = address
        self._client = None
        self._lock = threading.Lock()

    @cached_property
    def address(self):
        """The parsed address (``docker://`` resolved through DOCKER_HOST and the docker context)."""
        from buildkit.address import parse_address

        return parse_address(self.text)

    def client(self):
        """The connected :class:`buildkit.Client` (jobs run in threads: one
        connection is shared, never two opened)."""
        with self._lock:
            if self._client is None:
                from buildkit.client import Client

                self._client = Client.open(self.address)
            return self._client

    @cached_property
    def engine(self) -> Engine | None:
        """The Docker engine behind the daemon, or None for a standalone buildkitd."""
        return engine_for(self.address)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
        if "engine" in self.__dict__ and self.engine is not None:
            self.engine.close()
