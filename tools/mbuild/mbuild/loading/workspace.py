"""The workspace: the directory holding ``WORKSPACE.toml`` and its settings.

Every key is optional; unknown keys are errors (so typos are caught)::

    # Workspace name (default: the root directory's name).
    name = "monorepo"

    # BuildKit address (default "docker://" = the Docker engine's BuildKit).
    # Also e.g. "unix:///run/buildkit/buildkitd.sock", "tcp://host:1234".
    buildkit = "docker://"

    # Where outputs (images as OCI layouts, logs) are written, relative to
    # the root (default "mbuild-out"). Never scanned for BUILD files.
    output_dir = "mbuild-out"

    # A CA bundle (PEM) mounted into build steps that fetch from the network
    # (pip, npm, registries behind a TLS-intercepting proxy). It is never
    # copied into an image. Relative to the root; must exist.
    ca_bundle = "certs/corp-ca.pem"

    # Timestamp (seconds since the epoch) for file times and image metadata,
    # for reproducible images. Default: $SOURCE_DATE_EPOCH when set, else 0
    # (1970-01-01, as Bazel and rules_oci use), so an unrelated commit never
    # changes an image. Whichever is used is part of every action key.
    source_date_epoch = 0

    # Rule modules: workspace Python files, written against mbuild.api.v1,
    # whose public rules every BUILD file can call besides mbuild's built-in
    # filegroup, group and container_image (docs/rules.md). Paths are
    # relative to the root; the workspace modules they import need no entry.
    rules = ["rules/python.py", "rules/node.py"]

    # Base images, referred to by name from rules. `digest` pins the image
    # (written by `mbuild lock`); without it the tag is resolved at build time.
    [images.python]
    ref = "python:3.11-slim"
    digest = "sha256:0123...cdef"          # optional, sha256:<64 hex>

    # Pull-through mirrors tried before a registry, per registry host.
    [registry.mirrors]
    "docker.io" = ["https://mirror.gcr.io"]

    # Local and remote build cache.
    [cache]
    dir = "~/.cache/mbuild"        # default; relative paths are from the root
    max_size = "10GB"              # default; B, KB/MB/GB/TB (1000s) or KiB/MiB/GiB/TiB
    remote = "grpcs://cache.example.com"   # optional remote cache URL
    remote_upload = false          # default false (read-only, for laptops); CI passes --remote-upload
    remote_instance = ""           # optional instance name sent to `remote`
    remote_headers = { "Authorization" = "Bearer ..." }   # optional extra headers
    # Limits every remote cache operation is held to, whatever the server does
    # (drips bytes, stalls, never accepts): it fails after remote_timeout
    # seconds plus, when it moves N bytes, N / remote_min_rate seconds; the
    # first failure turns the remote off for the rest of the build.
    remote_timeout = 10            # default; seconds, > 0 and at most 3600
    remote_min_rate = "1MiB"       # default; a size (per second), like max_size

    # BuildKit's layer cache, so steps an action cache miss re-runs can still
    # reuse layers: exported after each solve, imported before. Types:
    # "registry" (attrs ref, mode=min|max, …), "inline" (export only) and
    # "local" (a directory in OCI layout: dest / src, relative to the root, tag).
    # "{target}" in a value is replaced by the target (e.g. infra-python_runtime).
    [[cache.buildkit.export]]
    type = "registry"
    ref = "registry.example.com/ai-mono/cache:{target}"
    mode = "max"
    [[cache.buildkit.import]]
    type = "registry"
    ref = "registry.example.com/ai-mono/cache:{target}"

Errors name ``WORKSPACE.toml:LINE`` where the line can be found.
"""

from __future__ import annotations

import difflib
import os
import re
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, NamedTuple

from mbuild.errors import ConfigError, at
from mbuild.loading.starlark_text import NotUTF8, read_utf8, too_deep

__all__ = [
    "WORKSPACE_FILE",
    "BaseImage",
    "RuleModule",
    "CacheSettings",
    "Workspace",
    "find_workspace",
    "load_workspace",
    "parse_workspace",
    "parse_size",
    "write_image_digest",
]

