"""The context a rule implementation runs in: the only way a rule reaches its
attributes, its dependencies' providers, workspace sources, base images,
fetching steps and workspace facts.

Everything a rule reads through the context is recorded as an input of its
action (``sources``, ``bases``, ``context`` facts), so action keys cover
exactly what the output depends on. Rule code cannot reach the context's
internals: names starting with ``_`` are refused in rule modules
(:mod:`mbuild.analysis.rule_modules`).
"""

from __future__ import annotations

import os
from types import MappingProxyType
from typing import Any, Iterable, Mapping

from buildkit import llb
from ..api.checks import workspace_path
from ..errors import ConfigError
from ..loading.labels import Label
from ..loading.workspace import BaseImage, Workspace
from .providers import Files, Provider, ResolvedBase, Stage, TargetInfo

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
# Where a step sees a declared build secret, as a Dockerfile's
# RUN --mount=type=secret,id=ID does: /run/secrets/ID.
SECRETS_DIR = "/run/secrets"
SECRET_SOURCE_KINDS = ("env", "file")  # a secret attribute's value: env:NAME or file:PATH
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


class Dep:
    """A dependency as a rule sees it: ``label``, ``kind`` and its providers,
    read by type: ``dep[PoetryVenv]``, ``PoetryVenv in dep``, ``dep.get(PoetryVenv)``."""

    def __init__(self, info: TargetInfo, ctx: "RuleContext") -> None:
        self._info = info
        self._ctx = ctx

    @property
    def label(self) -> Label:
        return self._info.label

    @property
    def kind(self) -> str:
        return self._info.kind

    def __contains__(self, provider_type: type) -> bool:
        return provider_type in self._info.providers

    def __getitem__(self, provider_type: type) -> Provider:
        found = self._info.providers.get(provider_type)
        if found is None:
            raise self._ctx.error(f"{self.label} ({self.kind}) does not provide "
                                  f"{getattr(provider_type, '__name__', provider_type)}")
        return found

    def get(self, provider_type: type, default: Any = None) -> Any:
        return self._info.providers.get(provider_type, default)


