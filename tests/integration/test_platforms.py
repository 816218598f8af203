"""Other platforms on the engine: a two-platform image from a multi-platform
base (`mbuild-test/multi:bookworm`, made by scripts/env-up), a RUN step per
platform, in one solve giving one image index with both manifests; its arm64
image runs under qemu and reports aarch64. The base is resolved per platform;
a base without the platform is one line naming both."""

from __future__ import annotations

import hashlib
import json
import subprocess
import tarfile

import pytest

from ..conftest import BASE_IMAGE
from .conftest import remove_images
from .workspaces import Workspace, git, write_tree

pytestmark = pytest.mark.engine

MULTI_BASE = "mbuild-test/multi:bookworm"  # an image index: linux/amd64 and linux/arm64 (scripts/env-up)
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"


@pytest.fixture
def platforms_ws(tmp_path, docker_sdk, run_id):
    suffix = f"{run_id}-{hashlib.sha256(str(tmp_path).encode()).hexdigest()[:8]}"
    names = {"both": f"mbuild-test-platforms-{suffix}:1", "arm": f"mbuild-test-platforms-arm-{suffix}:1",
             "amd-only": f"mbuild-test-platforms-amd-{suffix}:1", "df": f"mbuild-test-platforms-df-{suffix}:1"}
    root = tmp_path / "ws"
    write_tree(root, {
        "WORKSPACE.toml": f'name = "platforms"\n[images.multi]\nref = "{MULTI_BASE}"\n'
                          f'[images.amd64_only]\nref = "{BASE_IMAGE}"\n',
        "img/BUILD": f"""
            container_image(name = "both", base = "multi", commands = ["uname -m > /arch"],
                            platforms = ["linux/amd64", "linux/arm64"], image = "{names['both']}")
            container_image(name = "arm", base = "multi", commands = ["uname -m > /arch"],
                            image = "{names['arm']}")
            container_image(name = "amd-only", base = "amd64_only", commands = ["uname -m > /arch"],
                            platforms = ["linux/amd64", "linux/arm64"], image = "{names['amd-only']}")
            """,
        "df/Dockerfile": f"ARG BASE={MULTI_BASE}\nFROM ${{BASE}} AS build\nRUN uname -m > /arch\nFROM build\n",
        "df/BUILD": f"""
            dockerfile(name = "df", platforms = ["linux/amd64", "linux/arm64"], image = "{names['df']}")
            """,
    })
    git(root, "init", "-q")
    ws = Workspace(root, tmp_path / "cache", names)
    yield ws
    remove_images(docker_sdk, names.values())


def arch_in(image: str, platform: str) -> str:
    return subprocess.run(["docker", "run", "--rm", "--platform", platform, image, "cat", "/arch"],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_two_platforms_make_one_index_with_a_run_step_each(platforms_ws, tmp_path):
    ws = platforms_ws
    out = tmp_path / "both.tar"
    built = ws.build_json("//img:both", "-o", f"type=oci,dest={out}")["//img:both"]
    assert built["platforms"] == ["linux/amd64", "linux/arm64"]
    with tarfile.open(out) as tar:
        (top,) = json.load(tar.extractfile("index.json"))["manifests"]
        assert top["mediaType"] == INDEX_TYPE and top["digest"] == built["manifest_digest"]
        index = json.load(tar.extractfile(f"blobs/sha256/{top['digest'][7:]}"))
        platforms = sorted(f"{m['platform']['os']}/{m['platform']['architecture']}" for m in index["manifests"])
        assert platforms == ["linux/amd64", "linux/arm64"]
    assert arch_in(ws.names["both"], "linux/arm64") == "aarch64"  # the RUN step ran under qemu
    assert arch_in(ws.names["both"], "linux/amd64") == "x86_64"
    again = ws.build_json("//img:both")["//img:both"]
    assert again["source"] == "local-cache" and again["manifest_digest"] == built["manifest_digest"]


def test_platform_on_the_command_line_and_keys_per_platform(platforms_ws):
    ws = platforms_ws
    arm = ws.build_json("//img:arm", "--platform", "linux/arm64")["//img:arm"]
    amd = ws.build_json("//img:arm")["//img:arm"]  # the host's platform: another key, another image
    assert arm["platforms"] == ["linux/arm64"] and amd["platforms"] == ["linux/amd64"]
    assert arm["key"] != amd["key"] and arm["manifest_digest"] != amd["manifest_digest"]
    explained = ws.mbuild("explain", "//img:arm").stdout
    assert '"platform": "linux/amd64"' in explained
    assert arch_in(ws.names["arm"], "linux/amd64") == "x86_64"
    # One name holds one of the two in the engine: the arm64 one comes back under the same key and digest.
    again = ws.build_json("//img:arm", "--platform", "linux/arm64")["//img:arm"]
    assert again["key"] == arm["key"] and again["manifest_digest"] == arm["manifest_digest"]
    assert arch_in(ws.names["arm"], "linux/arm64") == "aarch64"


def test_a_base_without_the_platform_is_one_line(platforms_ws):
    failed = platforms_ws.mbuild("build", "//img:amd-only", check=False)
    assert failed.returncode == 1
    line = failed.stderr.strip().splitlines()[-1]
    assert line.startswith("mbuild: error: img/BUILD:5: //img:amd-only: base image amd64_only")
    assert "has no linux/arm64 image" in line


def test_a_dockerfile_target_for_two_platforms(platforms_ws):
    ws = platforms_ws
    built = ws.build_json("//df:df")["//df:df"]
    assert built["platforms"] == ["linux/amd64", "linux/arm64"]
    assert arch_in(ws.names["df"], "linux/arm64") == "aarch64"  # FROM resolved (and pinned) per platform
    assert arch_in(ws.names["df"], "linux/amd64") == "x86_64"
    assert ws.build_json("//df:df")["//df:df"]["source"] == "local-cache"
