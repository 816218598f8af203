"""The context a rule implementation runs in: its attributes, its deps'
results, and the only ways it may reach sources and base images.

Everything a rule reads through the context is recorded as an input of its
action (``sources``, ``bases``), so action keys cover exactly what the output
depends on.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from buildkit import llb
from ..errors import ConfigError
from ..loading.labels import Label
from ..loading.schema import Location
from ..loading.workspace import BaseImage, Workspace
from .providers import ResolvedBase, TargetInfo

# The name of the local source that holds workspace files; FileSync serves it
# from the workspace root with .dockerignore applied.
WORKSPACE_LOCAL = "workspace"
# Where fetching steps see the workspace's CA bundle (a secret mount: it never
# enters a layer), and the variables each tool reads it from.
CA_PATH = "/etc/ssl/certs/ca-certificates.crt"
CA_SECRET_ID = "mbuild-ca-bundle"
CA_ENV = {
    "SSL_CERT_FILE": CA_PATH,
    "PIP_CERT": CA_PATH,
    "REQUESTS_CA_BUNDLE": CA_PATH,
    "NODE_EXTRA_CA_CERTS": CA_PATH,
}


class RuleContext:
    def __init__(self, target, workspace: Workspace, deps: Mapping[Label, TargetInfo],
                 bases: Mapping[str, ResolvedBase], platform: str | None = None) -> None:
        self.label: Label = target.label
        self.kind: str = target.kind
        self.attrs: Mapping[str, Any] = target.attrs
        self.location: Location = target.location
        self.workspace = workspace
        self._deps = deps
        self._resolved = bases
        self.platform = platform
        self._sources: set[str] = set()
        self._bases: dict[str, BaseImage] = {}

    # ------------------------------------------------------------------ attributes

    def attr(self, name: str) -> Any:
        return self.attrs[name]

    def error(self, message: str) -> ConfigError:
        """A one-line error at the target's BUILD file line."""
        return self.location.error(f"{self.label}: {message}")

    # ------------------------------------------------------------------ dependencies

    def dep(self, label: Label) -> TargetInfo:
        return self._deps[label]

    def files_of(self, labels: Iterable[Label]) -> tuple[str, ...]:
        """The workspace files of these deps (filegroups), sorted and unique."""
        out: set[str] = set()
        for label in labels:
            info = self._deps[label]
            if not info.files:
                raise self.error(f"{label} ({info.kind}) provides no files")
            out.update(info.files)
        return tuple(sorted(out))

    def stage_of(self, label: Label) -> llb.State:
        info = self._deps[label]
        if info.stage is None:
            raise self.error(f"{label} ({info.kind}) is not an image stage")
        return info.stage

    # ------------------------------------------------------------------ inputs

    def source(self, files: Iterable[str], name: str | None = None) -> llb.State:
        """A local source holding exactly these workspace files at their paths."""
        files = tuple(sorted(set(files)))
        self._sources.update(files)  # a missing one is reported, at this target's line, when digested
        return llb.local(
            WORKSPACE_LOCAL,
            include=files,
            shared_key_hint=f"{self.workspace.name}:{self.label}",
        ).with_name(name or f"[{self.label}] load {len(files)} source files")

    def base(self, name: str) -> llb.State:
        """The base image ``name`` from WORKSPACE.toml, pinned to the digest it resolved to."""
        image = self.workspace.images.get(name)
        if image is None:
            known = ", ".join(sorted(self.workspace.images)) or "none"
            raise self.error(f"unknown base image {name!r}; WORKSPACE.toml [images] has: {known}")
        self._bases[name] = image
        resolved = self._resolved.get(name)
        if resolved is None:
            return llb.image(image.pinned_ref, platform=self.platform)
        return llb.image(f"{image.ref}@{resolved.digest}", config=resolved.config, platform=self.platform)

    def copy_sources(self, st: llb.State, labels: Iterable[Label], into: str, owner: str | None = None) -> llb.State:
        """``st`` with the files of the filegroups ``labels`` copied under ``into``
        at their workspace paths (``apps/api/x.py`` -> ``<into>/apps/api/x.py``)."""
        return st.copy(self.source(self.files_of(labels)), "/", into.rstrip("/") + "/", owner=owner)

    def fetching(self, *mounts) -> dict:
        """``run`` arguments for a step that downloads: the CA bundle's secret
        mount and variables (when the workspace has one), plus ``mounts``."""
        return {"env": self.fetch_env(), "mounts": [*self.fetch_mounts(), *mounts]}

    def fetch_env(self) -> dict[str, str]:
        """Env for a step that downloads (PyPI, npm): points tools at the CA bundle."""
        return dict(CA_ENV) if self.workspace.ca_bundle else {}

    def fetch_mounts(self) -> list:
        """Mounts for a step that downloads: the workspace CA bundle, as a secret."""
        if not self.workspace.ca_bundle:
            return []
        return [llb.secret(CA_PATH, id=CA_SECRET_ID, mode=0o444, optional=True)]

    # ------------------------------------------------------------------ result

    def result(self, **fields: Any) -> TargetInfo:
        from ..rules import RULES

        rule = RULES[self.kind]
        sources = self._sources | set(fields.pop("sources", ()))
        return TargetInfo(
            label=self.label,
            kind=self.kind,
            sources=tuple(sorted(sources)),
            bases=tuple(self._bases[k] for k in sorted(self._bases)),
            deps=tuple(self._deps_used()),
            attrs=self.attrs,
            rule_version=rule.version,
            location=self.location,
            **fields,
        )

    def _deps_used(self) -> list[Label]:
        return sorted(self._deps)
