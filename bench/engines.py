"""The engines the bench runs on.

* The **shared engine** (``/var/run/docker.sock``): other people use it, so
  its build cache is never pruned; the bench only remembers the image ids its
  own runs produced and removes its bake tags and the ids nobody tags any more
  (:class:`SharedImages`).
* A **fresh engine** per run for the cold and remote scenarios
  (:func:`fresh_engine`): ``scripts/private_engine.py``'s ``PrivateEngine``, a
  containerd + dockerd of their own with an empty content store, snapshots
  and BuildKit cache (cache mounts included), a bridge with NAT and FORWARD
  rules so build steps reach PyPI and npm; removed whole afterwards. Both
  sides reach it through ``DOCKER_HOST`` (mbuild honours it like the docker
  CLI does).

The base images on a fresh engine are brought in (untimed) by
``PrivateEngine.import_bases``, through ``scripts/env-up``: the stand-ins
the first engine got by ``docker import`` are ``docker load``-ed, so a fresh
engine has the very digests the remote caches were filled with, as a CI
runner that pulls them would.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

from settings import BAKE_TAGS, BASES, ROOT

sys.path.insert(0, str(ROOT / "scripts"))
from private_engine import PrivateEngine, docker0_present  # noqa: E402  (scripts/ is not a package)


def engine_env(eng: PrivateEngine) -> dict[str, str | None]:
    """``eng.env()`` as overrides for :meth:`harness.Harness.run` (None: unset)."""
    env = eng.env()
    overrides: dict[str, str | None] = {k: v for k, v in env.items() if os.environ.get(k) != v}
    overrides.update({k: None for k in os.environ if k not in env})
    return overrides


def has_image(tag: str, docker_host: str | None = None) -> bool:
    cmd = ["docker", *(["-H", docker_host] if docker_host else []), "image", "inspect", tag]
    return subprocess.run(cmd, capture_output=True).returncode == 0


@contextlib.contextmanager
def fresh_engine(tmp: Path) -> Iterator[PrivateEngine]:
    """A new private engine with the base images loaded; removed (network included) on exit."""
    # Short: unix socket paths are limited to 107 bytes.
    eng = PrivateEngine(tempfile.mkdtemp(prefix="eng.", dir=tmp))
    eng.start()
    try:
        eng.import_bases(ROOT, BASES)
        yield eng
    finally:
        # Ctrl-C or SIGTERM now would leave a bridge and iptables rules behind: deliver it afterwards.
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            eng.remove()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
        if not docker0_present():
            raise SystemExit("bench: docker0 is gone: the shared engine's containers have no network; stopping")


class SharedImages:
    """Image ids the bench's runs produced on the shared engine, for the cleanup at the end."""

    def __init__(self) -> None:
        self.before = set(_image_ids())
        self.seen: set[str] = set()

    def note(self, tags: list[str]) -> None:
        for tag in tags:
            p = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", tag], capture_output=True, text=True)
            if p.returncode == 0:
                self.seen.add(p.stdout.strip())

    def cleanup(self) -> None:
        """Remove the bake tags, then every id the runs made that no tag names any more."""
        subprocess.run(["docker", "rmi", *BAKE_TAGS], capture_output=True)
        for image_id in sorted(self.seen - self.before):
            tags = subprocess.run(["docker", "image", "inspect", "-f", "{{len .RepoTags}}", image_id],
                                  capture_output=True, text=True).stdout.strip()
            if tags == "0":
                subprocess.run(["docker", "rmi", image_id], capture_output=True)


def _image_ids() -> list[str]:
    out = subprocess.run(["docker", "images", "-a", "-q", "--no-trunc"], capture_output=True, text=True).stdout
    return out.split()
