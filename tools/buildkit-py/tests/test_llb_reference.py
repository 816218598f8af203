"""Image reference normalisation and platforms (buildkit.llb)."""

from __future__ import annotations

import pytest

from buildkit import llb
from buildkit.llb.platform import Platform

D64 = "sha256:" + "a" * 64


@pytest.mark.parametrize("ref, want", [
    ("python:3.11-slim", "docker.io/library/python:3.11-slim"),
    ("alpine", "docker.io/library/alpine:latest"),
    ("foo/bar", "docker.io/foo/bar:latest"),
    ("foo/bar/baz:1", "docker.io/foo/bar/baz:1"),
    ("docker.io/alpine", "docker.io/library/alpine:latest"),
    ("index.docker.io/foo/bar", "docker.io/foo/bar:latest"),
    ("ghcr.io/org/repo", "ghcr.io/org/repo:latest"),
    ("localhost/foo", "localhost/foo:latest"),
    ("localhost:5000/a/b:c", "localhost:5000/a/b:c"),
    ("127.0.0.1:5000/x@" + D64, "127.0.0.1:5000/x@" + D64),
    ("alpine@" + D64, "docker.io/library/alpine@" + D64),
    ("alpine:3.20@" + D64, "docker.io/library/alpine:3.20@" + D64),
    ("mbuild-test/base:bookworm", "docker.io/mbuild-test/base:bookworm"),
    ("[::1]:5000/img:tag", "[::1]:5000/img:tag"),
    ("my.registry/a__b/c-d.e:v1.2_3", "my.registry/a__b/c-d.e:v1.2_3"),
])
def test_normalize_image_ref(ref, want):
    assert llb.normalize_image_ref(ref) == want
    # normalising is idempotent
    assert llb.normalize_image_ref(want) == want


@pytest.mark.parametrize("ref", [
    "",
    "Alpine",  # repository names are lowercase
    "docker.io/Foo/bar",
    "a" * 64,  # a bare image ID
    "alpine:",
    "alpine@sha256:abc",  # too short
    "alpine@sha256:" + "A" * 64,  # uppercase hex
    "foo//bar",
    "foo bar",
    "alpine:" + "t" * 129,
])
def test_invalid_refs_are_rejected(ref):
    with pytest.raises(llb.LLBError):
        llb.normalize_image_ref(ref)


def test_parse_image_ref_parts():
    r = llb.parse_image_ref("localhost:5000/team/app:v1@" + D64)
    assert (r.domain, r.path, r.tag, r.digest) == ("localhost:5000", "team/app", "v1", D64)
    assert r.name == "localhost:5000/team/app"


def test_image_source_identifier_and_platform():
    st = llb.image("python:3.11-slim", platform="linux/arm64/v8")
    op = st.marshal().ops()[0]
    assert op.source.identifier == "docker-image://docker.io/library/python:3.11-slim"
    assert dict(op.source.attrs) == {}  # resolve mode "default" writes no attr
    assert (op.platform.OS, op.platform.Architecture, op.platform.Variant) == ("linux", "arm64", "")
    pull = llb.image("alpine", resolve_mode="pull").marshal()
    assert dict(pull.ops()[0].source.attrs) == {"image.resolvemode": "pull"}
    assert "source.image.resolvemode" in pull.caps
    with pytest.raises(llb.LLBError):
        llb.image("alpine", resolve_mode="always")


@pytest.mark.parametrize("spec, want", [
    ("linux/amd64", Platform("linux", "amd64")),
    ("linux/x86_64", Platform("linux", "amd64")),
    ("linux/aarch64", Platform("linux", "arm64")),
    ("linux/arm64/v8", Platform("linux", "arm64")),
    ("linux/arm", Platform("linux", "arm", "v7")),
    ("linux/arm/v6", Platform("linux", "arm", "v6")),
    ("arm64", Platform("linux", "arm64")),
])
def test_platform_parse(spec, want):
    assert Platform.parse(spec) == want


def test_host_platform_is_linux(monkeypatch):
    import platform as host

    from buildkit.llb import platform as mod

    monkeypatch.setattr(host, "machine", lambda: "x86_64")
    assert mod.host_platform() == Platform("linux", "amd64")
    monkeypatch.setattr(host, "machine", lambda: "aarch64")
    assert mod.host_platform() == Platform("linux", "arm64")
