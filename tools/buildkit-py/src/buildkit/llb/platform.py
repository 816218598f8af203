"""Target platforms (``os/arch[/variant]``), normalised the way containerd does."""

from __future__ import annotations

import platform as _host
from dataclasses import dataclass

from .errors import LLBError

# Architecture aliases to their canonical GOARCH-style names.
_ARCH_ALIASES = {
    "x86_64": "amd64",
    "x86-64": "amd64",
    "aarch64": "arm64",
    "i386": "386",
    "i686": "386",
    "armhf": "arm",
    "armel": "arm",
}


@dataclass(frozen=True)
class Platform:
    os: str = "linux"
    architecture: str = "amd64"
    variant: str = ""

    def __str__(self) -> str:
        parts = [self.os, self.architecture] + ([self.variant] if self.variant else [])
        return "/".join(parts)

    @classmethod
    def parse(cls, spec: "str | Platform") -> "Platform":
        """``linux/amd64``, ``linux/arm64/v8``, ``arm64`` (os defaults to linux)."""
        if isinstance(spec, Platform):
            return spec.normalized()
        parts = [p.strip() for p in str(spec).strip().lower().split("/")]
        if not parts or not all(parts) or len(parts) > 3:
            raise LLBError(f"invalid platform {spec!r}: want os/arch[/variant], e.g. linux/amd64")
        if len(parts) == 1:
            parts = ["linux", parts[0]]
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else "").normalized()

    def normalized(self) -> "Platform":
        os_ = self.os.lower()
        if os_ == "macos":
            os_ = "darwin"
        arch = _ARCH_ALIASES.get(self.architecture.lower(), self.architecture.lower())
        variant = self.variant.lower()
        if arch == "arm64" and variant in ("8", "v8"):
            variant = ""
        elif arch == "arm":
            if variant in ("", "7"):
                variant = "v7"
            elif variant in ("5", "6", "8"):
                variant = "v" + variant
        elif arch == "amd64" and variant == "v1":
            variant = ""
        return Platform(os_, arch, variant)


def host_platform() -> Platform:
    """The platform containers built here default to: linux on this machine's CPU."""
    machine = _host.machine().lower()
    if machine in ("armv7l", "armv7"):
        return Platform("linux", "arm", "v7")
    if machine in ("armv6l", "armv6"):
        return Platform("linux", "arm", "v6")
    if machine in ("amd64", "x64"):
        machine = "amd64"
    return Platform("linux", machine or "amd64").normalized()


def as_platform(value: "str | Platform | None", default: Platform | None = None) -> Platform:
    if value is None:
        return default if default is not None else host_platform()
    return Platform.parse(value)
