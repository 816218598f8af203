"""Capability checks and result shapes of the gateway, against an in-process
LLBBridge that reports the caps of an older engine."""

from __future__ import annotations

import json
from types import SimpleNamespace

import grpc
import pytest

from buildkit import capabilities, exporters, llb
from buildkit.address import parse_address
from buildkit.attestations import provenance
from buildkit.client import Client, SolveRequest
from buildkit.errors import Unsupported
from buildkit.gateway import BUILD_ID_KEY, BuildResult, Gateway, Ref
from buildkit.proto import gateway_pb2, gateway_pb2_grpc

ALL_GATEWAY_CAPS = ("resolveimage", "resolveimage.resolvemode", "solve.inlinereturn", "return", "returnmap",
                    "proto.refarray", "readfile", "frontend.inputs", "gateway.solve.evaluate")
ENGINE = "Docker engine 20.10.24"


class FakeBridge(gateway_pb2_grpc.LLBBridgeServicer):
    def __init__(self, gateway_caps=ALL_GATEWAY_CAPS, llb_caps=()) -> None:
        self.gateway_caps, self.llb_caps = gateway_caps, llb_caps
        self.returned: list[gateway_pb2.ReturnRequest] = []
        self.build_ids: list[str] = []

    def Ping(self, request, context):  # noqa: N802
        self.build_ids.append(dict(context.invocation_metadata()).get(BUILD_ID_KEY, ""))
        return gateway_pb2.PongResponse(
            FrontendAPICaps=[gateway_pb2.APICap(ID=c, Enabled=True) for c in self.gateway_caps],
            LLBCaps=[gateway_pb2.APICap(ID=c, Enabled=True) for c in self.llb_caps])

    def ResolveImageConfig(self, request, context):  # noqa: N802
        return gateway_pb2.ResolveImageConfigResponse(Digest="sha256:" + "a" * 64, Config=b'{"os":"linux"}')

    def Solve(self, request, context):  # noqa: N802 - what the Dockerfile frontend returns for two platforms
        r = gateway_pb2.Result()
        r.refs.refs["linux/amd64"].id = "r1"
        r.refs.refs["linux/arm/v7"].id = "r2"
        r.metadata["refs.platforms"] = json.dumps({"Platforms": [
            {"ID": "linux/amd64", "Platform": {"os": "linux", "architecture": "amd64"}},
            {"ID": "linux/arm/v7", "Platform": {"os": "linux", "architecture": "arm", "variant": "v7"}}]}).encode()
        r.metadata["containerimage.config/linux/arm/v7"] = b'{"architecture":"arm","os":"linux","variant":"v7"}'
        r.metadata["frontend.note"] = b"kept"
        return gateway_pb2.SolveResponse(result=r)

    def Return(self, request, context):  # noqa: N802
        self.returned.append(request)
        return gateway_pb2.ReturnResponse()

    def register(self, server) -> None:
        gateway_pb2_grpc.add_LLBBridgeServicer_to_server(self, server)


def gateway(serve, bridge: FakeBridge) -> Gateway:
    return Gateway(serve(bridge), "build-1", "session-1", "docker:///old.sock", lambda: ENGINE)


def test_an_old_gateway_is_refused_in_one_line_naming_feature_and_engine(serve):
    gw = gateway(serve, FakeBridge(gateway_caps=("solve.inlinereturn",)))
    with pytest.raises(Unsupported) as info:
        gw.resolve_image_config("python:3.11")
    assert str(info.value) == (
        "Docker engine 20.10.24 at docker:///old.sock does not support resolving image configs through the "
        "gateway: it lacks the cap resolveimage (BuildKit v0.3 and newer have it)")
    with pytest.raises(Unsupported, match="reading files from a result through the gateway"):
        gw.read_file(Ref("r1"), "/etc/os-release")
    with pytest.raises(Unsupported, match="gateway solves evaluated at once"):
        gw.solve(llb.scratch().mkfile("/a", "a"), evaluate=True)


