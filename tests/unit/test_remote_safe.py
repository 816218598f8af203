"""SafeRemote: remote failures never fail a build (mbuild.cache.remote.safe)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mbuild.cache.remote import (
    ActionResult,
    BlobRef,
    CorruptBlob,
    RemoteError,
    RemoteTimeout,
    SafeRemote,
    SourceMismatch,
    UpdatesDisabled,
    open_safe_remote,
)

B = BlobRef.of_bytes(b"x")


class Flaky:
    """A raw remote whose every call raises the given exception."""

    name = "grpc://flaky:1"

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
        self.calls = 0

    def _raise(self, *a, **k):
        self.calls += 1
        raise self.exc

    get_action_result = put_action_result = find_missing = put_blob = get_blob = _raise

    def close(self):
        raise OSError("even close fails")


@pytest.mark.parametrize(
    "exc, reason",
    [
        (RemoteError("connection refused"), "(connection refused)"),
        (RemoteTimeout("no answer within 10 s"), "(no answer within 10 s)"),
        (KeyError("surprise"), "KeyError"),
        (OSError("disk"), "OSError: disk"),
    ],
)
def test_any_failure_warns_once_then_disables(exc, reason):
    raw = Flaky(exc)
    warnings: list[str] = []
    safe = SafeRemote(raw, warnings.append)
    assert safe.get_action_result("ab" * 32) is None
    assert safe.find_missing([B]) == set()
    assert safe.get_blob(B, Path("/nonexistent/x")) is False
    assert safe.put_blob(B, b"x") is None
    assert safe.put_action_result("ab" * 32, ActionResult()) is None
    assert safe.get_blobs([(B, Path("/nonexistent/x"))]) == {B: False}
    safe.put_blobs([(B, b"x")])
    assert raw.calls == 1  # disabled after the first failure: no more network
    assert not safe.enabled and safe.errors == 1
    assert len(warnings) == 1
    w = warnings[0]
    assert w.startswith("mbuild: warning: remote cache grpc://flaky:1 unavailable ")
    assert reason in w and "continuing without it" in w and "\n" not in w
    safe.close()  # swallowed


def test_corrupt_data_is_a_miss_and_warns_once_without_disabling():
    raw = Flaky(CorruptBlob("blob abc…/1 arrived as def…/1", B))
    warnings: list[str] = []
    safe = SafeRemote(raw, warnings.append)
    assert safe.get_blob(B, Path("/x")) is False
    assert safe.get_action_result("ab" * 32) is None
    assert safe.get_blobs([(B, Path("/x"))]) == {B: False}
    assert raw.calls == 3 and safe.enabled and safe.corrupt == 3
    assert len(warnings) == 1 and "corrupted data" in warnings[0] and "grpc://flaky:1" in warnings[0]


def test_read_only_remote_keeps_reads():
    class RO(Flaky):
        def get_action_result(self, key):
            return ActionResult(exit_code=0)

    raw = RO(UpdatesDisabled("permission_denied: read-only token"))
    warnings: list[str] = []
    safe = SafeRemote(raw, warnings.append)
    safe.put_action_result("ab" * 32, ActionResult())
    safe.put_action_result("ab" * 32, ActionResult())
    assert raw.calls == 1 and safe.read_only and safe.enabled
    assert safe.get_action_result("ab" * 32) == ActionResult(exit_code=0)
    assert len(warnings) == 1 and "read-only" in warnings[0]


def test_local_source_mismatch_warns_but_keeps_the_remote():
    raw = Flaky(SourceMismatch("/w/f is not blob …: it changed after it was digested"))
    warnings: list[str] = []
    safe = SafeRemote(raw, warnings.append)
    safe.put_blob(B, Path("/w/f"))
    safe.put_blob(B, Path("/w/f"))
    assert safe.enabled and len(warnings) == 2 and "not uploading" in warnings[0]


def test_a_broken_warning_sink_does_not_fail_either():
    def boom(msg):
        raise RuntimeError("ui gone")

    safe = SafeRemote(Flaky(RemoteError("x")), boom)
    assert safe.get_action_result("ab" * 32) is None


def test_open_safe_remote():
    with pytest.raises(ValueError):
        open_safe_remote("ftp://nope/")  # a usage error is reported, not swallowed
    from mbuild.cache.remote import TlsConfig

    warnings: list[str] = []
    safe = open_safe_remote(
        "grpcs://127.0.0.1:1", warn=warnings.append, tls=TlsConfig(ca_cert="/nonexistent/ca.pem")
    )
    assert safe.get_action_result("ab" * 32) is None
    assert len(warnings) == 1 and "grpcs://127.0.0.1:1" in warnings[0] and "FileNotFoundError" in warnings[0]
    safe = open_safe_remote("http://127.0.0.1:1/", timeout=60, min_rate=1000)
    assert safe.remote.limits.deadline(1000).seconds == 61  # the limits asked for
    safe.close()
    with pytest.raises(ValueError, match="must be positive"):
        open_safe_remote("http://127.0.0.1:1/", timeout=0)
