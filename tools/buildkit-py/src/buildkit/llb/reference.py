"""Docker image references, normalised to their full form.

``python:3.11-slim`` -> ``docker.io/library/python:3.11-slim``,
``foo/bar`` -> ``docker.io/foo/bar:latest``; a registry host (anything with a
dot or a port, or ``localhost``) is kept; a digest is kept, and with a digest
and no tag no ``:latest`` is added. The grammar is the one of the
distribution/reference package, restated here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import LLBError

DEFAULT_DOMAIN = "docker.io"
_LEGACY_DOMAIN = "index.docker.io"
_OFFICIAL_PREFIX = "library/"
_NAME_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEP = r"(?:[._]|__|-+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEP}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

_REFERENCE = re.compile(
    rf"^(?P<domain>{_DOMAIN})/(?P<path>{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$"
)
_IMAGE_ID = re.compile(r"^[a-f0-9]{64}$")
_DIGEST_HEX_LEN = {"sha256": 64, "sha384": 96, "sha512": 128}


@dataclass(frozen=True)
class ImageRef:
    domain: str
    path: str
    tag: str = ""
    digest: str = ""

    @property
    def name(self) -> str:
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        s = self.name
        if self.tag:
            s += ":" + self.tag
        if self.digest:
            s += "@" + self.digest
        return s


def _split_domain(ref: str) -> tuple[str, str]:
    slash = ref.find("/")
    first = ref[:slash] if slash >= 0 else ""
    looks_like_host = slash >= 0 and (
        any(c in first for c in ".:") or first == "localhost" or first.lower() != first
    )
    if looks_like_host:
        domain, rest = first, ref[slash + 1:]
    else:
        domain, rest = DEFAULT_DOMAIN, ref
    if domain == _LEGACY_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in rest:
        rest = _OFFICIAL_PREFIX + rest
    return domain, rest


def parse_image_ref(ref: str) -> ImageRef:
    """Parse and normalise; a missing tag (and no digest) becomes ``latest``."""
    if not isinstance(ref, str) or not ref:
        raise LLBError(f"invalid image reference {ref!r}: empty")
    if _IMAGE_ID.match(ref):
        raise LLBError(
            f"invalid image reference {ref!r}: a bare 64-hex string is an image ID, "
            "not a repository name; use name@sha256:<hex>"
        )
    domain, rest = _split_domain(ref)
    repo = rest.split("@", 1)[0].split(":", 1)[0]
    if repo.lower() != repo:
        raise LLBError(f"invalid image reference {ref!r}: repository name must be lowercase")
    m = _REFERENCE.match(f"{domain}/{rest}")
    if not m:
        raise LLBError(f"invalid image reference {ref!r}")
    name_len = len(m["domain"]) + 1 + len(m["path"])
    if name_len > _NAME_MAX:
        raise LLBError(f"invalid image reference {ref!r}: name longer than {_NAME_MAX} characters")
    digest = m["digest"] or ""
    if digest:
        algo, _, hexpart = digest.partition(":")
        want = _DIGEST_HEX_LEN.get(algo)
        if want is None:
            raise LLBError(f"invalid image reference {ref!r}: unsupported digest algorithm {algo!r}")
        if len(hexpart) != want or hexpart.lower() != hexpart:
            raise LLBError(f"invalid image reference {ref!r}: {algo} digest needs {want} lowercase hex digits")
    tag = m["tag"] or ("" if digest else "latest")
    return ImageRef(m["domain"], m["path"], tag, digest)


def normalize_image_ref(ref: str) -> str:
    """``alpine`` -> ``docker.io/library/alpine:latest``."""
    return str(parse_image_ref(ref))