WORKSPACE_FILE = "WORKSPACE.toml"

DEFAULT_BUILDKIT = "docker://"
DEFAULT_OUTPUT_DIR = "mbuild-out"
DEFAULT_CACHE_DIR = "~/.cache/mbuild"
DEFAULT_MAX_SIZE = "10GB"

_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
_IMAGE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(?:([kmgt])(i)?)?b?\s*", re.IGNORECASE)
_SIZE_POWER = {"k": 1, "m": 2, "g": 3, "t": 4}


@dataclass(frozen=True)
class BaseImage:
    """A base image declared under ``[images.NAME]``."""

    name: str
    ref: str
    digest: str | None = None

    @property
    def pinned_ref(self) -> str:
        """``ref@digest`` when pinned, else ``ref``."""
        return f"{self.ref}@{self.digest}" if self.digest else self.ref


class RuleModule(NamedTuple):
    """One entry of ``rules``: a workspace-relative ``.py`` path and its line."""

    path: str
    line: int | None


@dataclass(frozen=True)
class CacheSettings:
    """The ``[cache]`` table."""

    dir: Path
    max_size: int  # bytes
    remote: str | None = None
    remote_upload: bool = False
    remote_instance: str = ""
    remote_headers: Mapping[str, str] = field(default_factory=dict)
    remote_timeout: float | None = None  # seconds; None: the remote client's default
    remote_min_rate: int | None = None  # bytes/s; None: the remote client's default
    # BuildKit's own layer cache: [[cache.buildkit.export]] / [[cache.buildkit.import]]
    # tables of exporter attributes; "{target}" in a value becomes the target's name.
    buildkit_exports: tuple = ()
    buildkit_imports: tuple = ()


@dataclass(frozen=True)
class Workspace:
    """Settings of one workspace (see the module docstring for each key)."""

    root: Path
    name: str
    buildkit: str
    images: Mapping[str, BaseImage]
    registry_mirrors: Mapping[str, tuple[str, ...]]
    output_dir: Path
    cache: CacheSettings
    ca_bundle: Path | None = None
    source_date_epoch: int | None = None
    rules: tuple[RuleModule, ...] = ()

    @property
    def workspace_file(self) -> Path:
        """Path of WORKSPACE.toml."""
        return self.root / WORKSPACE_FILE

    @property
    def output_path(self) -> Path:
        """The output folder, absolute: ``output_dir`` as WORKSPACE.toml resolved it, or, in a
        Workspace made by hand (the rule test harness), taken relative to the workspace root."""
        return self.output_dir if Path(self.output_dir).is_absolute() else self.root / self.output_dir


def find_workspace(start: Path) -> Path:
    """Return the nearest directory at or above ``start`` holding WORKSPACE.toml."""
    here = Path(start).resolve()
    if here.is_file():
        here = here.parent
    for candidate in (here, *here.parents):
        if (candidate / WORKSPACE_FILE).is_file():
            return candidate
    raise ConfigError(
        f"no {WORKSPACE_FILE} in {here} or any parent directory; "
        f"run mbuild inside a workspace or create {WORKSPACE_FILE} at its root"
    )


def load_workspace(root: Path) -> Workspace:
    """Read ``root/WORKSPACE.toml``."""
    path = Path(root) / WORKSPACE_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found; create {WORKSPACE_FILE} at the workspace root") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err}") from None
    try:
        text = read_utf8(raw)
    except NotUTF8 as err:
        raise ConfigError(at(WORKSPACE_FILE, err.line, err.message)) from None
    return parse_workspace(text, Path(root).resolve())


def parse_size(text: str) -> int | None:
    """``"10GB"`` -> 10_000_000_000, ``"1GiB"`` -> 2**30; None if not a size."""
    m = _SIZE_RE.fullmatch(text)
    if not m:
        return None
    number, unit, binary = m.groups()
    base = 1024 if binary else 1000
    return int(float(number) * base ** (_SIZE_POWER[unit.lower()] if unit else 0))


