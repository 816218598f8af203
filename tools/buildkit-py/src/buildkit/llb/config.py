"""The OCI image config a State carries (Env, User, WorkingDir, Cmd…).

Immutable: every ``with_*`` returns a new value. Env keeps Docker's
semantics: an ordered ``K=V`` list where setting an existing key replaces it
in place. The same values are the defaults of :meth:`State.run`.
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

from .errors import LLBError
from .platform import Platform

_KNOWN = ("Env", "User", "WorkingDir", "Entrypoint", "Cmd", "ExposedPorts", "Labels")
# Other image-config keys carried over from a base image. Docker's container
# config fields (Hostname, Image, Tty…) are not image settings and are dropped,
# as are OnBuild triggers (never inherited) and the Windows-only ArgsEscaped.
_CARRIED = ("Volumes", "StopSignal", "Healthcheck", "Shell")
_PORT = re.compile(r"^(\d{1,5})(?:-(\d{1,5}))?(?:/(tcp|udp|sctp))?$")


def clean_path(p: str) -> str:
    """Lexical clean like Go's ``path.Clean`` (``//a/./b/`` -> ``/a/b``)."""
    if p == "":
        return "."
    out = posixpath.normpath(p)
    if out.startswith("//"):
        out = "/" + out.lstrip("/")
    return out


def resolve_path(base: str, p: str) -> str:
    """``p`` made absolute against directory ``base`` (default ``/``), cleaned."""
    if p.startswith("/"):
        return clean_path(p)
    return clean_path(posixpath.join("/", base or "/", p))


