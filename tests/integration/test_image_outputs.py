"""Outputs on the engine: `--push` to the local registry and `push = True` to
a second registry that wants basic auth (credentials from the docker
config), the registry's digest the built one, an unchanged push uploading
nothing; `--output type=oci|docker` tarballs that `docker load` and an OCI
layout reader (index.json) accept, with the built digest."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import tarfile
import time
import urllib.request
from pathlib import Path

import pytest

from ..conftest import BASE_IMAGE, REGISTRY
from .conftest import remove_images
from .engines import free_port
from .workspaces import Workspace, git, write_tree

pytestmark = pytest.mark.engine

USER, PASSWORD = "mbuild-test", "pw-for-the-test-registry"


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory):
    """A registry of its own on a free port that wants basic auth (Debian's
    docker-registry with an htpasswd file made by htpasswd); its address.
    No TLS is needed: distribution 2.8 takes basic auth over plain HTTP, and
    every engine sends it to 127.0.0.0/8 registries, which it treats as
    insecure (plain HTTP) by default, so no engine's certs.d is touched."""
    folder = tmp_path_factory.mktemp("auth-registry")
    port = free_port()
    htpasswd = subprocess.run(["htpasswd", "-Bbn", USER, PASSWORD], capture_output=True, text=True, check=True)
    (folder / "htpasswd").write_text(htpasswd.stdout)
    (folder / "config.yml").write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {folder}/data\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
        f"auth:\n  htpasswd:\n    realm: mbuild-test\n    path: {folder}/htpasswd\n")
    log = open(folder / "registry.log", "wb")
    proc = subprocess.Popen(["docker-registry", "serve", str(folder / "config.yml")], stdout=log, stderr=log)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://{address}/v2/", timeout=1)
            except urllib.error.HTTPError as e:
                if e.code == 401:
                    break  # up, and wanting credentials
            except OSError:
                pass
            assert time.monotonic() < deadline, (folder / "registry.log").read_text()
            time.sleep(0.2)
        yield address
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.fixture
def docker_config(tmp_path, auth_registry):
    """A docker config holding the auth registry's credentials (as `docker login` writes them)."""
    folder = tmp_path / "docker-config"
    folder.mkdir()
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (folder / "config.json").write_text(json.dumps({"auths": {auth_registry: {"auth": auth}}}))
    return {"DOCKER_CONFIG": str(folder)}


def registry_digest(address: str, repo: str, tag: str, credentials: tuple[str, str] | None = None) -> str:
    req = urllib.request.Request(f"http://{address}/v2/{repo}/manifests/{tag}", method="HEAD", headers={
        "Accept": "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json"})
    if credentials:
        req.add_header("Authorization", "Basic " + base64.b64encode(":".join(credentials).encode()).decode())
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.headers["Docker-Content-Digest"]


@pytest.fixture
def outputs_ws(tmp_path, docker_sdk, run_id, auth_registry):
    """Two images: one named in the local registry, one in the auth registry with push = True."""
    import hashlib

    repo = f"mbuild-test-{run_id}-{hashlib.sha256(str(tmp_path).encode()).hexdigest()[:8]}"
    names = {"local": f"{REGISTRY}/{repo}/app:1", "auth": f"{auth_registry}/{repo}/app:1"}
    root = tmp_path / "ws"
    write_tree(root, {
        "WORKSPACE.toml": f'name = "outputs"\n[images.base]\nref = "{BASE_IMAGE}"\n',
        "img/BUILD": f"""
            container_image(name = "local", base = "base", commands = ["echo {run_id} > /id"],
                            image = "{names['local']}")
            container_image(name = "auth", base = "base", commands = ["echo auth {run_id} > /id"],
                            image = "{names['auth']}", push = True)
            """,
    })
    git(root, "init", "-q")
    ws = Workspace(root, tmp_path / "cache", names)
    ws.repo = repo
    yield ws
    remove_images(docker_sdk, names.values())
    try:  # the shared registry keeps nothing of the test
        digest = registry_digest(REGISTRY, f"{repo}/app", "1")
        urllib.request.urlopen(urllib.request.Request(f"http://{REGISTRY}/v2/{repo}/app/manifests/{digest}",
                                                      method="DELETE"), timeout=10)
    except OSError:
        pass  # never pushed


