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
platform, which the image exporter writes as one image index
(:func:`buildkit.multiplatform.platform_build` makes such a build from one
State per platform).

Each call first checks that the daemon has the caps it needs
(:mod:`buildkit.capabilities`): an older engine gets a one-line
:class:`~buildkit.errors.Unsupported` naming the feature and the engine.

Every call carries the build's ref in the ``buildkit-controlapi-buildid``
metadata, as BuildKit's Go client does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import grpc

from . import capabilities as caps
from .capabilities import Feature
from .errors import BuildKitError, SolveError, Unsupported
from .llb.platform import Platform
from .proto import gateway_pb2, gateway_pb2_grpc, ops_pb2

BUILD_ID_KEY = "buildkit-controlapi-buildid"
RESOLVE_MODES = ("default", "pull", "local")
PLATFORMS_KEY = "refs.platforms"  # metadata: which platform each ref of a RefMap is
CONFIG_KEY = "containerimage.config"  # metadata: an image config, "/<platform id>" for one of several


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
    """What a build returns: one ref, or refs keyed by platform id, plus metadata.

    ``configs`` holds image configs (the OCI image config JSON; the exporter
    adds the layers): under ``""`` for a single ref, under each platform id
    for refs by platform. Metadata values are bytes (str is encoded); the
    ``refs.platforms`` and ``containerimage.config*`` keys are written from
    ``platforms`` and ``configs``.
    """

    ref: Ref | None = None
    refs: dict[str, Ref] = field(default_factory=dict)  # platform id ("linux/arm64") -> ref
    platforms: dict[str, Platform] = field(default_factory=dict)  # platform id -> platform
    configs: dict[str, Mapping[str, Any]] = field(default_factory=dict)  # "" or platform id -> config
    metadata: dict[str, bytes] = field(default_factory=dict)

    @classmethod
    def single(cls, ref: Ref, config: Mapping[str, Any] | None = None) -> "BuildResult":
        """One ref, with its image config if it becomes an image."""
        return cls(ref=ref, configs={"": config} if config is not None else {})

    @property
    def is_multi_platform(self) -> bool:
        return bool(self.refs)

    def add_platform(self, platform: str | Platform, ref: Ref, config: Mapping[str, Any] | None = None) -> None:
        """Add ``platform``'s ref (and its image config, whose ``architecture``
        and ``os`` should be the platform's: the exporter writes it as given)."""
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
            if key == PLATFORMS_KEY or key == CONFIG_KEY or key.startswith(CONFIG_KEY + "/"):
                continue  # written from platforms and configs below
            out.metadata[key] = value.encode() if isinstance(value, str) else bytes(value)
        if self.ref is not None:
            out.ref.id = self.ref.id
            if "" in self.configs:
                out.metadata[CONFIG_KEY] = _config_json(self.configs[""])
            return out
        for pid, ref in self.refs.items():
            out.refs.refs[pid].id = ref.id
            if pid in self.configs:
                out.metadata[f"{CONFIG_KEY}/{pid}"] = _config_json(self.configs[pid])
        listing = [{"ID": pid, "Platform": _oci_platform(self.platforms.get(pid) or Platform.parse(pid))}
                   for pid in self.refs]
        out.metadata[PLATFORMS_KEY] = json.dumps({"Platforms": listing}, separators=(",", ":")).encode()
        return out

    @classmethod
    def from_pb(cls, r: gateway_pb2.Result) -> "BuildResult":
        """A result as a sub-solve returned it (a frontend's configs and platforms read back)."""
        out = cls(metadata=dict(r.metadata))
        kind = r.WhichOneof("result")
        if kind == "ref":
            out.ref = Ref(r.ref.id)
            if CONFIG_KEY in r.metadata:
                out.configs[""] = _json_object(r.metadata[CONFIG_KEY])
            return out
        if kind != "refs":
            return out
        listed: dict[str, Platform] = {}
        if PLATFORMS_KEY in r.metadata:
            for item in (_json_object(r.metadata[PLATFORMS_KEY]).get("Platforms") or ()):
                p = item.get("Platform") or {}
                listed[item.get("ID", "")] = Platform(p.get("os", "linux"), p.get("architecture", ""),
                                                      p.get("variant", "")).normalized()
        for pid, ref in r.refs.refs.items():
            out.refs[pid] = Ref(ref.id)
            out.platforms[pid] = listed.get(pid) or Platform.parse(pid)
            key = f"{CONFIG_KEY}/{pid}"
            if key in r.metadata:
                out.configs[pid] = _json_object(r.metadata[key])
        return out


def _oci_platform(p: Platform) -> dict[str, str]:
    doc = {"architecture": p.architecture, "os": p.os}
    if p.variant:
        doc["variant"] = p.variant
    return doc


def _config_json(config: Mapping[str, Any]) -> bytes:
    return json.dumps(config, sort_keys=True, separators=(",", ":")).encode()


def _json_object(data: bytes) -> dict:
    try:
        value = json.loads(data)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def platform_pb(platform: str | Platform) -> ops_pb2.Platform:
    p = Platform.parse(platform)
    return ops_pb2.Platform(OS=p.os, Architecture=p.architecture, Variant=p.variant)


class Gateway:
    """The LLBBridge calls of one open build (see :meth:`Client.build`)."""

    def __init__(self, channel: grpc.Channel, build_ref: str, session_id: str, address: object = "",
                 engine: Callable[[], str] = lambda: "BuildKit") -> None:
        self._bridge = gateway_pb2_grpc.LLBBridgeStub(channel)
        self._md = ((BUILD_ID_KEY, build_ref),)
        self.build_ref = build_ref
        self.session_id = session_id
        self._address = address
        self._engine = engine  # describes the daemon for Unsupported, e.g. "Docker engine 26.1.5"
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

    def require(self, *features: Feature) -> None:
        """Raise :class:`Unsupported` for the first of ``features`` the daemon lacks."""
        for feature in features:
            missing = feature.missing(self.caps(), self.frontend_caps())
            if missing:
                raise Unsupported(feature.explain(missing), self._address, self._engine())

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
        self.require(caps.RESOLVE_IMAGE, *((caps.RESOLVE_MODE,) if mode != "default" else ()))
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
        result is solved when it is used or exported. A failed step raises
        :class:`SolveError` (re-raised from :meth:`Client.build` with the
        step's command, exit code and log tail).
        """
        self.require(*((caps.FRONTEND_INPUTS,) if inputs else ()), *((caps.EVALUATE,) if evaluate else ()))
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
        if resp.HasField("result"):
            return BuildResult.from_pb(resp.result)
        return BuildResult(ref=Ref(resp.ref))  # a daemon without solve.inlinereturn

    def read_file(self, ref: Ref, path: str, offset: int = 0, length: int = 0) -> bytes:
        """Bytes of ``path`` in a solved result (all of it unless ``length``)."""
        self.require(caps.READ_FILE)
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
            self.require(caps.GATEWAY_RESULT, *((caps.MULTI_PLATFORM,) if result.is_multi_platform else ()))
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


def _details(e: grpc.RpcError) -> str:
    text = (e.details() if hasattr(e, "details") else "") or str(e)
    return text.splitlines()[0] if text else type(e).__name__