def _split_env(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    return key, value


def env_set(env: Sequence[str], key: str, value: str) -> tuple[str, ...]:
    """Set ``key`` in a ``K=V`` list: replaced in place if present, else appended."""
    if not key or "=" in key:
        raise LLBError(f"invalid environment variable name {key!r}")
    item = f"{key}={value}"
    out = list(env)
    for i, existing in enumerate(out):
        if _split_env(existing)[0] == key:
            out[i] = item
            return tuple(out)
    out.append(item)
    return tuple(out)


def env_get(env: Sequence[str], key: str) -> str | None:
    for item in env:
        k, v = _split_env(item)
        if k == key:
            return v
    return None


def normalize_port(port: str | int) -> str:
    m = _PORT.match(str(port).strip().lower())
    if not m or not (0 < int(m[1]) < 65536) or (m[2] and not int(m[1]) <= int(m[2]) < 65536):
        raise LLBError(f"invalid exposed port {port!r}: want e.g. 8000, 8000/tcp or 53/udp")
    rng = m[1] + (f"-{m[2]}" if m[2] else "")
    return f"{rng}/{m[3] or 'tcp'}"


def _str_list(value: Any, what: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise LLBError(f"{what} must be a list of strings, got {value!r}")
    return tuple(str(v) for v in value)


@dataclass(frozen=True)
class ImageConfig:
    env: tuple[str, ...] = ()
    user: str = ""
    workdir: str = ""
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    exposed_ports: tuple[str, ...] = ()  # sorted, normalised "8000/tcp"
    labels: tuple[tuple[str, str], ...] = ()  # sorted by key
    extra: tuple[tuple[str, str], ...] = ()  # other config keys, values as canonical JSON
    cmd_from_base: bool = False  # Cmd came from the base image (ENTRYPOINT resets it)

    # ---- construction
    @classmethod
    def from_oci(cls, doc: Mapping[str, Any] | None) -> "ImageConfig":
        """From an image's config: the whole image JSON (``{"config": {...}}``)
        or just its ``config`` object."""
        if not doc:
            return cls()
        if not isinstance(doc, Mapping):
            raise LLBError(f"image config must be a JSON object, got {type(doc).__name__}")
        if not any(k in doc for k in _KNOWN):
            for outer in ("config", "Config"):  # the whole image JSON / docker inspect
                if isinstance(doc.get(outer), Mapping):
                    doc = doc[outer]
                    break
        env: tuple[str, ...] = ()
        for item in doc.get("Env") or ():
            k, v = _split_env(str(item))
            if k:
                env = env_set(env, k, v)
        ports = doc.get("ExposedPorts") or {}
        labels = doc.get("Labels") or {}
        extra = tuple(sorted(
            (k, json.dumps(v, sort_keys=True, separators=(",", ":")))
            for k, v in doc.items() if k in _CARRIED and v not in (None, "", {}, [])
        ))
        cmd = doc.get("Cmd")
        ep = doc.get("Entrypoint")
        return cls(
            env=env,
            user=str(doc.get("User") or ""),
            workdir=resolve_path("/", doc["WorkingDir"]) if doc.get("WorkingDir") else "",
            entrypoint=_str_list(ep, "Entrypoint") if ep is not None else None,
            cmd=_str_list(cmd, "Cmd") if cmd is not None else None,
            exposed_ports=tuple(sorted({normalize_port(p) for p in ports})),
            labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
            extra=extra,
            cmd_from_base=cmd is not None,
        )

    # ---- reading
    def get_env(self, key: str) -> str | None:
        return env_get(self.env, key)

    @property
    def cwd(self) -> str:
        """The working directory a run uses: WorkingDir, or ``/``."""
        return self.workdir or "/"

    # ---- changing
    def with_env(self, key: str, value: str) -> "ImageConfig":
        return replace(self, env=env_set(self.env, key, str(value)))

    def with_workdir(self, path: str) -> "ImageConfig":
        if not path:
            raise LLBError("workdir must not be empty")
        return replace(self, workdir=resolve_path(self.cwd, path))

    def with_user(self, user: str) -> "ImageConfig":
        return replace(self, user=str(user))

    def with_entrypoint(self, entrypoint: Sequence[str] | str | None) -> "ImageConfig":
        """Like Dockerfile ENTRYPOINT: a Cmd inherited from the base image is
        dropped (a Cmd set on this State is kept). A string is shell form."""
        ep = None if entrypoint is None else _argv(entrypoint)
        cmd = None if self.cmd_from_base else self.cmd
        return replace(self, entrypoint=ep, cmd=cmd, cmd_from_base=False)

    def with_cmd(self, cmd: Sequence[str] | str | None) -> "ImageConfig":
        return replace(self, cmd=None if cmd is None else _argv(cmd), cmd_from_base=False)

    def with_exposed_port(self, port: str | int) -> "ImageConfig":
        ports = set(self.exposed_ports) | {normalize_port(port)}
        return replace(self, exposed_ports=tuple(sorted(ports)))

    def with_label(self, key: str, value: str) -> "ImageConfig":
        if not key:
            raise LLBError("label key must not be empty")
        labels = dict(self.labels)
        labels[str(key)] = str(value)
        return replace(self, labels=tuple(sorted(labels.items())))

    # ---- output
    def to_oci_config(self) -> dict[str, Any]:
        """The ``config`` object of an OCI image config (only keys that are set)."""
        out: dict[str, Any] = {k: json.loads(v) for k, v in self.extra}
        if self.env:
            out["Env"] = list(self.env)
        if self.user:
            out["User"] = self.user
        if self.workdir:
            out["WorkingDir"] = self.workdir
        if self.entrypoint is not None:
            out["Entrypoint"] = list(self.entrypoint)
        if self.cmd is not None:
            out["Cmd"] = list(self.cmd)
        if self.exposed_ports:
            out["ExposedPorts"] = {p: {} for p in self.exposed_ports}
        if self.labels:
            out["Labels"] = dict(self.labels)
        return out

    def to_oci_image(self, platform: Platform) -> dict[str, Any]:
        """The image config JSON for the exporter attr ``containerimage.config``."""
        doc: dict[str, Any] = {"architecture": platform.architecture, "os": platform.os}
        if platform.variant:
            doc["variant"] = platform.variant
        doc["config"] = self.to_oci_config()
        doc["rootfs"] = {"type": "layers", "diff_ids": []}
        return doc


def _argv(value: Sequence[str] | str) -> tuple[str, ...]:
    if isinstance(value, str):
        return ("/bin/sh", "-c", value)
    return tuple(str(v) for v in value)
