"""Builds with remote caches on the real servers (BuildGrid REAPI, nginx HTTP):
a remote hit restores the image without a build step and with the same
digest; a remote that is down, silent or serving wrong bytes never fails a
build."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from ..conftest import docker_run
from .conftest import json_records, steps_solved

pytestmark = [pytest.mark.engine, pytest.mark.servers]

REAPI = "grpc://127.0.0.1:50051"
HTTP_ROOT = "http://127.0.0.1:8089"
HTTP_DATA = Path("/var/cache/mbuild-env/httpcache/data")  # scripts/env-up serves this folder


@pytest.mark.parametrize("kind", ["reapi", "http"])
def test_remote_hit_restores_the_image_without_building(ws, docker_sdk, tmp_path, run_id, kind):
    url = REAPI if kind == "reapi" else f"{HTTP_ROOT}/mbuild-test-{run_id}/"
    first = ws.build_json("--remote", url, "--remote-upload", "//images:compose")
    assert first["//images:app"]["source"] == "solve"
    for name in ws.names.values():
        docker_sdk.images.remove(name, force=True)
    (ws.root / "mbuild-out" / "images" / "docker-compose.yml").unlink()
    empty = tmp_path / "empty-cache"
    proc = ws.mbuild("--cache-dir", str(empty), "build", "--json", "--progress", "json", "--remote", url,
                     "//images:compose")
    assert steps_solved(proc.stderr) == [], proc.stderr[-2000:]  # BuildKit only resolved the bases
    again = json_records(proc.stdout)
    for label in ("//images:app", "//images:tool", "//images:compose"):
        assert again[label]["source"] == "remote-cache", (label, proc.stderr[-2000:])
    for label in ("//images:app", "//images:tool"):
        assert again[label]["manifest_digest"] == first[label]["manifest_digest"]
        assert docker_sdk.images.get(ws.names[label.split(":")[1]]).id == first[label]["manifest_digest"]
    assert docker_run(ws.names["app"]).stdout.strip() == "hello"
    assert first["//images:app"]["manifest_digest"] in (ws.root / "mbuild-out/images/docker-compose.yml").read_text()
    # The base image's layers came from the engine, not over the wire.
    fetched = sum(p.stat().st_size for p in (empty / "cas").rglob("*") if p.is_file())
    base_size = docker_sdk.images.get("mbuild-test/base:bookworm").attrs["Size"]
    assert fetched < base_size / 10, (fetched, base_size)


def test_read_only_by_default(ws, tmp_path, run_id):
    url = f"{HTTP_ROOT}/mbuild-test-ro-{run_id}/"
    ws.build_json("--remote", url, "//images:app")
    proc = ws.mbuild("--cache-dir", str(tmp_path / "other"), "build", "--json", "--remote", url, "//images:app")
    assert json_records(proc.stdout)["//images:app"]["source"] != "remote-cache"


class SilentServer:
    """Accepts connections and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.mark.parametrize("failure", ["down-grpc", "down-http", "silent-grpc", "silent-http"])
def test_unreachable_or_silent_remote_never_fails_a_build(ws, failure):
    server = SilentServer() if failure.startswith("silent") else None
    try:
        port = server.port if server else 1
        url = f"grpc://127.0.0.1:{port}" if failure.endswith("grpc") else f"http://127.0.0.1:{port}/"
        t0 = time.monotonic()
        proc = ws.mbuild("build", "--json", "--remote", url, "--remote-upload", "//images:compose")
        elapsed = time.monotonic() - t0
    finally:
        if server:
            server.close()
    built = json_records(proc.stdout)
    assert {r["source"] for r in built.values()} <= {"solve", "render"}
    warnings = [line for line in proc.stderr.splitlines() if "remote cache" in line]
    assert len(warnings) == 1, proc.stderr
    assert f"127.0.0.1:{port}" in warnings[0]
    assert elapsed < 60  # bounded: one timeout at most, then the remote is off for the run


def test_wrong_bytes_from_the_remote_are_rejected(ws, tmp_path, run_id, docker_sdk):
    url = f"{HTTP_ROOT}/mbuild-test-corrupt-{run_id}/"
    first = ws.build_json("--remote", url, "--remote-upload", "//images:app")["//images:app"]
    layer_dir = HTTP_DATA / f"mbuild-test-corrupt-{run_id}" / "cas"
    blobs = sorted(layer_dir.iterdir(), key=lambda p: p.stat().st_size)
    assert blobs
    for blob in blobs:  # same size, wrong bytes
        blob.write_bytes(bytes(b ^ 0xFF for b in blob.read_bytes()))
    docker_sdk.images.remove(ws.names["app"], force=True)
    proc = ws.mbuild("--cache-dir", str(tmp_path / "empty"), "build", "--json", "--remote", url, "//images:app")
    again = json_records(proc.stdout)["//images:app"]
    assert again["source"] == "solve"  # never a wrong result
    assert again["manifest_digest"] == first["manifest_digest"]  # rebuilt from BuildKit's cache
    assert sum("remote cache" in line for line in proc.stderr.splitlines()) == 1, proc.stderr
    assert docker_run(ws.names["app"]).stdout.strip() == "hello"
