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
        self._lock = threading.Lock()
        self._connection: Future | None = None  # the client, once opening it began
        self._early: dict[str, tuple[dict, Future]] = {}  # platform -> (the images asked for, their resolution)
        self._closed = False

    @cached_property
    def address(self):
        """The parsed address (``docker://`` resolved through DOCKER_HOST and the docker context)."""
        from buildkit.address import parse_address

        return parse_address(self.text)

    def client(self):
        """The connected :class:`buildkit.Client` (jobs run in threads: one
        connection is shared, never two opened; a failure to open it is
        raised again, not retried: an unreachable address makes nobody wait twice)."""
        with self._lock:
            opening = self._connection is None
            if opening:
                self._connection = Future()
            connection = self._connection
        if opening:
            from buildkit.client import Client

            try:
                connection.set_result(Client.open(self.address))
            except Exception as e:
                connection.set_exception(e)
            except BaseException as e:  # Ctrl-C: whoever waits sees it; a later call tries again
                with self._lock:
                    self._connection = None
                connection.set_exception(e)
                raise
        return connection.result()

    def start(self, images, platform: str) -> None:
        """Connect, and resolve for ``platform`` those of ``images``
        (:class:`~mbuild.loading.workspace.BaseImage`) the engine holds, in
        the background; :meth:`resolve` answers from it."""
        from .. import background
        from .bases import try_resolve_bases

        images = list(images)
        future: Future = Future()
        self._early[platform] = ({i.name: i for i in images}, future)

        def run() -> None:
            try:
                client = self.client()
                held = self._held(images)
                found, missing = try_resolve_bases(client, held, platform) if held else ({}, {})
                future.set_result((found, missing, {i.name for i in held}))
            except BaseException as e:  # noqa: BLE001 - met again, and raised, where analysis asks
                future.set_exception(e)

        future.add_done_callback(lambda _: self._close_if_closed())
        background.start(run, "engine-start")  # (forks wait for it: see mbuild.background)

    def _held(self, images: list) -> list:
        """The images a local Docker engine has (by name): none behind another
        address. (Resolved early, at once; one the engine lacks may need a
        registry, and the build may not even use it.)"""
        docker = getattr(self.address, "docker", None)
        if not images or docker is None or docker.scheme != "unix":
            return []
        from ..fastpath import engine_image_ids

        ids = engine_image_ids([i.ref.split("@", 1)[0] for i in images], docker.path)
        return [image for image, found in zip(images, ids) if found]

    def resolve(self, images, platform: str):
        """(resolved, why each other was not) for ``images`` at ``platform``,
        as :func:`~mbuild.execution.bases.try_resolve_bases` answers: from the
        early start when it asked for these very images."""
        from .bases import try_resolve_bases

        images = list(images)
        early = self._early.get(platform)
        if early is not None and all(early[0].get(i.name) == i for i in images):
            try:
                found, missing, held = early[1].result()
            except BaseException:  # noqa: BLE001 - asked again below, where the error is raised
                pass
            else:
                names = {i.name for i in images}
                found = {n: b for n, b in found.items() if n in names}
                missing = {n: why for n, why in missing.items() if n in names}
                rest = [i for i in images if i.name not in held]  # the engine lacks them: asked now
                if rest:
                    more_found, more_missing = try_resolve_bases(self.client(), rest, platform)
                    found.update(more_found)
                    missing.update(more_missing)
                return found, missing
        return try_resolve_bases(self.client(), images, platform)

    @cached_property
    def engine(self) -> Engine | None:
        """The Docker engine behind the daemon, or None for a standalone buildkitd."""
        return engine_for(self.address)

    def close(self) -> None:
        """Close the connection and the engine's; an early start still under
        way closes them when it is done (never under its feet, never waited for)."""
        with self._lock:
            self._closed = True
        self._close_if_closed()

    def _close_if_closed(self) -> None:
        with self._lock:
            if not self._closed or any(not f.done() for _, f in self._early.values()):
                return
            connection, self._connection = self._connection, None
            self._closed = False  # (used again, it opens again)
        if connection is not None:
            if not connection.done():
                connection.add_done_callback(_close_connection)  # being opened by a job thread
            else:
                _close_connection(connection)
        engine = self.__dict__.pop("engine", None)  # (closed once: a build's daemon is closed by two owners)
        if engine is not None:
            engine.close()


def _close_connection(connection: Future) -> None:
    if connection.exception() is None:
        connection.result().close()
