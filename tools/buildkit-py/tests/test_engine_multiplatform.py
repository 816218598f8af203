"""Multi-platform images: one result per platform returned through the
gateway as refs keyed by platform, exported as ONE index with a manifest per
platform. Only copy and file steps run for linux/arm64, so no emulation is
needed (the arm64 image carries a file built by the amd64 step)."""

from __future__ import annotations

import pytest

from buildkit import exporters, llb
from buildkit.client import SolveRequest
from buildkit.dockerfile import solve_request
from buildkit.multiplatform import platform_build

from bk_oci import OCIArchive
from bk_testenv import BASE_IMAGE

pytestmark = pytest.mark.engine


def test_two_platforms_through_the_gateway_make_one_index(buildkit, base_image_config, tmp_path):
    built = llb.image(BASE_IMAGE, config=base_image_config).run(
        "mkdir -p /out && uname -m > /out/built-on && echo 'the tool' > /out/tool", name="build the tool").root()
    amd64 = built.mkfile("/platform", "amd64\n").with_cmd(["cat", "/platform"])
    arm64 = (llb.scratch(platform="linux/arm64").copy(built, "/out/", "/opt/").mkfile("/platform", "arm64\n")
             .with_env("TOOL", "/opt/tool").with_cmd(["/opt/tool"]))
    out = tmp_path / "multi.tar"
    result = buildkit.build(platform_build({"linux/amd64": amd64, "linux/arm64": arm64}),
                            SolveRequest(exports=(exporters.oci_tarball(out),)))
    archive = OCIArchive(out)
    index = archive.index()
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert result.manifest_digest == archive.tar_index_digest()
    images = {i.platform: i for i in archive.images()}
    assert sorted(images) == ["linux/amd64", "linux/arm64"]
    assert len(index["manifests"]) == 2
    amd, arm = images["linux/amd64"], images["linux/arm64"]
    assert (amd.config["architecture"], amd.config["os"]) == ("amd64", "linux")
    assert (arm.config["architecture"], arm.config["os"]) == ("arm64", "linux")
    assert amd.config["config"]["Cmd"] == ["cat", "/platform"]
    assert arm.config["config"]["Cmd"] == ["/opt/tool"] and "TOOL=/opt/tool" in arm.config["config"]["Env"]
    arm_files = archive.files(arm)
    assert arm_files["platform"] == b"arm64\n" and arm_files["opt/tool"] == b"the tool\n"
    assert arm_files["opt/built-on"] == b"x86_64\n"  # built once, on this machine
    assert "usr/bin/python3" not in arm_files and archive.files(amd)["platform"] == b"amd64\n"
    archive.close()


def test_a_dockerfile_for_two_platforms_makes_one_index(buildkit, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "hello.txt").write_text("hello\n")
    (ctx / "Dockerfile").write_text("FROM scratch\nARG TARGETARCH\nCOPY hello.txt /hello-$TARGETARCH.txt\n")
    out = tmp_path / "df.tar"
    buildkit.solve(solve_request(ctx, platforms=["linux/amd64", "linux/arm64"],
                                 exports=(exporters.oci_tarball(out),)))
    archive = OCIArchive(out)
    images = {i.platform: i for i in archive.images()}
    assert sorted(images) == ["linux/amd64", "linux/arm64"]
    assert images["linux/arm64"].config["architecture"] == "arm64"
    assert list(archive.files(images["linux/arm64"])) == ["hello-arm64.txt"]
    assert list(archive.files(images["linux/amd64"])) == ["hello-amd64.txt"]
    archive.close()
