"""Tests for py_core (stdlib + pytest only)."""

from datetime import datetime, timedelta, timezone

import pytest

import py_core
from py_core import health_payload, version_string


def test_version_string():
    assert version_string("api", "1.2.3") == "api/1.2.3"
    assert version_string(" api ", " 1.0 ") == "api/1.0"


@pytest.mark.parametrize("name,version", [("", "1"), ("api", " ")])
def test_version_string_rejects_empty(name, version):
    with pytest.raises(ValueError):
        version_string(name, version)


def test_health_payload_is_deterministic_with_now():
    now = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    assert health_payload("api", "0.1.0", now=now, port=8000) == {
        "status": "ok",
        "service": "api",
        "version": "api/0.1.0",
        "time": "2024-01-02T01:04:05Z",
        "port": 8000,
    }


def test_health_payload_defaults_to_utc_now():
    payload = health_payload("api", "0.1.0")
    assert payload["status"] == "ok"
    assert payload["time"].endswith("Z")


def test_health_payload_extra_cannot_override():
    with pytest.raises(ValueError):
        health_payload("api", "0.1.0", status="down")


def test_package_version():
    assert py_core.__version__ == "0.1.0"
