"""The gateway: the calls a client-driven build makes on BuildKit's LLBBridge.

A ``Control.Solve`` with neither a Definition nor a Frontend opens a build
whose result the client makes itself, the way a frontend does
(:meth:`buildkit.client.Client.build`). Inside it, :class:`Gateway` can:

* read the daemon's caps (:meth:`Gateway.caps`);
* resolve an image reference to the manifest digest and config BuildKit
  itself will use (:meth:`Gateway.resolve_image_config`), which is how the
  Dockerfile frontend resolves ``FROM``. On a Docker engine this finds
  images that were ``docker load``-ed or ``docker import``-ed, which a bare
  ``docker-image://name@digest`` source on a fresh engine does not;
* solve LLB or run a frontend as a sub-solve (:meth:`Gateway.solve`);
* read a file from a solved result (:meth:`Gateway.read_file`).

The build then returns a :class:`BuildResult`: one ref, or one ref per
platform, which the image exporter writes as one image index.

Every call carries the build's ref in the ``buildkit-controlapi-buildid``
metadata, as BuildKit's Go client does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import grpc

from .errors import BuildKitError, SolveError, Unsupported
from .llb.platform import Platform
from .proto import gateway_pb2, gateway_pb2_grpc, ops_pb2

BUILD_ID_KEY = "buildkit-controlapi-buildid"
RESOLVE_MODES = ("default", "pull", "local")


@dataclass(frozen=True)
class ResolvedImage:
    """An image reference as BuildKit resolved it."""

    ref: str  # the reference asked for, normalised by the daemon
    digest: str  # what the ref points at: a manifest, or an index for several platforms
    config: Mapping[str, Any]  # the platform's OCI image config (``config``, ``rootfs``, ``architecture``…)

    @property
    def container_config(self) -> Mapping[str, Any]:
        """The ``config`` section: Env, User, WorkingDir, Cmd, Entrypoint…"""
        return self.config.get("config") or {}

    @property
    def diff_ids(self) -> tuple[str, ...]:
        """The image's layers, as uncompressed digests."""
        return tuple((self.config.get("rootfs") or {}).get("diff_ids") or ())


@dataclass(frozen=True)
class Ref:
    """A result solved inside a build; its ``id`` is valid until the build returns."""

    id: str


@dataclass
class BuildResult:
    """What a build returns: one ref, or refs keyed by platform, plus metadata.

    ``configs`` holds each platform's image config (the ``config``,
    ``rootfs``-less JSON the exporter completes); metadata values are bytes.
    """

    ref: Ref | None = None
    refs: dict[str, Ref] = field(default_factory=dict)  # platform id -> ref
    platforms: dict[str, Platform] = field(default_factory=dict)
    configs: dict[str, Mapping[str, Any]] = field(default_factory=dict)  # "" or platform id -> config
    metadata: dict[str, bytes] = field(default_factory=dict)

    @classmethod
    def single(cls, ref: Ref, config: Mapping[str, Any] | None = None) -> "BuildResult":
        return cls(ref=ref, configs={"": config} if config is not None else {})

    def add_platform(self, platform: str | Platform, ref: Ref, config: Mapping[str, Any] | None = None) -> None:
        p = Platform.parse(platform)
        pid = str(p)
        self.refs[pid] = ref
        self.platforms[pid] = p
        if config is not None:
            self.configs[pid] = config

    def to_pb(self) -> gateway_pb2.Result:
        if (self.ref is None) == (not self.refs):
            raise BuildKitError("a build result needs exactly one of: a ref, or refs by platform")
        out = gateway_pb2.Result()
        for key, value in self.metadata.items():
            out.metadata[key] = value
        if self.ref is not None:
            out.ref.id = self.ref.id
            if "" in self.configs:
                out.metadata["containerimage.config"] = _config_json(self.configs[""])
            return out
        for pid, ref in self.refs.items():
            out.refs.refs[pid].id = ref.id
            if pid in self.configs:
                out.metadata[f"containerimage.config/{pid}"] = _config_json(self.configs[pid])
        listing = [{"ID": pid, "Platform": _oci_platform(self.platforms[pid])} for pid in self.refs]
        out.metadata["refs.platforms"] = json.dumps({"Platforms": listing}, separators=(",", ":")).encode()
        return out


def _oci_platform(p: Platform) -> dict[str, str]:
    doc = {"architecture": p.architecture, "os": p.os}
    if p.variant:
        doc["variant"] = p.variant
    return doc


def _config_json(config: Mapping[str, Any]) -> bytes:
    return json.dumps(config, sort_keys=True, separators=(",", ":")).encode()


def platform_pb(platform: str | Platform) -> ops_pb2.Platform:
    p = Platform.parse(platform)
    return ops_pb2.Platform(OS=p.os, Architecture=p.architecture, Variant=p.variant)


