"""The BuildKit client: connect, inspect the daemon, solve, and build through the gateway.

::

    from buildkit import Client, SolveRequest, exporters, llb

    with Client.open("docker://") as bk:
        st = llb.image("alpine:3.20").run("echo hi > /hi").root()
        result = bk.solve(SolveRequest(
            definition=st,
            exports=(exporters.load_into_docker("demo:latest", st.image_config()),),
        ), on_event=print)

Three kinds of solve share one machinery (:meth:`Client.solve`,
:meth:`Client.build`): a solve attaches a session (file sync, file send,
auth, secrets, SSH), runs ``Control.Solve`` with ``Control.Status``
alongside, turns the status stream into :mod:`buildkit.progress` events, and
returns the exporter response.

* **LLB**: ``SolveRequest(definition=…)``;
* **a frontend**: ``SolveRequest(frontend="dockerfile.v0", frontend_attrs=…)``
  with the local dirs it reads (``context``, ``dockerfile``);
  :func:`buildkit.dockerfile.solve_request` sets these up as buildx does;
* **a gateway build**: :meth:`Client.build` calls your function with a
  :class:`~buildkit.gateway.Gateway` (resolve images, sub-solves, read
  files) and exports the :class:`~buildkit.gateway.BuildResult` it returns,
  e.g. one ref per platform for a multi-platform image.

Attestations (``attest:provenance``, ``attest:sbom``; see
:mod:`buildkit.attestations`) go in ``frontend_attrs`` of any of them.
Secrets (:mod:`buildkit.secrets`) and SSH agents (:mod:`buildkit.sshforward`)
are served on the session. A request the daemon is too old for fails before
it is sent, with an :class:`~buildkit.errors.Unsupported` naming the feature
and the engine (:mod:`buildkit.capabilities`). Ctrl-C cancels the solve on
the daemon and closes the session before re-raising.
"""

from __future__ import annotations

import json
import queue
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import grpc

from . import capabilities, progress
from .auth import AuthService
from .capabilities import Feature
from .errors import BuildKitError, DaemonGone, SolveError, Unsupported
from .exporters import STREAMED, Export
from .filesend import FileSendServicer
from .filesync import FileSyncServicer, LocalDir
from .gateway import BuildResult, Gateway, ResolvedImage, definition_pb
from .llb.platform import Platform
from .proto import control_pb2, control_pb2_grpc, ops_pb2
from .secrets import SecretSource, SecretsService
from .session import Session, new_session_id
from .sshforward import SSHAgent, SSHForwardService
from .tls import TLSConfig
from .transport import Address, Connection, connect

EventSink = Callable[[progress.Event], None]


@dataclass(frozen=True)
class CacheEntry:
    """A cache import or export backend: ``registry``, ``local``, ``inline``…"""

    type: str
    attrs: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SolveRequest:
    """One solve. Give ``definition`` for LLB, or ``frontend`` (with
    ``frontend_attrs``) to run a frontend such as ``dockerfile.v0``; leave
    both unset for :meth:`Client.build`."""

    # An llb.State (marshalled per solve, with the session id making local
    # sources unique to it, as Go's client does), an llb.Definition, or the pb.
    definition: object = None
    exports: Sequence[Export] = ()
    # Directories the session serves by name: llb.local(name), or the
    # Dockerfile frontend's "context" and "dockerfile".
    local_dirs: Mapping[str, LocalDir] = field(default_factory=dict)
    # Secrets by id (buildkit.secrets.parse_secret_specs makes this from
    # buildx's --secret syntax); each is checked when the solve starts.
    secrets: Mapping[str, SecretSource] = field(default_factory=dict)
    # SSH agents by id for ssh mounts (buildkit.sshforward.parse_ssh_specs
    # from buildx's --ssh syntax, e.g. ["default"] for $SSH_AUTH_SOCK).
    ssh: Mapping[str, SSHAgent] = field(default_factory=dict)
    cache_imports: Sequence[CacheEntry] = ()
    cache_exports: Sequence[CacheEntry] = ()
    entitlements: Sequence[str] = ()
    shared_key: str = ""  # stable per workspace: lets the daemon reuse synced files
    no_cache: bool = False  # run every step again, ignoring BuildKit's cache
    frontend: str = ""  # e.g. "dockerfile.v0"
    # Frontend options (``filename``, ``target``, ``build-arg:K``, ``platform``…)
    # and, on any solve, attestations (``attest:provenance`` = ``mode=max``).
    frontend_attrs: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StepSummary:
    digest: str
    name: str
    cached: bool
    duration: float
    source: bool = False  # image/local/git/http sources are resolved, never "cached"


