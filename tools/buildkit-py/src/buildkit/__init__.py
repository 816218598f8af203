"""buildkit-py: a Python client for BuildKit.

Build LLB graphs with an immutable State API (:mod:`buildkit.llb`), solve them
on a BuildKit daemon (:class:`Client`) with local sources, secrets
(:mod:`buildkit.secrets`) and SSH agents (:mod:`buildkit.sshforward`)
served from this process, export images, tarballs or trees
(:mod:`buildkit.exporters`), stream progress (:mod:`buildkit.progress`), and
drive the gateway for image resolution, frontends such as the Dockerfile
frontend (:mod:`buildkit.dockerfile`), multi-platform results
(:mod:`buildkit.gateway`, :mod:`buildkit.multiplatform`) and attestations
(:mod:`buildkit.attestations`).

Daemons: the Docker engine's embedded BuildKit (``docker://``, honouring
``DOCKER_HOST`` and docker contexts, unix or TCP with TLS), or a standalone
buildkitd (``unix://``, ``tcp://`` with TLS). Errors are
:class:`~buildkit.errors.BuildKitError`.

The names below are imported lazily, so ``import buildkit.llb`` alone does
not load gRPC.
"""

from __future__ import annotations

__version__ = "0.3.0"

_LAZY = {
    "Client": "client", "SolveRequest": "client", "SolveResult": "client", "CacheEntry": "client",
    "Gateway": "gateway", "BuildResult": "gateway", "ResolvedImage": "gateway", "Ref": "gateway",
    "platform_build": "multiplatform",
    "LocalDir": "filesync", "SecretSource": "secrets", "SSHAgent": "sshforward", "TLSConfig": "tls",
    "BuildKitError": "errors", "SolveError": "errors", "Unreachable": "errors", "Unsupported": "errors",
    "InvalidAddress": "errors", "LLBError": "errors", "DaemonGone": "errors",
}
_MODULES = ("attestations", "capabilities", "dockerfile", "exporters", "llb", "progress", "secrets", "sshforward")
__all__ = sorted(_LAZY) + list(_MODULES)


def __getattr__(name: str):
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    if name in _MODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'buildkit' has no attribute {name!r}")
