"""Checks of attribute values, for ``mb.attr.<type>(..., check=...)``.

A check takes the attribute's value (after type checking: a str, a tuple of
str…) and returns None when it is fine, else what is wrong and what to write
instead; the BUILD file's loading reports it at the target's line, so a
mistake is found by ``mbuild query`` already, not written into an image or a
compose file. Part of the public API as ``mb.checks``.
"""

from __future__ import annotations

import re
from typing import Iterable

__all__ = ["exposed_ports", "port_mappings", "numeric_owner", "workspace_path"]

_PORTS = r"(\d{1,5})(?:-(\d{1,5}))?"
_EXPOSED = re.compile(rf"{_PORTS}(?:/(tcp|udp|sctp))?")
# compose's short syntax: [[HOST_IP:][HOST_PORT]:]CONTAINER_PORT[/PROTOCOL] (an IP may go with no host port)
_IP = r"\d{1,3}(?:\.\d{1,3}){3}|\[[0-9A-Fa-f:.]+\]"
_MAPPING = re.compile(rf"(?:(?P<ip>{_IP}):(?:(?P<h1>\d{{1,5}})(?:-(?P<h2>\d{{1,5}}))?)?:"
                      rf"|(?P<g1>\d{{1,5}})(?:-(?P<g2>\d{{1,5}}))?:)?"
                      rf"(?P<c1>\d{{1,5}})(?:-(?P<c2>\d{{1,5}}))?(?:/(?:tcp|udp|sctp))?")
_OWNER = re.compile(r"(\d+)(?::(\d+))?")


def _range(low: str | None, high: str | None) -> tuple[int, int] | str:
    first, last = int(low), int(high) if high else int(low)
    if not 1 <= first <= 65535 or not 1 <= last <= 65535:
        return "ports are 1 to 65535"
    if last < first:
        return f"the range {low}-{high} goes down"
    return first, last


def exposed_ports(values: Iterable[str]) -> str | None:
    """Ports an image listens on: ``8000``, ``8000/tcp``, ``53/udp``, ``8000-8010``."""
    for value in values:
        m = _EXPOSED.fullmatch(value)
        if not m:
            return f"{value!r} is not a port; write one like 8000, 8000/tcp or 53/udp"
        span = _range(m.group(1), m.group(2))
        if isinstance(span, str):
            return f"{value!r}: {span}"
    return None


def port_mappings(values: Iterable[str]) -> str | None:
    """Published ports in compose's short syntax: ``8000``, ``8080:80``,
    ``127.0.0.1:8080:80``, ``127.0.0.1::80`` (any free host port),
    ``8000-8010:8000-8010``, each with an optional
    ``/tcp``, ``/udp`` or ``/sctp``."""
    for value in values:
        m = _MAPPING.fullmatch(value)
        if not m:
            return (f"{value!r} is not a port mapping; write CONTAINER_PORT, HOST_PORT:CONTAINER_PORT or "
                    f"HOST_IP:HOST_PORT:CONTAINER_PORT, like 8000:8000 or 127.0.0.1:8080:80")
        ip = m.group("ip")
        if ip and not ip.startswith("[") and any(int(part) > 255 for part in ip.split(".")):
            return f"{value!r}: {ip} is not an IPv4 address"
        container = _range(m.group("c1"), m.group("c2"))
        low, high = (m.group("h1"), m.group("h2")) if ip else (m.group("g1"), m.group("g2"))
        host = _range(low, high) if low else None
        for span in (container, host):
            if isinstance(span, str):
                return f"{value!r}: {span}"
        if host is not None and container[1] != container[0] and host[1] - host[0] != container[1] - container[0]:
            return f"{value!r}: the host and container ranges must be as long as each other"
    return None


def numeric_owner(value: str) -> str | None:
    """``UID`` or ``UID:GID`` as numbers (``1000:1000``), or empty. A user
    name is refused: BuildKit looks it up in the image's /etc/passwd and takes
    a name it does not find as root, without an error."""
    if not value or _OWNER.fullmatch(value):
        return None
    return (f"{value!r} must be numbers, UID or UID:GID like 1000:1000 (a user name the image does not have "
            f"would silently give root); `docker run --rm IMAGE id NAME` tells a user's numbers")


def workspace_path(value: str) -> str | None:
    """A path inside the workspace, relative to its root (``apps/web``), or
    empty: no leading ``/`` and no empty, ``.`` or ``..`` parts."""
    if not value or (not value.startswith("/") and all(p not in ("", ".", "..") for p in value.split("/"))):
        return None
    return f"{value!r} must be a workspace-relative path like apps/web (no leading /, no '.' or '..' parts)"