@dataclass(frozen=True)
class SolveResult:
    exporter_response: Mapping[str, str]
    steps: tuple[StepSummary, ...]
    files: tuple[Path, ...] = ()

    @property
    def manifest_digest(self) -> str | None:
        return self.exporter_response.get("containerimage.digest")

    @property
    def config_digest(self) -> str | None:
        return self.exporter_response.get("containerimage.config.digest")

    @property
    def all_cached(self) -> bool:
        """Every build step (exec, file, merge, diff) was answered from cache.

        Sources are resolved on every solve (a local source re-syncs, sending
        only what changed), so BuildKit never reports them as cached.
        """
        return all(s.cached for s in self.steps if not s.source)


# Caps an older daemon (BuildKit 0.8 in Docker 20.10) or a default engine
# build may lack: a definition using one is checked against the daemon's caps
# before the solve, for a clear message instead of a failure deep in it.
_OPTIONAL_CAPS = frozenset({
    "mergeop", "diffop", "file.symlink.create", "file.copy.includeexcludepatterns",
    "file.copy.alwaysreplaceexistingdestpaths", "file.rm.wildcard", "exec.mount.tmpfs.size",
    "exec.validexitcode", "source.local.differ",
})

_EXIT_CODE = re.compile(r"exit code: (\d+)")
_PROCESS = re.compile(r'process "(.*)" did not complete successfully')
_SOLVED = object()  # queued when the Solve call returns
_STATUS_TAIL = 5.0  # seconds the status stream may trail the solve
_BRIDGE_WAIT = 10.0  # seconds a new build's gateway may take to answer


def _local_caches(imports: Sequence[CacheEntry], exports: Sequence[CacheEntry]):
    """Resolve ``local`` cache entries (directories in OCI layout on this machine).

    BuildKit reads and writes them through a content store the session serves,
    named ``local:<dir>``; the importer needs the manifest digest, which the
    directory's ``index.json`` records under a tag (default ``latest``).
    Returns the entries to send, the stores to serve and the export tags.
    """
    from .content import read_tag, store_id

    stores: dict[str, Path] = {}
    tags: dict[Path, str] = {}
    out_imports, out_exports = [], []
    for entry in imports:
        if entry.type != "local":
            out_imports.append(entry)
            continue
        attrs = dict(entry.attrs)
        src = attrs.get("src", "")
        digest = read_tag(Path(src), attrs.pop("tag", "latest")) if src else None
        if digest is None:
            continue  # nothing exported there yet
        attrs["digest"] = digest
        stores[store_id(src)] = Path(src)
        out_imports.append(CacheEntry("local", attrs))
    for entry in exports:
        if entry.type != "local":
            out_exports.append(entry)
            continue
        attrs = dict(entry.attrs)
        dest = attrs.get("dest", "")
        if not dest:
            raise BuildKitError("a local cache export needs dest (a directory)")
        Path(dest).mkdir(parents=True, exist_ok=True)
        tags[Path(dest)] = attrs.pop("tag", "latest")
        stores[store_id(dest)] = Path(dest)
        out_exports.append(CacheEntry("local", attrs))
    return out_imports, out_exports, stores, tags


