"""Remote failures never fail a build: down, slow, or wrong bytes.

:class:`SafeRemote` wraps a raw client (:mod:`.reapi`, :mod:`.http`) and
answers every failure with what a miss would be:

===================  ===================================================
call                 on failure
===================  ===================================================
get_action_result    ``None``
put_action_result    nothing (the result stays local)
find_missing         an empty set: nothing is reported missing, so
                     nothing is uploaded to a remote that is not there
put_blob             nothing
get_blob             ``False``, *dest* untouched
===================  ===================================================

What happens next depends on the failure:

* the remote is unreachable, too slow, refuses us or misbehaves: one
  warning line naming the address, then the wrapper is **disabled** for the
  rest of its life (one run): later calls return at once without touching
  the network, so a dead server costs one bounded timeout per run, not one
  per action;
* a blob or action result arrives corrupted (digest or size mismatch,
  unparseable): it is a miss (nothing is written) and one warning says so;
  the remote stays enabled (every byte is checked anyway, and the rebuilt
  result's upload overwrites the bad entry);
* the remote does not accept action results (read-only): one warning, and
  uploads are skipped while reads continue;
* a local file given to ``put_blob`` is not the blob named (it changed after
  it was digested): a warning for that blob, nothing uploaded;
* the caller finds an answer wrong in a way only it can tell (an action
  result whose parts do not belong together, see
  :mod:`mbuild.execution.remote`) and says so with :meth:`SafeRemote.reject`:
  treated like corrupted data.

Time: every call ends within the client's deadline (:mod:`.base`,
"Deadlines"), so a remote that fails costs a run at most one deadline
(calls in flight together end together), and one that answers wrongly but
fast costs nothing more.

Each kind of warning is given at most once per wrapper; create one wrapper per
run (:func:`open_safe_remote`), so once per run.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from types import MappingProxyType
from typing import Callable, Iterable, Mapping, TypeVar

from .base import (
    DEFAULT_TIMEOUT,
    MIN_TRANSFER_RATE,
    BlobRef,
    CorruptBlob,
    RemoteCache,
    RemoteError,
    SourceMismatch,
    TlsConfig,
    UpdatesDisabled,
    open_remote,
    parse_remote_url,
)

T = TypeVar("T")

HINT = "check the address and that the server is up"


def stderr_warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class SafeRemote:
    """A :class:`~.base.RemoteCache` that never raises; see the module docstring."""

    def __init__(self, remote: RemoteCache, warn: Callable[[str], None] = stderr_warn) -> None:
        self.remote = remote
        self.name = remote.name
        self._warn = warn
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        self.disabled_reason: str | None = None
        self.read_only = False
        # Counters for a run summary.
        self.errors = 0
        self.corrupt = 0

    @property
    def enabled(self) -> bool:
        return self.disabled_reason is None

    # ------------------------------------------------------------ failure handling

    def _once(self, kind: str, message: str) -> None:
        with self._lock:
            if kind in self._warned:
                return
            self._warned.add(kind)
        try:
            self._warn(message)
        except Exception:  # noqa: BLE001 - a broken warning sink must not fail the build either
            pass

    def _disable(self, reason: str) -> None:
        with self._lock:
            self.errors += 1
            if self.disabled_reason is None:
                self.disabled_reason = reason
        self._once(
            "down",
            f"mbuild: warning: remote cache {self.name} unavailable ({reason}); "
            f"continuing without it for this run ({HINT})",
        )

    def _corrupt(self, e: CorruptBlob) -> None:
        with self._lock:
            self.corrupt += 1
        self._once(
            "corrupt",
            f"mbuild: warning: remote cache {self.name} sent corrupted data ({e.reason}); "
            "treated as a cache miss (the entry is replaced when the result is uploaded again)",
        )

    def reject(self, reason: str) -> None:
        """Count an answer the caller found wrong (*reason* says how) as
        corrupted data: one warning per run, and the remote stays on."""
        self._corrupt(CorruptBlob(reason))

    def _guard(self, op: str, default: T, fn: Callable[[], T]) -> T:
        if self.disabled_reason is not None:
            return default
        try:
            return fn()
        except CorruptBlob as e:
            self._corrupt(e)
            return default
        except RemoteError as e:
            self._disable(e.reason)
            return default
        except Exception as e:  # noqa: BLE001 - whatever it is, the build goes on
            self._disable(f"{op}: {type(e).__name__}: {e}")
            return default

    # ------------------------------------------------------------ the interface

    def get_action_result(self, key_hex: str):
        return self._guard("get_action_result", None, lambda: self.remote.get_action_result(key_hex))

    def put_action_result(self, key_hex: str, result) -> None:
        if self.read_only:
            return

        def put() -> None:
            try:
                self.remote.put_action_result(key_hex, result)
            except UpdatesDisabled as e:
                self.read_only = True
                self._once(
                    "read-only",
                    f"mbuild: warning: remote cache {self.name} does not accept action results "
                    f"({e.reason}); using it read-only for this run",
                )

        self._guard("put_action_result", None, put)

    def find_missing(self, blobs: Iterable[BlobRef]) -> set[BlobRef]:
        blobs = list(blobs)
        return self._guard("find_missing", set(), lambda: set(self.remote.find_missing(blobs)))

    def put_blob(self, blob: BlobRef, source: bytes | Path) -> None:
        def put() -> None:
            try:
                self.remote.put_blob(blob, source)
            except SourceMismatch as e:
                self._warn_source(e)

        self._guard("put_blob", None, put)

    def put_blobs(self, items: Iterable[tuple[BlobRef, bytes | Path]]) -> None:
        """Upload several blobs (batched where the client can)."""
        items = list(items)
        many = getattr(self.remote, "put_blobs", None)
        if many is None:
            for blob, source in items:
                self.put_blob(blob, source)
            return

        def put() -> None:
            try:
                many(items)
            except SourceMismatch as e:  # one bad file: upload the others one by one
                self._warn_source(e)
                for blob, source in items:
                    try:
                        self.remote.put_blob(blob, source)
                    except SourceMismatch as e2:
                        if str(e2) != str(e):
                            self._warn_source(e2)

        self._guard("put_blobs", None, put)

    def _warn_source(self, e: SourceMismatch) -> None:
        try:
            self._warn(f"mbuild: warning: not uploading to remote cache {self.name}: {e}")
        except Exception:  # noqa: BLE001
            pass

    def get_blob(self, blob: BlobRef, dest: Path) -> bool:
        return bool(self._guard("get_blob", False, lambda: self.remote.get_blob(blob, Path(dest))))

    def get_blobs(self, items: Iterable[tuple[BlobRef, Path]]) -> dict[BlobRef, bool]:
        """Download several blobs (batched where the client can); each value
        says whether that blob was written, verified."""
        items = [(b, Path(d)) for b, d in items]
        none = {b: False for b, _ in items}
        if self.disabled_reason is not None:
            return none
        many = getattr(self.remote, "get_blobs", None)
        try:
            if many is None:
                return {b: self.remote.get_blob(b, d) for b, d in items}
            return {**none, **many(items)}
        except CorruptBlob as e:
            self._corrupt(e)
            return {**none, **(e.found or {})}
        except RemoteError as e:
            self._disable(e.reason)
            return none
        except Exception as e:  # noqa: BLE001
            self._disable(f"get_blobs: {type(e).__name__}: {e}")
            return none

    def close(self) -> None:
        try:
            self.remote.close()
        except Exception:  # noqa: BLE001
            pass

    def __repr__(self) -> str:
        state = "enabled" if self.enabled else f"disabled: {self.disabled_reason}"
        return f"SafeRemote({self.name!r}, {state})"


class _Unopened:
    """Stands in for a client that could not even be created."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason

    def _fail(self, *args, **kwargs):
        raise RemoteError(self.reason)

    get_action_result = put_action_result = find_missing = put_blob = get_blob = _fail

    def close(self) -> None:
        pass


