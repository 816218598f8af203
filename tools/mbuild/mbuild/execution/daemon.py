"""The BuildKit daemon of one command, and the Docker engine behind it.

Opened on first use and shared by every thread of the command: analysis
resolves base images through it, execution solves on it. The Docker engine
API is only used where there is one (a ``docker://`` address), for images in
that engine: to check that a cached image is still there, tag, push or save
it, and to put a restored image in (its containerd store, or ``docker load``).

A build starts its daemon early (:meth:`Daemon.start`): the connection, the
engine API and the resolution of every base image WORKSPACE.toml names run in
a thread while the command checks its stamp and loads BUILD files, so
analysis finds them done (a tenth of a second that would otherwise come
before the first solve). What the early start finds is what analysis would
have found a moment later: the same calls on the same engine; an error it
meets is raised where analysis would meet it.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from functools import cached_property

from .engine import Engine, engine_for


class Daemon:
    def __init__(self, address: str) -> None:
        self.text = address
        self._client = None
        self._failed: BaseException | None = None  # why the connection could not be opened
        self._lock = threading.Lock()
        self._early: dict[str, tuple[dict, Future]] = {}  # platform -> (the images asked for, their resolution)

    @cached_property
    def address(self):
        """The parsed address (``docker://`` resolved through DOCKER_HOST and the docker context)."""
        from buildkit.address import parse_address

        return parse_address(self.text)

    def client(self):
        """The connected :class:`buildkit.Client` (jobs run in threads: one
        connection is shared, never two opened)."""
        with self._lock:
            if self._failed is not None:
                raise self._failed
            if self._client is None:
                from buildkit.client import Client

                try:
                    self._client = Client.open(self.address)
                except BaseException as e:
                    self._failed = e  # not tried twice (an unreachable address would make the user wait twice)
                    raise
            return self._client

    def start(self, images, platform: str) -> None:
        """Connect and resolve ``images`` (:class:`~mbuild.loading.workspace.BaseImage`) for
        ``platform`` in the background; :meth:`resolve` answers from it."""
        from .bases import try_resolve_bases

        images = list(images)
        future: Future = Future()
        self._early[platform] = ({i.name: i for i in images}, future)

        def run() -> None:
            try:
                client = self.client()
                future.set_result(try_resolve_bases(client, images, platform))
            except BaseException as e:  # noqa: BLE001 - met again, and raised, where analysis asks
                future.set_exception(e)

        threading.Thread(target=run, name="engine-start", daemon=True).start()

    def resolve(self, images, platform: str):
        """(resolved, why each other was not) for ``images`` at ``platform``,
        as :func:`~mbuild.execution.bases.try_resolve_bases` answers: from the
        early start when it asked for these very images."""
        from .bases import try_resolve_bases

        images = list(images)
        early = self._early.get(platform)
        if early is not None and all(early[0].get(i.name) == i for i in images):
            try:
                found, missing = early[1].result()
            except BaseException:  # noqa: BLE001 - asked again below, where the error is raised
                pass
            else:
                names = {i.name for i in images}
                return ({n: b for n, b in found.items() if n in names},
                        {n: why for n, why in missing.items() if n in names})
        return try_resolve_bases(self.client(), images, platform)

    @cached_property
    def engine(self) -> Engine | None:
        """The Docker engine behind the daemon, or None for a standalone buildkitd."""
        return engine_for(self.address)

    def close(self) -> None:
        for _, future in self._early.values():  # not closed under the early start's feet
            try:
                future.exception(timeout=5)
            except Exception:  # noqa: BLE001 - still running after 5 s: closed all the same
                pass
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
        engine = self.__dict__.pop("engine", None)  # (closed once: a build's daemon is closed by two owners)
        if engine is not None:
            engine.close()
