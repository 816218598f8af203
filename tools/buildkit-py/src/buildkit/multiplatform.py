"""Multi-platform images: one State per platform, exported as one image index.

BuildKit's image exporters write an index when a build returns refs keyed by
platform with the ``refs.platforms`` metadata, each with its own image config
(this is what the Dockerfile frontend does for ``--platform a,b``).
:func:`platform_build` makes that build for :meth:`Client.build`::

    from buildkit import exporters, llb
    from buildkit.multiplatform import platform_build

    states = {p: llb.scratch(platform=p).mkfile("/arch", p) for p in ("linux/amd64", "linux/arm64")}
    client.build(platform_build(states), SolveRequest(exports=(exporters.oci_tarball("out.tar"),)))

A platform's steps run on a worker for that platform (emulated, for a RUN on
another CPU); copy and file steps run anywhere, so a State that only copies
files (say, a binary cross-built on this machine) needs no emulation.
"""

from __future__ import annotations

from typing import Any, Mapping

from .errors import BuildKitError
from .gateway import BuildResult, Gateway
from .llb.platform import Platform


def platform_build(states: Mapping[str | Platform, Any],
                   configs: Mapping[str | Platform, Mapping[str, Any]] | None = None):
    """A build function solving each platform's State (or Definition) and
    returning them as one multi-platform result.

    The image config of each platform is ``configs[platform]`` when given,
    else the State's own :meth:`~buildkit.llb.State.image_config` for that
    platform (so its ``architecture``/``os`` are the platform's).
    """
    if not states:
        raise ValueError("platform_build needs at least one platform")
    given = {str(Platform.parse(p)): c for p, c in (configs or {}).items()}
    plan = []
    for platform, state in states.items():
        p = Platform.parse(platform)
        config = given.get(str(p))
        if config is None and hasattr(state, "image_config"):
            config = state.image_config(p)
        plan.append((p, state, config))

    def build(gateway: Gateway) -> BuildResult:
        result = BuildResult()
        for p, state, config in plan:
            solved = gateway.solve(state)
            if solved.ref is None:
                raise BuildKitError(f"the {p} definition solved to several refs; give one State per platform")
            result.add_platform(p, solved.ref, config)
        return result

    return build