def test_multi_platform_results_need_returnmap(serve):
    result = BuildResult()
    result.add_platform("linux/amd64", Ref("r1"), {"architecture": "amd64", "os": "linux"})
    old = FakeBridge(gateway_caps=("return", "proto.refarray"))
    with pytest.raises(Unsupported) as info:
        gateway(serve, old)._return(result)
    assert "multi-platform results (refs keyed by platform): it lacks the cap returnmap" in str(info.value)
    assert ENGINE in str(info.value) and not old.returned

    bridge = FakeBridge()
    gateway(serve, bridge)._return(result)
    sent = bridge.returned[0].result
    assert dict(sent.refs.refs)["linux/amd64"].id == "r1"
    assert json.loads(sent.metadata["refs.platforms"]) == {
        "Platforms": [{"ID": "linux/amd64", "Platform": {"architecture": "amd64", "os": "linux"}}]}
    assert json.loads(sent.metadata["containerimage.config/linux/amd64"])["architecture"] == "amd64"
    assert bridge.build_ids and set(bridge.build_ids) == {"build-1"}


def test_a_frontend_result_reads_back_with_its_platforms_and_configs_and_returns_as_is(serve):
    bridge = FakeBridge()
    gw = gateway(serve, bridge)
    got = gw.solve(frontend="dockerfile.v0", options={"platform": "linux/amd64,linux/arm/v7"})
    assert got.is_multi_platform and set(got.refs) == {"linux/amd64", "linux/arm/v7"}
    assert str(got.platforms["linux/arm/v7"]) == "linux/arm/v7"
    assert got.configs == {"linux/arm/v7": {"architecture": "arm", "os": "linux", "variant": "v7"}}
    gw._return(got)
    sent = bridge.returned[0].result
    assert sent.metadata["frontend.note"] == b"kept"
    assert json.loads(sent.metadata["containerimage.config/linux/arm/v7"])["variant"] == "v7"
    assert "containerimage.config/linux/amd64" not in sent.metadata
    listed = {p["ID"]: p["Platform"] for p in json.loads(sent.metadata["refs.platforms"])["Platforms"]}
    assert listed["linux/arm/v7"] == {"architecture": "arm", "os": "linux", "variant": "v7"}


def test_a_result_needs_exactly_one_shape():
    with pytest.raises(Exception, match="exactly one of"):
        BuildResult().to_pb()
    both = BuildResult(ref=Ref("a"))
    both.add_platform("linux/amd64", Ref("b"))
    with pytest.raises(Exception, match="exactly one of"):
        both.to_pb()


def client_with_caps(llb_caps, gateway_caps) -> Client:
    """A Client whose caps are known (as after its first gateway call) on an
    address nothing listens on: a refused request never reaches the wire."""
    address = parse_address("unix:///nonexistent/buildkitd.sock")
    client = Client(SimpleNamespace(address=address, channel=grpc.insecure_channel("unix:/nonexistent/bk.sock")))
    client._caps, client._gateway_caps = frozenset(llb_caps), frozenset(gateway_caps)
    client._exporters = frozenset({"image", "oci", "local", "tar"})
    client._engine = "BuildKit v0.10.6"
    return client


def test_attestations_and_several_exporters_are_checked_before_the_solve(tmp_path):
    client = client_with_caps({"source.image", "file.base"}, ALL_GATEWAY_CAPS)
    st = llb.scratch().mkfile("/a", "a")
    with pytest.raises(Unsupported) as info:
        client.solve(SolveRequest(definition=st, frontend_attrs=provenance("max")))
    assert str(info.value) == (
        "BuildKit v0.10.6 at unix:///nonexistent/buildkitd.sock does not support attestations "
        "(attest:provenance, attest:sbom): it lacks the cap exporter.image.attestations "
        "(BuildKit v0.11 and newer have it)")
    with pytest.raises(Unsupported, match="more than one exporter in a solve: it lacks the cap exporter.multiple"):
        client.solve(SolveRequest(definition=st, exports=(exporters.local_dir(tmp_path / "a"),
                                                          exporters.tar(tmp_path / "b.tar"))))


def test_features_name_every_missing_cap():
    assert capabilities.MULTI_PLATFORM.missing({"x"}, {"proto.refarray"}) == ["returnmap"]
    assert capabilities.MULTI_PLATFORM.explain(["returnmap", "proto.refarray"]).startswith(
        "multi-platform results (refs keyed by platform): it lacks the caps returnmap, proto.refarray")