def open_safe_remote(
    url: str,
    *,
    warn: Callable[[str], None] = stderr_warn,
    instance_name: str = "",
    headers: Mapping[str, str] = MappingProxyType({}),
    tls: TlsConfig | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    min_rate: float = MIN_TRANSFER_RATE,
) -> SafeRemote:
    """A never-failing remote cache for one run. A malformed URL or a
    non-positive limit is a usage error and raises ``ValueError`` at once;
    anything else (unreadable TLS files, …) gives the usual one-time warning
    and a disabled remote. Each call ends within *timeout* seconds plus, for
    blobs, their size at *min_rate* bytes/s (see :mod:`.base`, "Deadlines");
    reaching the server within ``min(2 s, timeout)``."""
    addr = parse_remote_url(url, instance_name)  # ValueError for the user to fix
    try:
        remote = open_remote(
            url, instance_name=instance_name, headers=headers, tls=tls, timeout=timeout, min_rate=min_rate
        )
    except ValueError:
        raise
    except Exception as e:  # noqa: BLE001
        safe = SafeRemote(_Unopened(addr.display(), f"{type(e).__name__}: {e}"), warn)  # type: ignore[arg-type]
        return safe
    return SafeRemote(remote, warn)


__all__ = ["SafeRemote", "open_safe_remote", "stderr_warn"]