class Gateway:
    """The LLBBridge calls of one open build (see :meth:`Client.build`)."""

    def __init__(self, channel: grpc.Channel, build_ref: str, session_id: str, address: object = "",
                 version: Callable[[], str] = lambda: "") -> None:
        self._bridge = gateway_pb2_grpc.LLBBridgeStub(channel)
        self._md = ((BUILD_ID_KEY, build_ref),)
        self.build_ref = build_ref
        self.session_id = session_id
        self._address = address
        self._version = version
        self._caps: frozenset[str] | None = None
        self._frontend_caps: frozenset[str] | None = None

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return self._md

    def _ping(self, timeout: float = 10) -> None:
        pong = self._bridge.Ping(gateway_pb2.PingRequest(), metadata=self._md, timeout=timeout)
        self._caps = frozenset(c.ID for c in pong.LLBCaps if c.Enabled)
        self._frontend_caps = frozenset(c.ID for c in pong.FrontendAPICaps if c.Enabled)

    def caps(self) -> frozenset[str]:
        """The daemon's enabled LLB capabilities."""
        if self._caps is None:
            self._ping()
        return self._caps

    def frontend_caps(self) -> frozenset[str]:
        """The daemon's enabled gateway (frontend API) capabilities."""
        if self._frontend_caps is None:
            self._ping()
        return self._frontend_caps

    def require(self, cap: str, feature: str) -> None:
        """Raise :class:`Unsupported` unless the gateway offers ``cap``."""
        if cap not in self.frontend_caps():
            raise Unsupported(feature, self._address, self._version())

    def resolve_image_config(self, ref: str, platform: str | Platform | None = None, mode: str = "default",
                             log_name: str = "") -> ResolvedImage:
        """The digest and config BuildKit resolves ``ref`` to for ``platform``.

        ``mode``: ``default`` (an image the engine has, else the registry),
        ``pull`` (always ask the registry), ``local`` (only the engine's).
        Raises :class:`LookupError` when neither the engine nor a registry
        has it (the message is the daemon's).
        """
        if mode not in RESOLVE_MODES:
            raise ValueError(f"resolve mode {mode!r}: use one of {', '.join(RESOLVE_MODES)}")
        self.require("resolveimage", "resolving image configs")
        req = gateway_pb2.ResolveImageConfigRequest(Ref=ref, ResolveMode=mode, LogName=log_name,
                                                    SessionID=self.session_id)
        if platform is not None:
            req.Platform.CopyFrom(platform_pb(platform))
        try:
            resp = self._bridge.ResolveImageConfig(req, metadata=self._md, timeout=120)
        except grpc.RpcError as e:
            raise LookupError(_details(e)) from None
        try:
            config = json.loads(resp.Config) if resp.Config else {}
        except ValueError:
            raise BuildKitError(f"BuildKit at {self._address} sent an unreadable config for {ref}") from None
        return ResolvedImage(resp.Ref or ref, resp.Digest, config)

    def solve(self, definition: Any = None, frontend: str = "", options: Mapping[str, str] | None = None,
              inputs: Mapping[str, Any] | None = None, evaluate: bool = False) -> BuildResult:
        """Solve a definition (an ``llb.Definition``, ``llb.State`` or the pb), or
        run ``frontend`` with ``options`` and named ``inputs``; returns its refs.

        ``evaluate`` solves at once (errors surface here); otherwise the
        result is solved when it is used or exported.
        """
        req = gateway_pb2.SolveRequest(Frontend=frontend, allowResultReturn=True, allowResultArrayRef=True,
                                       Evaluate=evaluate)
        if definition is not None:
            req.Definition.CopyFrom(definition_pb(definition, self.session_id))
        for key, value in (options or {}).items():
            req.FrontendOpt[key] = value
        for name, d in (inputs or {}).items():
            req.FrontendInputs[name].CopyFrom(definition_pb(d, self.session_id))
        try:
            resp = self._bridge.Solve(req, metadata=self._md, timeout=None)
        except grpc.RpcError as e:
            raise SolveError("gateway solve" if not frontend else f"frontend {frontend}", _details(e)) from None
        return _result_from_pb(resp)

    def read_file(self, ref: Ref, path: str, offset: int = 0, length: int = 0) -> bytes:
        """Bytes of ``path`` in a solved result (all of it unless ``length``)."""
        req = gateway_pb2.ReadFileRequest(Ref=ref.id, FilePath=path)
        if length:
            req.Range.Offset, req.Range.Length = offset, length
        try:
            return self._bridge.ReadFile(req, metadata=self._md, timeout=60).Data
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                raise FileNotFoundError(path) from None
            raise BuildKitError(f"reading {path} from a result: {_details(e)}") from None

    def _return(self, result: BuildResult | None, error: BaseException | None = None) -> None:
        req = gateway_pb2.ReturnRequest()
        if error is not None:
            req.error.code = 2  # UNKNOWN
            req.error.message = str(error) or type(error).__name__
        elif result is not None:
            req.result.CopyFrom(result.to_pb())
        else:
            req.result.SetInParent()  # an empty result: nothing to export
        self._bridge.Return(req, metadata=self._md, timeout=30)


def definition_pb(definition: Any, unique: str | None = None) -> ops_pb2.Definition:
    """The pb of an ``llb.State`` (marshalled with local sources unique to
    ``unique``, a session id, as Go's client does), an ``llb.Definition``, or the pb."""
    if isinstance(definition, ops_pb2.Definition):
        return definition
    if hasattr(definition, "marshal"):  # an llb.State
        definition = definition.marshal(local_unique=unique)
    if getattr(definition, "is_empty", False):
        raise BuildKitError("nothing to build: the result is an empty filesystem (scratch)")
    return definition.to_pb()


def _result_from_pb(resp: gateway_pb2.SolveResponse) -> BuildResult:
    if resp.HasField("result"):
        r = resp.result
        kind = r.WhichOneof("result")
        out = BuildResult(metadata=dict(r.metadata))
        if kind == "ref":
            out.ref = Ref(r.ref.id)
        elif kind == "refs":
            for pid, ref in r.refs.refs.items():
                out.refs[pid] = Ref(ref.id)
                out.platforms[pid] = Platform.parse(pid)
        return out
    return BuildResult(ref=Ref(resp.ref))


def _details(e: grpc.RpcError) -> str:
    text = (e.details() if hasattr(e, "details") else "") or str(e)
    return text.splitlines()[0] if text else type(e).__name__
