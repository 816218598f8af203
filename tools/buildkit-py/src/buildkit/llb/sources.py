"""Source States: ``image``, ``local``, ``git``, ``http`` and ``scratch``.

Identifiers and attrs are the ones BuildKit's source ops read (solver/pb
attr keys); each source declares the caps of the attrs it uses.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from typing import Any, Mapping, Sequence

from . import caps as C
from .config import ImageConfig, clean_path
from .errors import LLBError
from .ops import Output, SourceNode
from .platform import Platform, as_platform
from .reference import normalize_image_ref
from .state import State

RESOLVE_MODES = ("default", "pull", "local")
_SCHEME = re.compile(r"^([a-zA-Z0-9]+)://")
_SCP = re.compile(r"^([a-zA-Z0-9-_]+)@([a-zA-Z0-9-.]+):(.*?)(?:\?(.*?))?(?:#(.*))?$")
_GIT_SCHEMES = ("http", "https", "ssh", "git")


def _source(identifier: str, attrs: Mapping[str, str], caps: set[str], platform: Platform,
            op_platform: bool = False, local: bool = False, config: ImageConfig | None = None) -> State:
    node = SourceNode(identifier=identifier, attrs=tuple(sorted(attrs.items())),
                      platform=platform if op_platform else None, caps=frozenset(caps), local=local)
    return State(output=Output(node, 0), config=config or ImageConfig(), platform=platform)


# One encoder for every call: json.dumps with options builds a new one each time.
_GO_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _json_list(items: Sequence[str]) -> str:
    """A JSON string list written the way Go's encoding/json writes it."""
    if isinstance(items, str):
        raise LLBError(f"expected a list of patterns, got the string {items!r}")
    text = _GO_JSON.encode([str(i) for i in items])
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text


def scratch(platform: str | Platform | None = None) -> State:
    """The empty filesystem."""
    return State(output=None, platform=as_platform(platform))


def image(ref: str, platform: str | Platform | None = None, resolve_mode: str = "default",
          config: Mapping[str, Any] | ImageConfig | None = None) -> State:
    """A registry image. ``config`` (the image's OCI config, if known) seeds the
    State's env, workdir, user, entrypoint, cmd, ports and labels. The platform
    is ``platform`` or the host's; the config's own architecture is not read."""
    if resolve_mode not in RESOLVE_MODES:
        raise LLBError(f"resolve_mode {resolve_mode!r}: want one of {', '.join(RESOLVE_MODES)}")
    plat = as_platform(platform)
    attrs: dict[str, str] = {}
    caps = {C.SOURCE_IMAGE}
    if resolve_mode != "default":
        attrs["image.resolvemode"] = resolve_mode
        if resolve_mode == "pull":
            caps.add(C.SOURCE_IMAGE_RESOLVE_MODE)
    cfg = config if isinstance(config, ImageConfig) else ImageConfig.from_oci(config)
    return _source("docker-image://" + normalize_image_ref(ref), attrs, caps, plat,
                   op_platform=True, config=cfg)


def local(name: str, include: Sequence[str] = (), exclude: Sequence[str] = (),
          follow_paths: Sequence[str] = (), shared_key_hint: str | None = None,
          unique: str | None = None, session: str | None = None,
          platform: str | Platform | None = None) -> State:
    """A directory the client sends over the session's FileSync, by ``name``.

    ``local.session`` stays unset unless ``session`` is given (the daemon
    then uses the Solve's session). ``unique`` only changes the op digest; see
    :meth:`State.marshal` for the per-solve default.
    """
    if not name:
        raise LLBError("local source needs a name")
    attrs: dict[str, str] = {}
    caps = {C.SOURCE_LOCAL}
    if session:
        attrs["local.session"] = session
        caps.add(C.SOURCE_LOCAL_SESSION_ID)
    if include:
        attrs["local.includepattern"] = _json_list(include)
        caps.add(C.SOURCE_LOCAL_INCLUDE_PATTERNS)
    if follow_paths:
        attrs["local.followpaths"] = _json_list(follow_paths)
        caps.add(C.SOURCE_LOCAL_FOLLOW_PATHS)
    if exclude:
        attrs["local.excludepatterns"] = _json_list(exclude)
        caps.add(C.SOURCE_LOCAL_EXCLUDE_PATTERNS)
    if shared_key_hint:
        attrs["local.sharedkeyhint"] = shared_key_hint
        caps.add(C.SOURCE_LOCAL_SHARED_KEY_HINT)
    if unique is not None:
        attrs["local.unique"] = unique
        caps.add(C.SOURCE_LOCAL_UNIQUE)
    return _source("local://" + name, attrs, caps, as_platform(platform), local=True)