# ---------------------------------------------------------------------------
# parsing


class _Reader:
    """Validates the decoded TOML, naming keys and lines in errors."""

    def __init__(self, text: str, root: Path) -> None:
        self.lines = text.splitlines()
        self.root = root

    # -- errors --------------------------------------------------------

    def line_of(self, table: tuple[str, ...], key: str | None) -> int | None:
        """Best-effort line of ``key`` in ``[table]`` (or of the header)."""
        current: tuple[str, ...] = ()
        header_line = None
        for number, raw in enumerate(self.lines, 1):
            line = raw.strip()
            if line.startswith("["):
                inner = line.split("#", 1)[0].strip().strip("[]")
                current = _key_path(inner)
                if current == table:
                    header_line = number
                    if key is None:
                        return number
                continue
            if key is not None and current == table:
                lhs = line.split("=", 1)[0].strip().strip('"').strip("'")
                if "=" in line and lhs == key:
                    return number
        if key is not None and table:
            # A dotted key or inline table: `images.base = {...}` / `base = {...}`.
            parent, last = table[:-1], table[-1]
            found = self.line_of(parent, last) if parent or last else None
            return found or header_line
        return header_line

    def line_of_text(self, start: int | None, text: str, nth: int = 1) -> int | None:
        """The line of the ``nth`` line at or after ``start`` that holds ``text``
        (else ``start``): where one element of a multi-line array is."""
        if start is None:
            return None
        for number in range(start, len(self.lines) + 1):
            if text in self.lines[number - 1]:
                nth -= 1
                if nth == 0:
                    return number
        return start

    def line_of_entry(self, table: tuple[str, ...], key: str, index: int) -> int | None:
        """The line of the ``index``-th ``[[table.key]]`` header (an array of
        tables), else of ``key`` (an inline array)."""
        seen = -1
        for number, raw in enumerate(self.lines, 1):
            line = raw.split("#", 1)[0].strip()
            if line.startswith("[[") and line.endswith("]]"):
                path = _key_path(line[2:-2])
                if path == (*table, key):
                    seen += 1
                    if seen == index:
                        return number
        return self.line_of(table, key)

    def fail(self, table: tuple[str, ...], key: str | None, msg: str) -> ConfigError:
        return ConfigError(at(WORKSPACE_FILE, self.line_of(table, key), msg))

    # -- typed getters ---------------------------------------------------

    def check_keys(self, table: tuple[str, ...], data: Mapping[str, Any], known: tuple[str, ...]) -> None:
        for key in data:
            if key not in known:
                where = ".".join(table)
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(known)}"
                place = f" in [{where}]" if where else ""
                raise self.fail(table, key, f"unknown key '{key}'{place}; {hint}")

    def get(self, table: tuple[str, ...], data: Mapping[str, Any], key: str, kind: type, what: str, default: Any = None) -> Any:
        if key not in data:
            return default
        value = data[key]
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if not ok:
            full = ".".join((*table, key))
            raise self.fail(table, key, f"'{full}' must be {what}, got {_type_name(value)}")
        return value

    def table(self, table: tuple[str, ...], data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
        value: Mapping[str, Any] = self.get(table, data, key, dict, "a table", {})
        return value


def _key_path(dotted: str) -> tuple[str, ...]:
    """``a."b c".d`` (a table header's inside) -> ``("a", "b c", "d")``."""
    return tuple(p.strip().strip('"').strip("'") for p in _split_dotted(dotted.strip()))


def _split_dotted(text: str) -> list[str]:
    """Split a TOML dotted key, respecting quotes."""
    parts, buf, quote = [], "", None
    for ch in text:
        if quote:
            if ch == quote:
                quote = None
            buf += ch
        elif ch in "\"'":
            quote = ch
            buf += ch
        elif ch == ".":
            parts.append(buf)
            buf = ""
        else:
            buf += ch
    parts.append(buf)
    return parts


def _type_name(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


_TOP_KEYS = ("name", "buildkit", "output_dir", "ca_bundle", "source_date_epoch", "rules", "images", "registry",
             "cache")
_CACHE_KEYS = ("dir", "max_size", "remote", "remote_upload", "remote_instance", "remote_headers",
               "remote_timeout", "remote_min_rate", "buildkit")
MAX_REMOTE_TIMEOUT = 3600
MAX_NESTING = 100  # of arrays and inline tables (tomllib recurses once per level)
_BUILDKIT_CACHE_TYPES = ("registry", "inline", "local")


def parse_workspace(text: str, root: Path) -> Workspace:
    """Parse the text of WORKSPACE.toml for the workspace at ``root`` (pure but
    for checking that ``ca_bundle`` exists)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise _toml_error(err) from None
    except RecursionError:  # tomllib recurses once per nesting level
        deep = too_deep(text, MAX_NESTING, toml=True)
        raise ConfigError(at(WORKSPACE_FILE, deep.line if deep else None,
                             f"a value nested more than {MAX_NESTING} deep"
                             + (f" (column {deep.column})" if deep else "")
                             + "; WORKSPACE.toml settings are flat tables, strings and arrays")) from None
    r = _Reader(text, root)
    r.check_keys((), data, _TOP_KEYS)

    name = r.get((), data, "name", str, "a string", root.name) or root.name
    buildkit = r.get((), data, "buildkit", str, 'a BuildKit address like "docker://"', DEFAULT_BUILDKIT)
    if "://" not in buildkit:
        raise r.fail((), "buildkit", f"'buildkit' must be an address like \"docker://\" or \"unix:///run/buildkit/buildkitd.sock\", got {buildkit!r}")
    _check_buildkit_address(r, buildkit)
    output_dir = r.get((), data, "output_dir", str, "a path string", DEFAULT_OUTPUT_DIR)
    if not output_dir:
        raise r.fail((), "output_dir", "'output_dir' must not be empty")
    ca_text = r.get((), data, "ca_bundle", str, "a path string")
    ca_bundle = None
    if ca_text is not None:
        ca_bundle = (root / Path(ca_text).expanduser()).resolve()
        if not ca_bundle.is_file():
            raise r.fail((), "ca_bundle", f"ca_bundle '{ca_text}' does not exist ({ca_bundle}); fix the path or remove the key")
    epoch = r.get((), data, "source_date_epoch", int, "an integer (seconds since 1970)")
    if epoch is not None and epoch < 0:
        raise r.fail((), "source_date_epoch", "'source_date_epoch' must be >= 0")

    return Workspace(
        root=root,
        name=name,
        buildkit=buildkit,
        images=_parse_images(r, r.table((), data, "images")),
        registry_mirrors=_parse_registry(r, r.table((), data, "registry")),
        output_dir=(root / output_dir).resolve(),
        cache=_parse_cache(r, r.table((), data, "cache")),
        ca_bundle=ca_bundle,
        source_date_epoch=epoch,
        rules=_parse_rules(r, data),
    )


def _parse_rules(r: _Reader, data: Mapping[str, Any]) -> tuple[RuleModule, ...]:
    paths = r.get((), data, "rules", list, 'an array of paths like ["rules/python.py"]', [])
    key_line = r.line_of((), "rules")
    out: list[RuleModule] = []
    for path in paths:
        seen = sum(1 for m in out if m.path == path)
        line = r.line_of_text(key_line, _toml_string(path), seen + 1) if isinstance(path, str) else key_line
        if not isinstance(path, str):
            raise ConfigError(at(WORKSPACE_FILE, line, f"rules: entries must be path strings, got {_type_name(path)}"))
        parts = path.split("/")
        if not path.endswith(".py") or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ConfigError(at(WORKSPACE_FILE, line, f"rules: {path!r} must be a workspace-relative path to a "
                                                       f".py file, like \"rules/python.py\""))
        if seen:
            raise ConfigError(at(WORKSPACE_FILE, line, f"rules: {path} is listed twice; remove one"))
        out.append(RuleModule(path, line))
    return tuple(out)


def buildkit_address_problem(address: str) -> str | None:
    """Why BuildKit's client cannot parse ``address``, or None. What
    ``docker://`` alone stands for (DOCKER_HOST, the docker context) is found
    when connecting: a bad DOCKER_HOST or context is not the address's mistake.
    For WORKSPACE.toml ``buildkit`` and ``--buildkit`` alike."""
    from urllib.parse import urlsplit

    from buildkit.address import parse_address
    from buildkit.errors import InvalidAddress

    parts = urlsplit(address.strip())
    if parts.scheme == "docker" and not parts.netloc and not parts.path:
        return None
    try:
        parse_address(address, environ={})
    except InvalidAddress as err:
        return str(err)
    return None


def _check_buildkit_address(r: _Reader, address: str) -> None:
    why = buildkit_address_problem(address)
    if why:
        raise r.fail((), "buildkit", why)


def _toml_string(text: str) -> str:
    """``text`` as a TOML basic string (the way it is written in the file)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _parse_images(r: _Reader, images: Mapping[str, Any]) -> dict[str, BaseImage]:
    from buildkit.llb.reference import normalize_image_ref

    result: dict[str, BaseImage] = {}
    for name in sorted(images):
        table = ("images", name)
        if not _IMAGE_NAME_RE.fullmatch(name):
            raise r.fail(table, None, f"image name '{name}' may only contain letters, digits, '_', '.', '-'")
        entry = r.get(("images",), images, name, dict, 'a table with ref = "..." (and optional digest)')
        r.check_keys(table, entry, ("ref", "digest"))
        ref = r.get(table, entry, "ref", str, 'an image reference like "python:3.11-slim"')
        if not ref:
            raise r.fail(table, None, f'[images.{name}] needs ref = "<image reference>", e.g. ref = "python:3.11-slim"')
        if "@" in ref:
            raise r.fail(table, "ref", f"images.{name}.ref must not contain '@digest'; put the digest in digest = \"sha256:...\"")
        try:
            normalize_image_ref(ref)
        except ValueError as err:
            raise r.fail(table, "ref", f"images.{name}.ref: {err}; use a reference like \"python:3.11-slim\" or "
                                       f"\"registry.example.com/team/app:1.2\"") from None
        digest = r.get(table, entry, "digest", str, 'a digest string "sha256:<64 hex>"')
        if digest is not None and not _DIGEST_RE.fullmatch(digest):
            raise r.fail(table, "digest", f"images.{name}.digest must look like \"sha256:<64 lowercase hex>\", got {digest!r}; run `mbuild lock` to fill it in")
        result[name] = BaseImage(name=name, ref=ref, digest=digest)
    return result


def _parse_registry(r: _Reader, registry: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    r.check_keys(("registry",), registry, ("mirrors",))
    mirrors = r.table(("registry",), registry, "mirrors")
    result: dict[str, tuple[str, ...]] = {}
    for host in sorted(mirrors):
        urls = r.get(("registry", "mirrors"), mirrors, host, list, "an array of mirror URLs")
        if not all(isinstance(u, str) and u for u in urls):
            raise r.fail(("registry", "mirrors"), host, f"registry.mirrors.\"{host}\" must be an array of URL strings")
        result[host] = tuple(urls)
    return result


def _parse_cache(r: _Reader, cache: Mapping[str, Any]) -> CacheSettings:
    t = ("cache",)
    r.check_keys(t, cache, _CACHE_KEYS)
    dir_text = r.get(t, cache, "dir", str, "a path string", DEFAULT_CACHE_DIR)
    size_text = r.get(t, cache, "max_size", str, 'a size string like "10GB"', DEFAULT_MAX_SIZE)
    size = parse_size(size_text)
    if size is None:
        raise r.fail(t, "max_size", f"cache.max_size must be a size like \"10GB\" or \"512MiB\", got {size_text!r}")
    remote = r.get(t, cache, "remote", str, 'a URL string like "grpcs://cache.example.com"')
    if remote is not None and "://" not in remote:
        raise r.fail(t, "remote", f"cache.remote must be a URL like \"grpcs://host:port\" or \"https://host\", got {remote!r}")
    instance = r.get(t, cache, "remote_instance", str, "a string", "")
    if remote:
        from mbuild.loading.remote_address import parse_remote_url

        try:
            parse_remote_url(remote, instance)
        except ValueError as err:
            raise r.fail(t, "remote", f"cache.remote: {err}; use grpc://host:port[/instance], grpcs://…, "
                                      f"http://host:port/prefix or https://…") from None
    headers = r.get(t, cache, "remote_headers", dict, "a table of header = \"value\" strings", {})
    for key, value in headers.items():
        if not isinstance(value, str):
            raise r.fail(t, "remote_headers", f"cache.remote_headers.{key} must be a string, got {_type_name(value)}")
    timeout = r.get(t, cache, "remote_timeout", (int, float), "a number of seconds", None)
    if timeout is not None and (isinstance(timeout, bool) or not 0 < timeout <= MAX_REMOTE_TIMEOUT):
        raise r.fail(t, "remote_timeout", f"cache.remote_timeout must be a number of seconds above 0 and at most "
                                          f"{MAX_REMOTE_TIMEOUT}, like 10; got {timeout!r}")
    rate_text = r.get(t, cache, "remote_min_rate", str, 'a size per second like "1MiB"')
    min_rate = parse_size(rate_text) if rate_text is not None else None
    if rate_text is not None and not min_rate:
        raise r.fail(t, "remote_min_rate", f"cache.remote_min_rate must be a size per second above 0 like \"1MiB\" "
                                           f"or \"500KB\", got {rate_text!r}")
    layer_cache = r.table(t, cache, "buildkit")
    r.check_keys(t + ("buildkit",), layer_cache, ("export", "import"))
    exports = _parse_layer_cache(r, t + ("buildkit",), layer_cache, "export")
    imports = _parse_layer_cache(r, t + ("buildkit",), layer_cache, "import")
    return CacheSettings(
        buildkit_exports=exports,
        buildkit_imports=imports,
        dir=(r.root / Path(dir_text).expanduser()).resolve(),
        max_size=size,
        remote=remote or None,
        remote_upload=r.get(t, cache, "remote_upload", bool, "true or false", False),
        remote_instance=instance,
        remote_headers=dict(headers),
        remote_timeout=timeout,
        remote_min_rate=min_rate,
    )


def _parse_layer_cache(r: _Reader, t: tuple[str, ...], data: Mapping[str, Any], key: str) -> tuple:
    entries = r.get(t, data, key, list, "an array of tables ([[cache.buildkit.%s]])" % key, [])
    out = []
    for index, entry in enumerate(entries):
        def fail(message: str) -> ConfigError:
            return ConfigError(at(WORKSPACE_FILE, r.line_of_entry(t, key, index), message))

        if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
            raise fail(f"cache.buildkit.{key} entries must be tables of strings, like "
                       '{ type = "registry", ref = "host/cache:{target}" }')
        kind = entry.get("type", "")
        if kind not in _BUILDKIT_CACHE_TYPES:
            raise fail(f"cache.buildkit.{key}: type {kind!r} is not supported; use one of "
                       f"{', '.join(_BUILDKIT_CACHE_TYPES)}")
        if kind == "inline" and key == "import":
            raise fail('cache.buildkit.import: inline caches are imported with type = "registry"')
        out.append(dict(entry))
    return tuple(out)


_TOML_POS_RE = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")


def _toml_error(err: tomllib.TOMLDecodeError) -> ConfigError:
    """``WORKSPACE.toml:LINE: invalid TOML: <what> (column C); fix the syntax``."""
    msg = str(err)
    m = _TOML_POS_RE.search(msg)
    line = None
    if m:
        line = int(m.group(1))
        msg = f"{msg[: m.start()]} (column {m.group(2)})"
    elif "(at end of document)" in msg:
        msg = msg.replace(" (at end of document)", " at the end of the file")
    return ConfigError(at(WORKSPACE_FILE, line, f"invalid TOML: {msg}; fix the syntax"))


# ---------------------------------------------------------------------------
# mbuild lock


def write_image_digest(ws_path: Path, name: str, digest: str) -> None:
    """Set ``digest`` of ``[images.NAME]`` in WORKSPACE.toml, keeping all other
    text (comments, order, formatting) as it is.

    ``ws_path`` is the workspace root or the WORKSPACE.toml file. Handles the
    ``[images.NAME]`` table form and the one-line inline form
    ``NAME = { ref = "..." }`` under ``[images]``.
    """
    path = Path(ws_path)
    if path.is_dir():
        path = path / WORKSPACE_FILE
    if not _DIGEST_RE.fullmatch(digest):
        raise ConfigError(f"invalid digest {digest!r} for image '{name}': expected sha256:<64 lowercase hex>")
    text = path.read_text(encoding="utf-8")
    new_text = _rewrite_digest(text, name, digest)
    # Check the result before writing it.
    try:
        images = tomllib.loads(new_text).get("images", {})
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{WORKSPACE_FILE}: could not update the digest of image '{name}' ({err}); edit it by hand") from None
    if not isinstance(images.get(name), dict) or images[name].get("digest") != digest:
        raise ConfigError(f"{WORKSPACE_FILE}: could not update the digest of image '{name}'; edit it by hand")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".WORKSPACE.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            out.write(new_text)
        os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _rewrite_digest(text: str, name: str, digest: str) -> str:
    lines = text.splitlines(keepends=True)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    quoted = re.escape(name)
    header_re = re.compile(rf"\s*\[\s*images\s*\.\s*(?:{quoted}|\"{quoted}\"|'{quoted}')\s*\]\s*(?:#.*)?")
    images_re = re.compile(r"\s*\[\s*images\s*\]\s*(?:#.*)?")
    digest_re = re.compile(r"(\s*)digest\s*=.*")
    ref_re = re.compile(r"(\s*)ref\s*=.*")
    inline_re = re.compile(rf"(\s*(?:{quoted}|\"{quoted}\"|'{quoted}')\s*=\s*\{{)(.*)(\}}\s*(?:#.*)?)")

    def table_end(start: int) -> int:
        end = start + 1
        while end < len(lines) and not lines[end].lstrip().startswith("["):
            end += 1
        return end

    for i, raw in enumerate(lines):
        body = raw.rstrip("\r\n")
        if header_re.fullmatch(body):
            end = table_end(i)
            for j in range(i + 1, end):
                m = digest_re.fullmatch(lines[j].rstrip("\r\n"))
                if m:
                    lines[j] = f'{m.group(1)}digest = "{digest}"{newline}'
                    return "".join(lines)
            insert_at = i + 1
            indent = ""
            for j in range(i + 1, end):
                m = ref_re.fullmatch(lines[j].rstrip("\r\n"))
                if m:
                    insert_at, indent = j + 1, m.group(1)
            if insert_at > 0 and not lines[insert_at - 1].endswith("\n"):
                lines[insert_at - 1] += newline
            lines.insert(insert_at, f'{indent}digest = "{digest}"{newline}')
            return "".join(lines)
        if images_re.fullmatch(body):
            for j in range(i + 1, table_end(i)):
                m = inline_re.fullmatch(lines[j].rstrip("\r\n"))
                if m:
                    inner = m.group(2)
                    if re.search(r"\bdigest\s*=", inner):
                        inner = re.sub(r'digest\s*=\s*"[^"]*"', f'digest = "{digest}"', inner)
                    else:
                        inner = inner.rstrip() + f', digest = "{digest}" '
                    ending = lines[j][len(lines[j].rstrip("\r\n")):]
                    lines[j] = f"{m.group(1)}{inner}{m.group(3)}{ending}"
                    return "".join(lines)
    raise ConfigError(
        f'{WORKSPACE_FILE}: no [images.{name}] table; add one with ref = "<image>" before running mbuild lock'
    )
