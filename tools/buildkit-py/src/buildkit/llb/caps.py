"""LLB capability ids, and checking a Definition against what a daemon offers.

Every id here is one BuildKit's solver declares (solver/pb/caps.go). The
daemon rejects a Definition naming a cap it does not know ("unknown API
capability"), so an id must never be made up; and a cap it knows but has
disabled means the feature will not work there. :func:`check_caps` lets the
client say so before solving.
"""

from __future__ import annotations

from typing import Iterable

from ..proto import ops_pb2

SOURCE_IMAGE = "source.image"
SOURCE_IMAGE_RESOLVE_MODE = "source.image.resolvemode"
SOURCE_LOCAL = "source.local"
SOURCE_LOCAL_UNIQUE = "source.local.unique"
SOURCE_LOCAL_SESSION_ID = "source.local.sessionid"
SOURCE_LOCAL_INCLUDE_PATTERNS = "source.local.includepatterns"
SOURCE_LOCAL_EXCLUDE_PATTERNS = "source.local.excludepatterns"
SOURCE_LOCAL_FOLLOW_PATHS = "source.local.followpaths"
SOURCE_LOCAL_SHARED_KEY_HINT = "source.local.sharedkeyhint"
SOURCE_GIT = "source.git"
SOURCE_GIT_KEEP_DIR = "source.git.keepgitdir"
SOURCE_GIT_FULL_URL = "source.git.fullurl"
SOURCE_GIT_HTTP_AUTH = "source.git.httpauth"
SOURCE_GIT_KNOWN_SSH_HOSTS = "source.git.knownsshhosts"
SOURCE_GIT_MOUNT_SSH_SOCK = "source.git.mountsshsock"
SOURCE_HTTP = "source.http"
SOURCE_HTTP_CHECKSUM = "source.http.checksum"
SOURCE_HTTP_PERM = "source.http.perm"
SOURCE_HTTP_UIDGID = "soruce.http.uidgid"  # sic: the upstream id has this typo

EXEC_META_BASE = "exec.meta.base"
EXEC_META_NETWORK = "exec.meta.network"
EXEC_META_SECURITY = "exec.meta.security"
EXEC_MOUNT_BIND = "exec.mount.bind"
EXEC_MOUNT_SELECTOR = "exec.mount.selector"
EXEC_MOUNT_CACHE = "exec.mount.cache"
EXEC_MOUNT_CACHE_SHARING = "exec.mount.cache.sharing"
EXEC_MOUNT_TMPFS = "exec.mount.tmpfs"
EXEC_MOUNT_TMPFS_SIZE = "exec.mount.tmpfs.size"
EXEC_MOUNT_SECRET = "exec.mount.secret"
EXEC_MOUNT_SSH = "exec.mount.ssh"
EXEC_VALID_EXIT_CODE = "exec.validexitcode"

FILE_BASE = "file.base"
FILE_RM_WILDCARD = "file.rm.wildcard"
FILE_COPY_INCLUDE_EXCLUDE_PATTERNS = "file.copy.includeexcludepatterns"
FILE_COPY_ALWAYS_REPLACE_EXISTING_DEST_PATHS = "file.copy.alwaysreplaceexistingdestpaths"
FILE_SYMLINK_CREATE = "file.symlink.create"

CONSTRAINTS = "constraints"
PLATFORM = "platform"
META_IGNORE_CACHE = "meta.ignorecache"
META_DESCRIPTION = "meta.description"

MERGE_OP = "mergeop"
DIFF_OP = "diffop"

ALL = frozenset(
    v for k, v in dict(globals()).items() if k.isupper() and not k.startswith("_") and isinstance(v, str)
)

# What a feature needs, for messages that say what failed rather than an id.
_FEATURES = {
    MERGE_OP: "merge() (BuildKit 0.10 or newer)",
    DIFF_OP: "diff() (BuildKit 0.10 or newer)",
    FILE_SYMLINK_CREATE: "symlink() file actions",
    FILE_COPY_INCLUDE_EXCLUDE_PATTERNS: "copy() with include/exclude patterns",
    FILE_RM_WILDCARD: "rm() with allow_wildcard",
    EXEC_VALID_EXIT_CODE: "run() with valid_exit_codes",
    EXEC_MOUNT_TMPFS_SIZE: "tmpfs mounts with a size",
    SOURCE_LOCAL_SHARED_KEY_HINT: "local() with shared_key_hint",
}

# A Definition (anything with ``to_pb()``) or an ``ops_pb2.Definition``.
DefinitionLike = object


def _metadata_of(definition: DefinitionLike):
    pb = definition if isinstance(definition, ops_pb2.Definition) else definition.to_pb()
    return pb.metadata.values()


def required_caps(definition: DefinitionLike) -> frozenset[str]:
    """Every cap id any op of ``definition`` (a Definition or its pb) declares."""
    caps: set[str] = set()
    for md in _metadata_of(definition):
        caps.update(k for k, v in md.caps.items() if v)
    return frozenset(caps)


def check_caps(definition: DefinitionLike, available: Iterable[str]) -> list[str]:
    """The caps ``definition`` needs that are not in ``available`` (sorted).

    ``available`` is the set of *enabled* cap ids the daemon reported (the
    LLBBridge Ping's ``LLBCaps``). An empty result means the solve can go ahead.
    """
    have = set(available)
    return sorted(c for c in required_caps(definition) if c not in have)


def describe_missing(missing: Iterable[str]) -> str:
    """The missing caps, each with the feature it stands for, for a one-line
    error message: ``file.symlink.create (symlink() file actions), …``."""
    parts = []
    for cap in missing:
        what = _FEATURES.get(cap)
        parts.append(f"{cap} ({what})" if what else cap)
    return ", ".join(parts)
