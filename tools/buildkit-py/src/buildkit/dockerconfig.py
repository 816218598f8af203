"""The Docker CLI's client configuration: ``$DOCKER_CONFIG/config.json``.

Read the way the docker CLI reads it, for the two things a BuildKit client
needs from it:

* **registry credentials** (:func:`credentials`): ``credHelpers`` for the
  host, else ``credsStore``, else the base64 ``auth`` of ``auths``; a helper
  is the program ``docker-credential-<name>``, asked with ``get`` and the
  server URL on stdin, answering ``{"Username", "Secret"}``;
* **the current context** (:func:`current_context`): ``DOCKER_CONTEXT``, else
  ``currentContext``, and that context's endpoint and TLS files under
  ``contexts/meta/<sha256(name)>/meta.json`` and ``contexts/tls/<sha256>/docker/``.

Written here rather than taken from the docker SDK, which would make the SDK
(and ``requests``) a dependency of every client for ~100 lines of file
reading. ``config_dir()`` honours ``DOCKER_CONFIG`` as the CLI does.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

# Docker Hub goes by several names; config.json keys it by its index URL.
DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io")
_HUB_HOSTS = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
HELPER_TIMEOUT = 30.0


def config_dir(environ: Mapping[str, str] = os.environ) -> Path:
    return Path(environ.get("DOCKER_CONFIG") or Path.home() / ".docker")


def load_config(environ: Mapping[str, str] = os.environ) -> dict:
    """config.json as a dict; an absent or unreadable file is empty."""
    try:
        doc = json.loads((config_dir(environ) / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _host_of(key: str) -> str:
    key = key.split("://", 1)[-1]
    return key.split("/", 1)[0]


def _keys_for(host: str) -> tuple[str, ...]:
    return DOCKER_HUB_KEYS if host in _HUB_HOSTS else (host, f"https://{host}", f"http://{host}")


def _from_helper(helper: str, server: str) -> tuple[str, str] | None:
    try:
        out = subprocess.run([f"docker-credential-{helper}", "get"], input=server.encode(),
                             capture_output=True, timeout=HELPER_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None  # "credentials not found in native keychain": anonymous
    try:
        doc = json.loads(out.stdout)
    except ValueError:
        return None
    user, secret = doc.get("Username") or "", doc.get("Secret") or ""
    # A helper answers an identity token with the user "<token>".
    return ("", secret) if user == "<token>" else (user, secret)


def credentials(host: str, config: Mapping | None = None) -> tuple[str, str]:
    """(username, secret) for a registry host, or ("", "") for anonymous.

    ``secret`` is a password, or an identity token when ``username`` is empty.
    """
    config = load_config() if config is None else config
    keys = _keys_for(host)
    helpers = config.get("credHelpers") or {}
    for key in keys:
        if key in helpers:
            return _from_helper(helpers[key], key) or ("", "")
    auths = config.get("auths") or {}
    entry = next((auths[k] for k in keys if k in auths), None)
    if entry is None:
        entry = next((v for k, v in auths.items() if _host_of(k) == host), None)
    if config.get("credsStore"):
        found = _from_helper(config["credsStore"], keys[0])
        if found:
            return found
    if not isinstance(entry, dict):
        return "", ""
    if entry.get("identitytoken"):
        return "", entry["identitytoken"]
    if entry.get("auth"):
        try:
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return "", ""
        return user, password
    return entry.get("username") or "", entry.get("password") or ""


@dataclass(frozen=True)
class ContextEndpoint:
    """The docker endpoint of a named context."""

    name: str
    host: str  # unix:///… or tcp://…
    skip_tls_verify: bool = False
    tls_dir: Path | None = None  # holds ca.pem, cert.pem, key.pem when the context has TLS


def current_context_name(environ: Mapping[str, str] = os.environ, config: Mapping | None = None) -> str:
    """The context the docker CLI would use (``DOCKER_HOST`` aside): "default" unless set."""
    if environ.get("DOCKER_CONTEXT"):
        return environ["DOCKER_CONTEXT"]
    config = load_config(environ) if config is None else config
    return config.get("currentContext") or "default"


def context_endpoint(name: str, environ: Mapping[str, str] = os.environ) -> ContextEndpoint | None:
    """The docker endpoint of context ``name``; None for "default" or an unknown name."""
    if name == "default":
        return None
    digest = hashlib.sha256(name.encode()).hexdigest()
    base = config_dir(environ) / "contexts"
    try:
        meta = json.loads((base / "meta" / digest / "meta.json").read_text())
        docker = meta["Endpoints"]["docker"]
        host = docker["Host"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    tls = base / "tls" / digest / "docker"
    return ContextEndpoint(name, host, bool(docker.get("SkipTLSVerify")), tls if tls.is_dir() else None)