def test_push_sends_the_built_digest_to_both_registries(outputs_ws, auth_registry, docker_config):
    ws = outputs_ws
    first = ws.build_json("//img:local", "//img:auth", "--push", env=docker_config)
    local, auth = first["//img:local"], first["//img:auth"]
    assert local["pushed"] == {"ref": ws.names["local"], "digest": local["manifest_digest"], "uploaded": True}
    assert auth["pushed"] == {"ref": ws.names["auth"], "digest": auth["manifest_digest"], "uploaded": True}
    assert registry_digest(REGISTRY, f"{ws.repo}/app", "1") == local["manifest_digest"]
    assert registry_digest(auth_registry, f"{ws.repo}/app", "1", (USER, PASSWORD)) == auth["manifest_digest"]

    again = ws.build_json("//img:local", "//img:auth", "--push", env=docker_config)
    for label in again:  # answered from the action cache, and the registries have it: nothing is uploaded
        assert again[label]["source"] == "local-cache"
        assert again[label]["pushed"]["uploaded"] is False
        assert again[label]["pushed"]["digest"] == first[label]["manifest_digest"]

    # Without --push only the push = True image is pushed; without credentials that fails in one line.
    plain = ws.build_json("//img:local", "//img:auth", env=docker_config)
    assert plain["//img:local"]["pushed"] is None and plain["//img:auth"]["pushed"]["uploaded"] is False
    subprocess.run(["curl", "-sf", "-o", "/dev/null", "-X", "DELETE", "-u", f"{USER}:{PASSWORD}",
                    f"http://{auth_registry}/v2/{ws.repo}/app/manifests/{auth['manifest_digest']}"])
    denied = ws.mbuild("build", "//img:auth", check=False, env={"DOCKER_CONFIG": str(ws.root / "no-config")})
    assert denied.returncode == 1, denied.stderr
    assert denied.stderr.strip().splitlines()[-1].startswith(f"mbuild: error: pushing {ws.names['auth']}")


def test_oci_and_docker_tarballs_hold_the_built_image(outputs_ws, docker_sdk, tmp_path):
    ws = outputs_ws
    oci, docker = tmp_path / "oci" / "{target}.tar", tmp_path / "docker.tar"
    built = ws.build_json("//img:local", "--output", f"type=oci,dest={oci}")["//img:local"]
    digest = built["manifest_digest"]
    oci_file = Path(str(oci).replace("{target}", "img-local"))
    assert built["outputs"] == [str(oci_file)]
    cached = ws.build_json("//img:local", "-o", f"type=docker,dest={docker}")["//img:local"]
    assert cached["source"] == "local-cache" and cached["outputs"] == [str(docker)]
    for archive in (oci_file, docker):
        with tarfile.open(archive) as tar:  # an OCI image layout reader: index.json, then the blobs
            assert json.load(tar.extractfile("oci-layout"))["imageLayoutVersion"] == "1.0.0"
            (desc,) = json.load(tar.extractfile("index.json"))["manifests"]
            assert desc["digest"] == digest
            manifest = json.load(tar.extractfile(f"blobs/sha256/{digest[7:]}"))
            for blob in [manifest["config"], *manifest["layers"]]:
                assert tar.getmember(f"blobs/sha256/{blob['digest'][7:]}").size == blob["size"]
        docker_sdk.images.remove(ws.names["local"], force=True)
        loaded = subprocess.run(["docker", "load", "-i", str(archive)], capture_output=True, text=True)
        assert loaded.returncode == 0, loaded.stderr
        assert docker_sdk.images.get(ws.names["local"]).id == digest

    many = ws.mbuild("build", "//img:local", "//img:auth", "-o", f"type=oci,dest={tmp_path}/one.tar", check=False,
                     env={"DOCKER_CONFIG": os.devnull})
    assert many.returncode == 2 and "put {target} in dest" in many.stderr