class RuleContext:
    """What a rule implementation gets: ``ctx.attr("srcs")``, ``ctx.dep(label)``,
    ``ctx.files(labels)``, ``ctx.stage(label)``, ``ctx.source(files)``,
    ``ctx.copy_sources(...)``, ``ctx.base("base")``, ``ctx.base_ref("image")``,
    ``ctx.fetching()``, ``ctx.error(...)``, and the facts ``label``, ``kind``,
    ``package``, ``platform``, ``workspace_name`` and ``output_relpath(...)``."""

    def __init__(self, target, schema, workspace: Workspace, deps: Mapping[Label, TargetInfo],
                 bases: Mapping[str, ResolvedBase], platform: str) -> None:
        self._target = target
        self._schema = schema
        self._workspace = workspace
        self._deps = deps
        self._resolved = bases
        self._platform = platform
        self._sources: set[str] = set()
        self._bases: dict[str, BaseImage] = {}
        self._facts: dict[str, Any] = {}
        self._secrets: dict[str, str] = {}  # secret id -> its declared source (env:NAME, file:PATH)
        self._ssh: set[str] = set()  # SSH agent ids its steps use

    # ------------------------------------------------------------------ facts

    @property
    def label(self) -> Label:
        """The target's label."""
        return self._target.label

    @property
    def kind(self) -> str:
        """The rule's name."""
        return self._target.kind

    @property
    def package(self) -> str:
        """The target's package ("" for the root package)."""
        return self._target.label.package

    @property
    def platform(self) -> str:
        """The platform being built, like ``linux/amd64`` (part of every key)."""
        return self._platform

    @property
    def workspace_name(self) -> str:
        """The workspace's name (WORKSPACE.toml ``name``); recorded in the key."""
        self._facts["workspace_name"] = self._workspace.name
        return self._workspace.name

    def output_relpath(self, name: str, path: str) -> str:
        """How a file this target generates as ``name`` (under its package's
        output folder) refers to the workspace file ``path``: the relative path
        from the generated file's folder. Recorded in the key."""
        for what, value in (("name", name), ("path", path)):
            if not _plain_relative(value):
                raise self.error(f"output_relpath: {what} {value!r} must be a relative path without '..'")
        out = os.path.join(str(self._workspace.output_dir), self.package, name)
        rel = os.path.relpath(os.path.join(str(self._workspace.root), path), os.path.dirname(out))
        self._facts[f"output_relpath({name}, {path})"] = rel
        return rel

    # ------------------------------------------------------------------ attributes

    def attr(self, name: str) -> Any:
        """The value of attribute ``name`` (its default when not set); a
        ``string_dict`` comes read-only (the target's attributes are its key)."""
        try:
            value = self._target.attrs[name]
        except KeyError:
            raise self.error(f"rule {self.kind} has no attribute {name!r}; declare it in the rule's attrs") from None
        return MappingProxyType(value) if isinstance(value, dict) else value

    def error(self, message: str) -> ConfigError:
        """A one-line error at the target's BUILD file line; ``raise ctx.error(...)``."""
        return self._target.location.error(f"{self.label}: {message}")

    # ------------------------------------------------------------------ dependencies

    def dep(self, label: Label) -> Dep:
        """A target named by one of this target's label attributes."""
        info = self._deps.get(label)
        if info is None:
            raise self.error(f"{label} is not a dependency of {self.label}; name it in a label attribute")
        return Dep(info, self)

    def files(self, labels: Iterable[Label]) -> tuple[str, ...]:
        """The workspace files of these deps (their Files), sorted and unique."""
        out: set[str] = set()
        for label in labels:
            out.update(self.dep(label)[Files].files)
        return tuple(sorted(out))

    def stage(self, label: Label) -> llb.State:
        """The LLB state of a dep that gives a Stage."""
        return self.dep(label)[Stage].state

    # ------------------------------------------------------------------ inputs

    def source(self, files: Iterable[str], name: str | None = None) -> llb.State:
        """A local source holding exactly these workspace files at their paths."""
        files = tuple(sorted(set(files)))
        self._sources.update(files)  # a missing one is reported, at this target's line, when digested
        return llb.local(
            WORKSPACE_LOCAL,
            include=files,
            shared_key_hint=f"{self._workspace.name}:{self.label}",
        ).with_name(name or f"[{self.label}] load {len(files)} source files")

    def copy_sources(self, st: llb.State, labels: Iterable[Label], into: str, owner: str | None = None) -> llb.State:
        """``st`` with the files of the deps ``labels`` (their Files) copied
        under ``into`` at their workspace paths (``apps/api/x.py`` -> ``<into>/apps/api/x.py``)."""
        return st.copy(self.source(self.files(labels)), "/", into.rstrip("/") + "/", owner=owner)

    def base(self, attr: str) -> llb.State:
        """The base image named by the ``base_image`` attribute ``attr``,
        pinned to the digest it resolved to, with its config."""
        image, resolved = self._base_image("base", attr)
        if resolved is None:
            return llb.image(image.pinned_ref, platform=self._platform)
        return llb.image(f"{image.ref}@{resolved.digest}", config=resolved.config, platform=self._platform)

    def base_ref(self, attr: str) -> str:
        """The reference ``ref@digest`` the ``base_image`` attribute ``attr``
        resolved to (as ``ctx.base``: the WORKSPACE.toml pin, else what
        BuildKit resolved the tag to), for rules that name an image rather
        than build on it, like a compose service run from a registry image.
        The digest is in the key, as for ``ctx.base``."""
        image, resolved = self._base_image("base_ref", attr)
        return f"{image.ref}@{resolved.digest}" if resolved is not None else image.pinned_ref

    def _base_image(self, method: str, attr: str):
        decl = self._schema.all_attrs.get(attr)
        if decl is None or decl.type != "base_image":
            raise self.error(f"{method}({attr!r}): rule {self.kind} has no base_image attribute {attr!r}; "
                             f"declare it with attr.base_image(...)")
        name = self._target.attrs[attr]
        if not name:
            raise self.error(f"attribute {attr!r} is empty; name a base image from WORKSPACE.toml [images]")
        image = self._workspace.images[name]  # analysis checked every base_image attribute's name
        self._bases[name] = image
        return image, self._resolved.get(name)

    def secret_mounts(self, secrets: str = "secrets", ssh: str = "ssh") -> list:
        """``run`` mounts for the build secrets and SSH agents the target
        declares: the ``string_dict`` attribute ``secrets`` (id ->
        ``env:NAME`` or ``file:PATH``, a path relative to the workspace root)
        and the ``string_list`` attribute ``ssh`` (agent ids, ``default`` for
        ``$SSH_AUTH_SOCK``). Each secret is a file at ``/run/secrets/<id>``
        (read-only, never in a layer), each agent a socket (the first one is
        ``SSH_AUTH_SOCK``): ``st.run(cmd, mounts=ctx.secret_mounts())``.

        The command line's ``--secret id=…`` and ``--ssh id=…`` override
        the declared sources. A secret's *value* is not part of the key (as
        in BuildKit); its id and declared source are (they are attributes)."""
        out = []
        for sid, spec in sorted(self._named_attr(secrets, "string_dict").items()):
            kind, _, where = spec.partition(":")
            if not _plain_id(sid) or kind not in SECRET_SOURCE_KINDS or not where:
                raise self.error(f"attribute {secrets!r}: {sid!r}: {spec!r}; write id = \"env:NAME\" or "
                                 f"\"file:PATH\" (ids: letters, digits, _ . -)")
            self._secrets[sid] = spec
            out.append(llb.secret(f"{SECRETS_DIR}/{sid}", id=sid))
        for i, aid in enumerate(self._named_attr(ssh, "string_list")):
            if not _plain_id(aid):
                raise self.error(f"attribute {ssh!r}: SSH agent id {aid!r}: use letters, digits, _ . - "
                                 f"(`default` is $SSH_AUTH_SOCK)")
            self._ssh.add(aid)
            out.append(llb.ssh(f"/run/buildkit/ssh_agent.{i}", id=aid))  # as the Dockerfile frontend names them
        return out

    def _named_attr(self, name: str, kind: str) -> Any:
        decl = self._schema.all_attrs.get(name)
        if decl is None or decl.type != kind:
            raise self.error(f"secret_mounts: rule {self.kind} has no {kind} attribute {name!r}; declare it "
                             f"(mb.secret_attrs() gives `secrets` and `ssh`)")
        return self._target.attrs[name]

    def fetching(self, *mounts) -> dict:
        """``run`` arguments for a step that downloads: the workspace CA
        bundle's secret mount and the variables tools read it from (when the
        workspace has one), plus ``mounts``: ``st.run(cmd, **ctx.fetching())``."""
        if not self._workspace.ca_bundle:
            return {"env": {}, "mounts": list(mounts)}
        ca = llb.secret(CA_PATH, id=CA_SECRET_ID, mode=0o444, optional=True)
        return {"env": dict(CA_ENV), "mounts": [ca, *mounts]}


def _plain_id(value: str) -> bool:
    return isinstance(value, str) and bool(value) and set(value) <= _ID_CHARS


def _plain_relative(path: str) -> bool:
    return isinstance(path, str) and bool(path) and workspace_path(path) is None