def _parse_git_url(url: str) -> tuple[str, str, str, str, str]:
    """(scheme, host, path, remote-without-fragment, fragment)."""
    m = _SCHEME.match(url)
    if m:
        scheme = m.group(1).lower()
        if scheme not in _GIT_SCHEMES:
            raise LLBError(f"git url {url!r}: unsupported protocol {scheme!r}")
        parts = urllib.parse.urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
        remote = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        return scheme, host, parts.path, remote, parts.fragment
    m = _SCP.match(url)
    if m:
        user, host, path, query, fragment = m.groups()
        remote = f"{user}@{host}:{path}" + (f"?{query}" if query else "")
        return "ssh", host, path, remote, fragment or ""
    raise LLBError(f"git url {url!r}: unknown protocol")


def git(remote_url: str, ref: str = "", keep_git_dir: bool = False, subdir: str = "",
        auth_token_secret: str = "GIT_AUTH_TOKEN", auth_header_secret: str = "GIT_AUTH_HEADER",
        known_ssh_hosts: str | None = None, mount_ssh_sock: str | None = None,
        platform: str | Platform | None = None) -> State:
    """A git checkout. ``https://``, ``ssh://``, ``git://`` and ``git@host:path``
    URLs; a bare ``host/path`` means https. A ``#ref[:subdir]`` fragment on
    the URL is used when ``ref``/``subdir`` are not given."""
    if not _SCHEME.match(remote_url) and not _SCP.match(remote_url):
        remote_url = "https://" + remote_url
    scheme, host, path, remote, fragment = _parse_git_url(remote_url)
    if fragment and not ref and not subdir:
        ref, _, subdir = fragment.partition(":")
    subdir = clean_path("/" + subdir).lstrip("/") if subdir else ""
    ident = host + clean_path("/" + path)
    if ref or subdir:
        ident += "#" + ref + (":" + subdir if subdir else "")

    attrs: dict[str, str] = {"git.fullurl": remote}
    caps = {C.SOURCE_GIT, C.SOURCE_GIT_FULL_URL}
    if keep_git_dir:
        attrs["git.keepgitdir"] = "true"
        caps.add(C.SOURCE_GIT_KEEP_DIR)
    if auth_token_secret:
        attrs["git.authtokensecret"] = auth_token_secret
    if auth_header_secret:
        attrs["git.authheadersecret"] = auth_header_secret
    if (auth_token_secret, auth_header_secret) != ("GIT_AUTH_TOKEN", "GIT_AUTH_HEADER"):
        caps.add(C.SOURCE_GIT_HTTP_AUTH)
    if scheme == "ssh":
        if known_ssh_hosts:
            attrs["git.knownsshhosts"] = known_ssh_hosts.rstrip("\n") + "\n"
        caps.add(C.SOURCE_GIT_KNOWN_SSH_HOSTS)
        attrs["git.mountsshsock"] = mount_ssh_sock or "default"
        caps.add(C.SOURCE_GIT_MOUNT_SSH_SOCK)
    return _source("git://" + ident, attrs, caps, as_platform(platform))


def http(url: str, checksum: str | None = None, filename: str | None = None,
         perm: int | None = None, uid: int | None = None, gid: int | None = None,
         platform: str | Platform | None = None) -> State:
    """A single file downloaded from ``url`` (saved as ``filename``, default
    the URL's base name). ``checksum`` (``sha256:…``) is verified."""
    if not re.match(r"^https?://", url):
        raise LLBError(f"http source {url!r}: want an http:// or https:// URL")
    attrs: dict[str, str] = {}
    caps = {C.SOURCE_HTTP}
    if checksum:
        if not re.match(r"^sha(256|384|512):[0-9a-f]+$", checksum):
            raise LLBError(f"http checksum {checksum!r}: want sha256:<hex>")
        attrs["http.checksum"] = checksum
        caps.add(C.SOURCE_HTTP_CHECKSUM)
    if filename:
        attrs["http.filename"] = filename
    if perm:
        attrs["http.perm"] = "0" + format(perm & 0o777, "o")
        caps.add(C.SOURCE_HTTP_PERM)
    if uid:
        attrs["http.uid"] = str(uid)
        caps.add(C.SOURCE_HTTP_UIDGID)
    if gid:
        attrs["http.gid"] = str(gid)
        caps.add(C.SOURCE_HTTP_UIDGID)
    return _source(url, attrs, caps, as_platform(platform))
