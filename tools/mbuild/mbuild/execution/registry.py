"""Resolving a tag to its manifest digest through a registry (for ``mbuild lock``).

The OCI distribution API: ``HEAD /v2/<repo>/manifests/<tag>`` answers the
digest in ``Docker-Content-Digest``. Registries that want a token say so with
``WWW-Authenticate: Bearer realm=…,service=…``; an anonymous token is fetched
and the request retried. Mirrors from WORKSPACE.toml are tried first, as the
engine would. Local registries (localhost, 127.0.0.0/8) speak plain HTTP.
Written on urllib: two requests do not justify a registry client library.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Mapping, Sequence

ACCEPT = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])
_API_HOSTS = {"docker.io": "registry-1.docker.io"}


def _base_url(host: str) -> str:
    host = _API_HOSTS.get(host, host)
    plain = host.split(":")[0] in ("localhost",) or host.startswith("127.")
    return f"{'http' if plain else 'https'}://{host}"


def _bearer_token(challenge: str, repo: str, timeout: float, basic: str | None = None) -> str | None:
    params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    realm = params.get("realm")
    if not challenge.lower().startswith("bearer") or not realm:
        return None
    query = {"scope": f"repository:{repo}:pull"}
    if "service" in params:
        query["service"] = params["service"]
    req = urllib.request.Request(f"{realm}?{urllib.parse.urlencode(query)}",
                                 headers={"Authorization": basic} if basic else {})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        doc = json.load(resp)
    return doc.get("token") or doc.get("access_token")


def _basic(credentials: tuple[str, str] | None) -> str | None:
    if not credentials or not credentials[1]:
        return None
    from ..cache.remote.base import basic_auth_header

    return basic_auth_header(*credentials)


def _head_digest(base: str, repo: str, tag: str, timeout: float,
                 credentials: tuple[str, str] | None = None) -> str:
    """The ``Docker-Content-Digest`` of ``repo:tag``; LookupError if the registry
    does not answer with one (``code`` 404 when it does not have it)."""
    url = f"{base}/v2/{repo}/manifests/{tag}"
    headers = {"Accept": ACCEPT}
    basic = _basic(credentials)
    for attempt in range(2):
        req = urllib.request.Request(url, method="HEAD", headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                digest = resp.headers.get("Docker-Content-Digest")
                if not digest:
                    raise LookupError(f"{url} answered without Docker-Content-Digest")
                return digest
        except urllib.error.HTTPError as e:
            challenge = e.headers.get("WWW-Authenticate", "")
            if e.code == 401 and attempt == 0 and challenge:
                if challenge.lower().startswith("basic") and basic:
                    headers["Authorization"] = basic
                    continue
                token = _bearer_token(challenge, repo, timeout, basic)
                if token:
                    headers["Authorization"] = f"Bearer {token}"
                    continue
            raise RegistryAnswer(f"{url}: HTTP {e.code}", e.code) from None
    raise RegistryAnswer(f"{url}: not authorised", 401)


class RegistryAnswer(LookupError):
    """A registry answered, without the digest: ``code`` is its HTTP status."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def pushed_digest(ref: str, credentials: tuple[str, str] | None, timeout: float = 10.0) -> str | None:
    """The digest the registry's tag ``ref`` points at now, or None when it
    has no such tag (or cannot be asked: then a push decides)."""
    from buildkit.llb import parse_image_ref

    parsed = parse_image_ref(ref)
    try:
        return _head_digest(_base_url(parsed.domain), parsed.path, parsed.tag or "latest", timeout, credentials)
    except (LookupError, OSError, ValueError):
        return None


def resolve_tag(ref: str, mirrors: Mapping[str, Sequence[str]] = {}, timeout: float = 10.0) -> str:
    """The manifest digest ``ref`` (a tag) names now; LookupError if no registry answers."""
    from buildkit.llb import parse_image_ref

    parsed = parse_image_ref(ref)
    if parsed.digest:
        return parsed.digest
    bases = [m.rstrip("/") for m in mirrors.get(parsed.domain, ())] + [_base_url(parsed.domain)]
    errors = []
    for base in bases:
        if "://" not in base:
            base = _base_url(base)
        try:
            return _head_digest(base, parsed.path, parsed.tag or "latest", timeout)
        except (LookupError, OSError, ValueError) as e:
            errors.append(str(e))
    raise LookupError("; ".join(errors))
