"""Attestations: provenance and SBOMs that BuildKit attaches to an image.

They are asked for in a solve's ``frontend_attrs`` (an LLB solve, a frontend
solve or a gateway build alike); BuildKit runs them after the build and the
image exporters write them beside the image: an ``image`` or ``oci`` export
becomes an index holding, per platform, the image manifest and an
attestation manifest (``vnd.docker.reference.type: attestation-manifest``)
whose layers are in-toto statements. ``local`` and ``tar`` exports get them
as JSON files. They need BuildKit v0.11 or newer (checked before the solve).

::

    SolveRequest(definition=st, exports=(exporters.oci_tarball("app.tar"),),
                 frontend_attrs={**provenance(mode="max"), **sbom("registry.local/scanner:1")})

SBOMs are made by running a *generator* image on the result: BuildKit's
default, ``docker/buildkit-syft-scanner``, comes from Docker Hub, so on a
machine without registry access give a generator image the engine has (any
image whose command writes in-toto SPDX statements into
``$BUILDKIT_SCAN_DESTINATION`` for the tree at ``$BUILDKIT_SCAN_SOURCE``).
"""

from __future__ import annotations

PROVENANCE_KEY = "attest:provenance"
SBOM_KEY = "attest:sbom"
PROVENANCE_MODES = ("min", "max")


def _params(params: dict[str, object]) -> str:
    return ",".join(f"{k.replace('_', '-')}={v}" for k, v in params.items() if v is not None)


def provenance(mode: str = "min", **params: object) -> dict[str, str]:
    """``attest:provenance`` for ``frontend_attrs``: SLSA provenance of the build.

    ``mode``: ``min`` (the build's inputs) or ``max`` (also every step's
    definition and the build's parameters). Other parameters are passed as
    BuildKit reads them (``inline_only=True`` becomes ``inline-only=True``,
    ``version="v1"``).
    """
    if mode not in PROVENANCE_MODES:
        raise ValueError(f"provenance mode {mode!r}: use min or max")
    return {PROVENANCE_KEY: _params({"mode": mode, **params})}


def sbom(generator: str, **params: object) -> dict[str, str]:
    """``attest:sbom`` for ``frontend_attrs``: an SPDX SBOM made by running the
    ``generator`` image (a name the engine can resolve) on the result."""
    if not generator:
        raise ValueError("an SBOM needs a generator image")
    return {SBOM_KEY: _params({"generator": generator, **params})}