def _ignoring_cache(pb: ops_pb2.Definition) -> ops_pb2.Definition:
    """A copy of ``pb`` whose every op ignores the cache (metadata only: digests stay)."""
    import hashlib

    out = ops_pb2.Definition()
    out.CopyFrom(pb)
    for raw in getattr(out, "def"):
        md = out.metadata["sha256:" + hashlib.sha256(raw).hexdigest()]
        md.ignore_cache = True
        md.caps["meta.ignorecache"] = True
    return out


def _op_kinds(pb: ops_pb2.Definition) -> dict[str, str]:
    """digest -> op kind ("exec", "source", "file"…) of every op in ``pb``."""
    import hashlib

    kinds = {}
    for raw in getattr(pb, "def"):
        op = ops_pb2.Op.FromString(raw)
        kinds["sha256:" + hashlib.sha256(raw).hexdigest()] = op.WhichOneof("op") or "terminal"
    return kinds


BuildFunction = Callable[[Gateway], "BuildResult | None"]


class Client:
    """A connection to one BuildKit daemon."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._control = control_pb2_grpc.ControlStub(connection.channel)
        self._caps: frozenset[str] | None = None
        self._gateway_caps: frozenset[str] | None = None
        self._exporters: frozenset[str] | None = None
        self._version: str | None = None
        self._engine: str | None = None
        # Carry sessions over the Control.Session gRPC stream even on a Docker
        # engine (which otherwise gets the /session upgrade), as with buildkitd.
        self.session_over_grpc = False

    @classmethod
    def open(cls, address: Address | str = "docker://", timeout: float | None = None,
             tls: TLSConfig | None = None) -> "Client":
        """Connect to ``address`` (see :mod:`buildkit.transport`); ``tls`` for ``tcp://``."""
        if isinstance(address, str):
            from .transport import parse_address

            address = parse_address(address, tls=tls)
        return cls(connect(address) if timeout is None else connect(address, timeout))

    @property
    def address(self) -> Address:
        return self.connection.address

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ introspection

    def _ask(self, what: str, call):
        """``call()``, a Control RPC: a daemon that went away, or refused, is a
        :class:`BuildKitError` naming ``what``, never a bare ``grpc.RpcError``."""
        try:
            return call()
        except grpc.RpcError as e:
            details = (e.details() if hasattr(e, "details") else "") or e.code().name
            if e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
                raise DaemonGone(f"BuildKit at {self.address} went away ({what}): {details}") from None
            raise BuildKitError(f"BuildKit at {self.address} refused {what}: {details}") from None

    def workers(self) -> list:
        return self._ask("listing its workers", lambda: list(
            self._control.ListWorkers(control_pb2.ListWorkersRequest(), timeout=10).record))

    def platforms(self) -> list[Platform]:
        """Platforms the daemon's workers can build for (emulated ones included)."""
        out: dict[str, Platform] = {}
        for w in self.workers():
            for p in w.platforms:
                plat = Platform(p.OS, p.Architecture, p.Variant).normalized()
                out.setdefault(str(plat), plat)
        return list(out.values())

    def version(self) -> str:
        """The daemon's own BuildKit version (``unknown`` where it does not say)."""
        if self._version is None:
            try:
                self._version = self._control.Info(control_pb2.InfoRequest(), timeout=10).buildkitVersion.version
            except grpc.RpcError:
                self._version = "unknown"  # BuildKit 0.8 has no Info
        return self._version

    def engine(self) -> str:
        """The daemon as messages name it: ``Docker engine 26.1.5`` (behind
        docker://, whose embedded BuildKit often has no version of its own),
        or ``BuildKit v0.13.2``."""
        if self._engine is None:
            from .engineinfo import describe

            self._engine = describe(self.version(), self.address.docker if self.address.scheme == "docker" else None)
        return self._engine

    def disk_usage(self, filters: Sequence[str] = ()) -> list:
        """BuildKit's cache records (``UsageRecord``), optionally filtered."""
        req = control_pb2.DiskUsageRequest(filter=list(filters))
        return self._ask("its disk usage", lambda: list(self._control.DiskUsage(req, timeout=60).record))

    def prune(self, filters: Sequence[str], all_records: bool = True) -> list:
        """Remove the cache records matching ``filters`` (containerd filter syntax,
        e.g. ``id==…``); returns what was removed.

        The engine's cache is shared: never call this without filters that
        select only records you made.
        """
        if not filters:
            raise ValueError("prune needs filters: the engine's build cache is shared")
        req = control_pb2.PruneRequest(filter=list(filters), all=all_records)
        return self._ask("a prune", lambda: list(self._control.Prune(req, timeout=120)))

    def caps(self) -> frozenset[str]:
        """The daemon's enabled LLB capabilities, read through the gateway's Ping."""
        if self._caps is None:
            # A probe: nothing is shown or exported, so no status stream either.
            self._run(SolveRequest(), None, "buildkit-caps-" + new_session_id(), lambda gw: None, status=False)
        return self._caps

    def gateway_caps(self) -> frozenset[str]:
        """The daemon's enabled gateway (frontend API) capabilities."""
        if self._gateway_caps is None:
            self.caps()
        return self._gateway_caps

    def require(self, *features: Feature) -> None:
        """Raise :class:`Unsupported` for the first of ``features``
        (:mod:`buildkit.capabilities`) this daemon lacks."""
        for feature in features:
            missing = feature.missing(self.caps(), self.gateway_caps())
            if missing:
                raise Unsupported(feature.explain(missing), self.address, self.engine())

    def resolve_image(self, ref: str, platform: str | Platform | None = None, mode: str = "default"
                      ) -> "ResolvedImage":
        """Resolve one image through BuildKit: its digest and config, as a
        build would see them. Raises :class:`LookupError` when the engine
        and its registries do not have it."""
        (found,) = self.resolve_images([(ref, platform)], mode)
        if isinstance(found, LookupError):
            raise found
        return found

    def resolve_images(self, refs: Sequence[tuple[str, str | Platform | None]], mode: str = "default"
                       ) -> list["ResolvedImage | LookupError"]:
        """Resolve each ``(ref, platform)`` through BuildKit, side by side in one
        gateway session; each answer is a :class:`~buildkit.gateway.ResolvedImage`,
        or the :class:`LookupError` that explains why it failed."""
        out: list = []

        def resolve(gw: Gateway, ref: str, platform) -> "ResolvedImage | LookupError":
            try:
                return gw.resolve_image_config(ref, platform, mode)
            except LookupError as e:
                return e

        def resolve_all(gw: Gateway) -> None:
            if len(refs) == 1:
                out.append(resolve(gw, *refs[0]))
                return
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=min(8, len(refs)), thread_name_prefix="resolve") as pool:
                out.extend(pool.map(lambda item: resolve(gw, *item), refs))

        # Nothing is exported or shown: the progress stream is not asked for.
        self._run(SolveRequest(), None, "buildkit-resolve-" + new_session_id(), resolve_all, status=False)
        return out

    def exporters(self) -> frozenset[str]:
        """Exporter types this daemon offers (worker labels tell the image store)."""
        if self._exporters is None:
            self._exporters = self._probe_exporters()
        return self._exporters

    def _probe_exporters(self) -> frozenset[str]:
        labels = {}
        for w in self.workers():
            labels.update(w.Labels)
        if labels.get("org.mobyproject.buildkit.worker.moby.host-gateway-ip") and \
                labels.get("org.mobyproject.buildkit.worker.executor") != "containerd":
            return frozenset({"moby", "local", "tar"})  # classic Docker image store
        return frozenset({"moby", "image", "oci", "docker", "local", "tar"})

    def check_exports(self, exports: Sequence[Export]) -> None:
        available = self.exporters()
        for e in exports:
            if e.type not in available:
                raise Unsupported(
                    f"the {e.type!r} exporter (it offers {', '.join(sorted(available))})", self.address,
                    self.engine(), hint="on a Docker engine, enable the containerd image store "
                    '({"features":{"containerd-snapshotter":true}} in /etc/docker/daemon.json)')

    # ------------------------------------------------------------------ solve

    def solve(self, request: SolveRequest, on_event: EventSink | None = None,
              ref: str | None = None) -> SolveResult:
        """Solve LLB or run a frontend, export the result, and return the exporter response."""
        if request.definition is None and not request.frontend:
            raise BuildKitError("a solve needs a definition or a frontend; use Client.build for a gateway build")
        return self._run(request, on_event, ref or "buildkit-" + new_session_id(), None)

    def build(self, function: BuildFunction, request: SolveRequest = SolveRequest(),
              on_event: EventSink | None = None, ref: str | None = None) -> SolveResult:
        """A gateway build: ``function(gateway)`` makes the result, which is exported.

        ``function`` may resolve images, solve definitions (one per platform for
        a multi-platform image) and read files through the
        :class:`~buildkit.gateway.Gateway`, and returns a
        :class:`~buildkit.gateway.BuildResult` (or None for nothing to export);
        :func:`buildkit.multiplatform.platform_build` is such a function for
        one State per platform. An exception it raises ends the build and is
        re-raised here.
        """
        if request.definition is not None or request.frontend:
            raise BuildKitError("Client.build makes its result through the gateway: leave definition and frontend unset")
        return self._run(request, on_event, ref or "buildkit-" + new_session_id(), function)

    def _services(self, request: SolveRequest, streamed: Mapping[int, Export], stores) -> list:
        services = [FileSyncServicer(request.local_dirs), AuthService(), SecretsService(request.secrets)]
        if request.ssh:  # else the daemon hears "unimplemented": "no SSH key forwarded from the client"
            services.append(SSHForwardService(request.ssh))
        if streamed:
            services.append(FileSendServicer({i: (e.type, e.output) for i, e in streamed.items()}))
        if stores:
            from .content import ContentStoreService

            services.append(ContentStoreService(stores))
        return services

    def _run(self, request: SolveRequest, on_event: EventSink | None, ref: str,
             function: BuildFunction | None, status: bool = True) -> SolveResult:
        if request.exports:
            self.check_exports(request.exports)
        self.require(*_features(request))
        streamed = {i: e for i, e in enumerate(request.exports) if e.type in STREAMED}
        cache_imports, cache_exports, stores, tags = _local_caches(request.cache_imports, request.cache_exports)
        tracker = progress.StatusTracker()
        events: "queue.Queue[object]" = queue.Queue()

        with Session(self.connection, self._services(request, streamed, stores), shared_key=request.shared_key,
                     grpc_stream=self.session_over_grpc) as session:
            pb = None
            if request.definition is not None:
                pb = definition_pb(request.definition, session.id)
                self._check_caps(pb)
                if request.no_cache:
                    pb = _ignoring_cache(pb)
            solve_req = control_pb2.SolveRequest(Ref=ref, Session=session.id, Frontend=request.frontend,
                                                 Entitlements=list(request.entitlements))
            if pb is not None:
                solve_req.Definition.CopyFrom(pb)
            for key, value in request.frontend_attrs.items():
                solve_req.FrontendAttrs[key] = value
            if request.no_cache and pb is None:
                solve_req.FrontendAttrs.setdefault("no-cache", "")
            for e in request.exports:
                solve_req.Exporters.add(Type=e.type, Attrs=dict(e.attrs))
            if request.exports:  # daemons before 0.13 read only the first exporter, here
                solve_req.ExporterDeprecated = request.exports[0].type
                solve_req.ExporterAttrsDeprecated.update(dict(request.exports[0].attrs))
            for c in cache_imports:
                solve_req.Cache.Imports.add(Type=c.type, Attrs=dict(c.attrs))
            for c in cache_exports:
                solve_req.Cache.Exports.add(Type=c.type, Attrs=dict(c.attrs))

            future = self._control.Solve.future(solve_req)
            status_call = self._control.Status(control_pb2.StatusRequest(Ref=ref)) if status else _NoStatus()
            # Both the status stream and the solve report into one queue, so
            # the wait ends the moment both are over: no polling interval is
            # added to every build.
            future.add_done_callback(lambda _f: events.put(_SOLVED))

            def read_status() -> None:
                try:
                    for resp in status_call:
                        events.put(resp)
                except grpc.RpcError:
                    pass
                finally:
                    events.put(None)

            threading.Thread(target=read_status, daemon=True, name="status").start()
            gateway_error: list[BaseException] = []
            if function is not None:
                threading.Thread(target=self._drive_gateway, args=(function, ref, session.id, future, gateway_error),
                                 daemon=True, name="gateway").start()

            def pump() -> None:
                """Hand status to the tracker until the stream has ended and
                the solve has returned; the stream's tail gets _STATUS_TAIL
                seconds after the solve."""
                stream_open, solved_at = True, None
                while stream_open or solved_at is None:
                    if solved_at is not None and time.monotonic() - solved_at > _STATUS_TAIL:
                        return
                    try:
                        item = events.get(timeout=0.25)  # a timeout keeps Ctrl-C responsive
                    except queue.Empty:
                        continue
                    if item is _SOLVED:
                        solved_at = time.monotonic()
                    elif item is None:
                        stream_open = False
                    else:
                        for ev in tracker.feed(item):
                            if on_event:
                                on_event(ev)

            try:
                pump()
                for ev in tracker.flush_logs():
                    if on_event:
                        on_event(ev)
                try:
                    response = future.result()
                except (grpc.RpcError, grpc.FutureCancelledError) as err:
                    # The gateway thread cancels the solve when the daemon's
                    # gateway does not answer: its error is the one to raise.
                    if gateway_error:
                        raise _with_step(gateway_error[0], tracker) from None
                    if isinstance(err, grpc.FutureCancelledError):
                        raise BuildKitError(f"the solve on BuildKit at {self.address} was cancelled") from None
                    raise self._solve_error(err, tracker) from None
                if gateway_error:
                    raise _with_step(gateway_error[0], tracker)
            except KeyboardInterrupt:
                future.cancel()  # cancels the job on the daemon
                status_call.cancel()
                raise
            finally:
                status_call.cancel()

        manifest = response.ExporterResponse.get("cache.manifest")
        if tags and manifest:
            from .content import write_tag

            for directory, tag in tags.items():
                write_tag(directory, tag, json.loads(manifest))
        kinds = _op_kinds(pb) if pb is not None else {}
        steps = tuple(StepSummary(v.digest, v.name, v.cached, v.duration, kinds.get(v.digest) == "source")
                      for v in tracker.steps(set(kinds) if kinds else None))
        files = tuple(e.output for e in streamed.values() if e.output is not None)
        return SolveResult(dict(response.ExporterResponse), steps, files)

    def _drive_gateway(self, function: BuildFunction, ref: str, session_id: str, future,
                       errors: list[BaseException]) -> None:
        """Wait for the build's bridge, run ``function`` on it, and Return its result.
        Whatever goes wrong is the solving thread's to raise (the client closed
        under it, too), never a traceback of this thread."""
        try:
            self._drive_gateway_unguarded(function, ref, session_id, future, errors)
        except BaseException as e:  # noqa: BLE001 - re-raised by the solving thread
            errors.append(e if isinstance(e, BuildKitError) else
                          BuildKitError(f"the build on BuildKit at {self.address} was cut short: {e}"))
            future.cancel()

    def _drive_gateway_unguarded(self, function: BuildFunction, ref: str, session_id: str, future,
                                 errors: list[BaseException]) -> None:
        gw = Gateway(self.connection.channel, ref, session_id, self.address, self.engine)
        deadline = time.monotonic() + _BRIDGE_WAIT
        while True:
            try:
                gw._ping(timeout=5)
                break
            except grpc.RpcError as e:
                if future.done():
                    return  # the solve already failed: its error is reported
                if e.code() == grpc.StatusCode.UNIMPLEMENTED or time.monotonic() > deadline:
                    errors.append(Unsupported(f"client-driven builds (its gateway answered {e.code().name})",
                                              self.address, self.engine()))
                    future.cancel()
                    return
                time.sleep(0.02)
        if self._caps is None:  # read by the ping: costs nothing more
            self._caps, self._gateway_caps = gw.caps(), gw.frontend_caps()
        try:
            result = function(gw)
        except BaseException as e:  # noqa: BLE001 - re-raised by the solving thread
            errors.append(e)
            try:
                gw._return(None, e)
            except grpc.RpcError:
                future.cancel()
            return
        try:
            gw._return(result)
        except grpc.RpcError as e:
            errors.append(BuildKitError(f"BuildKit at {self.address} refused the build result: {e.details()}"))
        except BuildKitError as e:  # a malformed result: end the build with the error
            errors.append(e)
            try:
                gw._return(None, e)
            except grpc.RpcError:
                future.cancel()

    def _check_caps(self, pb: ops_pb2.Definition) -> None:
        from .llb import check_caps, describe_missing, required_caps

        if not required_caps(pb) & _OPTIONAL_CAPS:
            return  # every daemon has these: no need to ask
        missing = check_caps(pb, self.caps())
        if missing:
            raise Unsupported(f"the LLB cap{'s' if len(missing) > 1 else ''} {describe_missing(missing)}",
                              self.address, self.engine(), hint="upgrade the engine or avoid these features")

    def _solve_error(self, err: grpc.RpcError, tracker: progress.StatusTracker) -> BuildKitError:
        details = (err.details() if hasattr(err, "details") else str(err)) or str(err)
        if err.code() == grpc.StatusCode.UNAVAILABLE and tracker.failed() is None:
            return DaemonGone(f"BuildKit at {self.address} went away during the solve: {details}")
        return _step_error(details, tracker, "solve")


