"""Pure helpers for service identity and health-check payloads."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any


def version_string(name: str, version: str) -> str:
    """Return a ``name/version`` identifier, e.g. ``api/1.2.3``."""
    name, version = name.strip(), version.strip()
    if not name:
        raise ValueError("name must not be empty")
    if not version:
        raise ValueError("version must not be empty")
    return f"{name}/{version}"


def health_payload(
    service: str,
    version: str,
    *,
    now: datetime | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Build the JSON body of a ``GET /health`` answer.

    ``status`` is always ``"ok"``; ``now`` is injectable so the result is
    deterministic in tests. Extra keyword fields are merged in but may not
    override the standard ones.
    """
    when = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    payload: dict[str, Any] = {
        "status": "ok",
        "service": service,
        "version": version_string(service, version),
        "time": when.isoformat().replace("+00:00", "Z"),
    }
    clash = payload.keys() & extra.keys()
    if clash:
        raise ValueError(f"extra fields may not override: {sorted(clash)}")
    payload.update(extra)
    return payload
