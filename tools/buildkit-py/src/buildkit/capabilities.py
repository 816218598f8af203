"""The features a request may need from the daemon, and the caps that say it has them.

A daemon reports two sets of caps through the gateway's Ping: LLB caps (what
the solver and exporters can do) and gateway caps (what a client-driven build
may call). Each :class:`Feature` names the caps it needs and the BuildKit
release that introduced them, so a request an older engine cannot serve fails
before it is sent, with one line such as::

    Docker engine 20.10.24 at docker:///var/run/docker.sock does not support
    attestations (attest:provenance, attest:sbom): it lacks the cap
    exporter.image.attestations (BuildKit v0.11 and newer have it)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class Feature:
    """Something a request uses, as an error message names it."""

    name: str
    llb: tuple[str, ...] = ()  # LLB caps it needs
    gateway: tuple[str, ...] = ()  # gateway (frontend API) caps it needs
    since: str = ""  # the first BuildKit release with all of them

    def missing(self, llb_caps: Iterable[str], gateway_caps: Iterable[str]) -> list[str]:
        """The caps this feature needs that the daemon did not report enabled."""
        have_llb, have_gw = set(llb_caps), set(gateway_caps)
        return [c for c in self.llb if c not in have_llb] + [c for c in self.gateway if c not in have_gw]

    def explain(self, missing: Iterable[str]) -> str:
        """``<name>: it lacks the cap(s) …`` for :class:`~buildkit.errors.Unsupported`."""
        caps = list(missing)
        text = f"{self.name}: it lacks the cap{'s' if len(caps) > 1 else ''} {', '.join(caps)}"
        return f"{text} (BuildKit {self.since} and newer have it)" if self.since else text


GATEWAY_RESULT = Feature("client-driven builds (returning a result through the gateway)",
                         gateway=("return", "proto.refarray"), since="v0.7")
RESOLVE_IMAGE = Feature("resolving image configs through the gateway", gateway=("resolveimage",), since="v0.3")
RESOLVE_MODE = Feature("image resolve modes (pull, local) through the gateway",
                       gateway=("resolveimage.resolvemode",), since="v0.3")
INLINE_RESULTS = Feature("gateway solves that return their result", gateway=("solve.inlinereturn",), since="v0.3")
EVALUATE = Feature("gateway solves evaluated at once (evaluate=True)", gateway=("gateway.solve.evaluate",),
                   since="v0.8")
FRONTEND_INPUTS = Feature("frontend inputs (named definitions given to a frontend)",
                          gateway=("frontend.inputs",), since="v0.7")
READ_FILE = Feature("reading files from a result through the gateway", gateway=("readfile",), since="v0.3")
MULTI_PLATFORM = Feature("multi-platform results (refs keyed by platform)",
                         gateway=("returnmap", "proto.refarray"), since="v0.7")
ATTESTATIONS = Feature("attestations (attest:provenance, attest:sbom)",
                       llb=("exporter.image.attestations",), since="v0.11")
MULTIPLE_EXPORTERS = Feature("more than one exporter in a solve", llb=("exporter.multiple",), since="v0.13")