class _NoStatus:
    """Stands in for the status stream of a solve nobody watches: it has ended."""

    def __iter__(self):
        return iter(())

    def cancel(self) -> None:
        pass


def _features(request: SolveRequest) -> list[Feature]:
    """The optional features a solve request uses (checked against the daemon's caps)."""
    out = []
    if any(k.startswith("attest:") or k.startswith("build-arg:BUILDKIT_ATTEST_") for k in request.frontend_attrs):
        out.append(capabilities.ATTESTATIONS)
    if len(request.exports) > 1:
        out.append(capabilities.MULTIPLE_EXPORTERS)
    return out


def _step_error(details: str, tracker: progress.StatusTracker, step: str) -> SolveError:
    """A :class:`SolveError` for ``details``, with the failed step's command,
    exit code and log tail when the progress stream showed which step failed."""
    failed = tracker.failed()
    text = failed.error if failed else details
    m = _EXIT_CODE.search(text) or _EXIT_CODE.search(details)
    cmd = _PROCESS.search(text) or _PROCESS.search(details)
    return SolveError(
        step=(failed.name if failed else step),
        error=details.splitlines()[0] if details else text,
        command=cmd.group(1) if cmd else None,
        step_exit_code=int(m.group(1)) if m else None,
        log_tail=list(failed.tail) if failed else [],
    )


def _with_step(error: BaseException, tracker: progress.StatusTracker) -> BaseException:
    """A gateway sub-solve's :class:`SolveError` knows only the daemon's
    message: give it the failed step from the progress stream."""
    if isinstance(error, SolveError) and not error.log_tail and tracker.failed() is not None:
        return _step_error(error.error, tracker, error.step)
    return error
