"""Remote hits: an empty local cache, answered from a remote cache both sides filled once.

bake imports a registry cache (``cache-from``, filled with ``cache-to
…,mode=max``); mbuild asks the REAPI cache (``--remote``, filled with
``--remote-upload``). Both servers are local (no network latency), and they
are different servers, so server speed is part of the comparison.
"""

from __future__ import annotations

import subprocess
import urllib.request
from pathlib import Path

import commands
from engines import engine_env
from harness import log
from scenarios.base import Context, OnFreshEngine, Result, Scenario
from scenarios.warm import INCREMENTAL
from settings import BAKE_TAGS, BENCH, CACHE_REPO, PROJECT_TAGS, REAPI, REGISTRY

_REMOTES = ("Limits: registry and REAPI server are local (no network latency) and different servers, so "
            "server speed is part of the comparison.")


def populate(ctx: Context) -> None:
    """Fill both remote caches from the shared engine, once per bench run; removed at the end."""
    if "remotes" in ctx.cleanups:
        return
    ctx.cleanups["remotes"] = delete_registry_cache
    log("  populating the registry cache (bake cache-to, mode=max) and the REAPI cache (--remote-upload)")
    ctx.h.must(commands.bake(*commands.cache_to()), cwd=BENCH, name="populate-registry")
    ctx.h.must(commands.mbuild_build(ctx.fresh_cache(), "--remote", REAPI, "--remote-upload"), name="populate-reapi")


def delete_registry_cache() -> None:
    """Best effort: delete the bench's cache manifests from the local registry."""
    accept = ", ".join(["application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
                        "application/vnd.docker.distribution.manifest.v2+json",
                        "application/vnd.docker.distribution.manifest.list.v2+json"])
    for tag in commands.BAKE_TARGETS:
        try:
            req = urllib.request.Request(f"http://{REGISTRY}/v2/{CACHE_REPO}/manifests/{tag}", method="HEAD",
                                         headers={"Accept": accept})
            digest = urllib.request.urlopen(req, timeout=10).headers.get("Docker-Content-Digest")
            if digest:
                urllib.request.urlopen(urllib.request.Request(
                    f"http://{REGISTRY}/v2/{CACHE_REPO}/manifests/{digest}", method="DELETE"), timeout=10)
        except Exception:
            pass


class RemoteFresh(OnFreshEngine):
    name = "remote"
    title = "remote hit, fresh engine (REAPI vs registry cache)"
    max_ratio = INCREMENTAL
    target = f"remote hit on a fresh engine: ≤ {INCREMENTAL}"
    notes = ("Each run (either side) on a **fresh private engine** (`scripts/private_engine.py`: empty content "
             "store, snapshots and BuildKit cache), the base images loaded first (untimed); both sides reach it "
             f"through `DOCKER_HOST`. bake: `--set <target>.cache-from=type=registry,ref={REGISTRY}/{CACHE_REPO}:"
             f"<target>`. mbuild: a new empty `--cache-dir`, `--remote {REAPI}`. Both load the images into that "
             "engine. " + _REMOTES)

    def prepare(self, ctx: Context) -> None:
        ctx.warm_up()
        populate(ctx)

    def bake_args(self, ctx: Context) -> list[str]:
        return commands.cache_from()

    def mbuild_args(self, ctx: Context) -> list[str]:
        return ["--remote", REAPI]

    def profile(self, ctx: Context) -> None:
        with ctx.fresh_engine() as eng:
            ctx.profile("remote", commands.mbuild_build(ctx.fresh_cache(), "--remote", REAPI)[1:],
                        env=engine_env(eng))


class RemoteShared(Scenario):
    name = "remote-shared"
    title = "remote hit on the shared engine (images removed)"
    notes = ("Informational, no target. On the shared engine: mbuild: `docker rmi` of its two images, a new empty "
             f"`--cache-dir`, `--remote {REAPI}`; bake: `docker rmi` of its two tags, then `cache-from` the "
             "registry cache. The shared engine's BuildKit cache is warm and may not be pruned, so bake (and "
             "mbuild, if it solved) gets local cache hits: bake's figure is a lower bound of a real registry-cache "
             "rebuild; the fresh-engine scenario is the fair one. " + _REMOTES)

    def measure(self, ctx: Context, res: Result) -> None:
        ctx.warm_up()
        populate(ctx)

        def b(i):
            subprocess.run(["docker", "rmi", *BAKE_TAGS], capture_output=True)
            return ctx.bake(*commands.cache_from(), name="rshared-bake")

        def m(i):
            subprocess.run(["docker", "rmi", *PROJECT_TAGS], capture_output=True)
            r = ctx.mbuild("--remote", REAPI, cache=ctx.fresh_cache(), name="rshared-mbuild")
            if r.ok and "(cached)" not in Path(r.log).read_text(errors="replace"):
                r.note = "not answered from the remote"
            return r
        ctx.alternate(res, b, m)
