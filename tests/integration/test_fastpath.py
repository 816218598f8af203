"""The no-op fast path (mbuild.fastpath): it answers an unchanged build from
its stamp, and never once anything the build depends on has changed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .conftest import json_records

pytestmark = pytest.mark.engine

TARGET = "//images:compose"


def run(ws, *args: str) -> dict[str, dict]:
    """``python -m mbuild`` (the real entry point, fast path included)."""
    env = {**os.environ, "XDG_CACHE_HOME": str(ws.cache / "xdg")}
    proc = subprocess.run([sys.executable, "-m", "mbuild", "--cache-dir", str(ws.cache), "build", "--json", *args,
                           TARGET], cwd=ws.root, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json_records(proc.stdout)


def sources(records: dict[str, dict]) -> set[str]:
    return {r["source"] for r in records.values()}


def test_an_unchanged_build_is_answered_by_the_stamp(ws):
    first = run(ws)
    assert "solve" in sources(first)
    again = run(ws)
    assert sources(again) == {"noop-stamp"}
    for label, record in first.items():
        assert again[label]["manifest_digest"] == record["manifest_digest"]
        assert again[label]["cached"] is True


@pytest.mark.parametrize("change", ["edit-source", "new-file-in-glob", "edit-build-file", "edit-rule-file",
                                    "delete-image", "edit-output", "other-arguments"])
def test_any_change_falls_through_to_a_real_build(ws, docker_sdk, change):
    run(ws)
    assert sources(run(ws)) == {"noop-stamp"}
    extra: tuple[str, ...] = ()
    if change == "edit-source":
        (ws.root / "lib" / "greeting.txt").write_text("changed\n")
    elif change == "new-file-in-glob":
        (ws.root / "lib" / "more.txt").write_text("more\n")
    elif change == "edit-build-file":
        with (ws.root / "images" / "BUILD").open("a") as f:
            f.write("\n# a comment\n")
    elif change == "edit-rule-file":
        with (ws.root / "rules" / "compose.py").open("a") as f:
            f.write("\n# a comment\n")
    elif change == "delete-image":
        docker_sdk.images.remove(ws.names["app"], force=True)
    elif change == "edit-output":
        (ws.root / "mbuild-out" / "images" / "docker-compose.yml").write_text("tampered\n")
    elif change == "other-arguments":
        extra = ("--jobs", "2")
    after = run(ws, *extra)
    assert "noop-stamp" not in sources(after), change
    if change in ("edit-source", "new-file-in-glob"):
        assert after["//images:app"]["source"] == "solve"
    if change == "edit-rule-file":  # compose's key covers its rule file: rendered again, images cached
        assert after["//images:compose"]["source"] == "render"
        assert after["//images:app"]["source"] == "local-cache"
    if change == "delete-image":
        assert docker_sdk.images.get(ws.names["app"]).id == after["//images:app"]["manifest_digest"]
    if change == "edit-output":
        assert "tampered" not in (ws.root / "mbuild-out" / "images" / "docker-compose.yml").read_text()
    assert sources(run(ws, *extra)) == {"noop-stamp"}  # and the new stamp answers the next one
