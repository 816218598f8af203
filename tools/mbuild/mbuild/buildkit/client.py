"""The BuildKit client: connect, inspect the daemon, and solve LLB.

::

    with Client.open("docker://") as bk:
        result = bk.solve(SolveRequest(
            definition=state.marshal(),
            exports=(exporters.load_into_docker("demo:latest", state.image_config()),),
            local_dirs={"context": LocalDir(Path("."))},
        ), on_event=print)

A solve attaches a session (file sync, file send, auth, secrets), runs
``Control.Solve`` with ``Control.Status`` alongside, turns the status stream
into :mod:`progress` events, and returns the exporter response. Ctrl-C
cancels the solve on the daemon and closes the session before re-raising.
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

from ..errors import BuildFailure
from . import progress
from .auth import AuthService
from .exporters import STREAMED, Export
from .filesend import FileSendServicer
from .filesync import FileSyncServicer, LocalDir
from .proto import control_pb2, control_pb2_grpc, gateway_pb2, gateway_pb2_grpc, ops_pb2
from .secrets import SecretSource, SecretsService
from .session import Session, new_session_id
from .transport import Address, Connection, connect

EventSink = Callable[[progress.Event], None]


@dataclass(frozen=True)
class CacheEntry:
    """A cache import or export backend: ``registry``, ``local``, ``inline``…"""

    type: str
    attrs: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SolveRequest:
    # An llb.State (marshalled per solve, with the session id making local
    # sources unique to it, as Go's client does), an llb.Definition, or the pb.
    definition: object
    exports: Sequence[Export] = ()
    local_dirs: Mapping[str, LocalDir] = field(default_factory=dict)
    secrets: Mapping[str, SecretSource] = field(default_factory=dict)
    cache_imports: Sequence[CacheEntry] = ()
    cache_exports: Sequence[CacheEntry] = ()
    entitlements: Sequence[str] = ()
    shared_key: str = ""  # stable per workspace: lets the daemon reuse synced files
    no_cache: bool = False  # run every step again, ignoring BuildKit's cache


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


class SolveError(BuildFailure):
    """A step failed: carries the step, its command, exit code and log tail."""

    def __init__(self, step: str, error: str, command: str | None, step_exit_code: int | None,
                 log_tail: Sequence[str]) -> None:
        self.step = step
        self.error = error
        self.command = command
        self.step_exit_code = step_exit_code  # the command's; exit_code is mbuild's own (1)
        self.log_tail = list(log_tail)
        head = f"step {step!r} failed"
        if step_exit_code is not None:
            head += f" with exit code {step_exit_code}"
        super().__init__(f"{head}: {error}")

    def report(self) -> str:
        """A multi-line report: the step, its command, exit code and the log tail."""
        lines = [str(self)]
        if self.command:
            lines.append(f"  command: {self.command}")
        if self.log_tail:
            lines.append("  last log lines:")
            lines.extend(f"    {line}" for line in self.log_tail)
        return "\n".join(lines)


_SOLVED = object()  # queued when the Solve call returns
_STATUS_TAIL = 5.0  # seconds the status stream may trail the solve


def _definition_pb(definition: object, unique: str) -> ops_pb2.Definition:
    if isinstance(definition, ops_pb2.Definition):
        return definition
    if hasattr(definition, "marshal"):  # an llb.State
        definition = definition.marshal(local_unique=unique)
    if getattr(definition, "is_empty", False):
        raise BuildFailure("nothing to build: the result is an empty filesystem (scratch)")
    return definition.to_pb()  # type: ignore[attr-defined]


def _local_caches(imports: Sequence[CacheEntry], exports: Sequence[CacheEntry]):
    """Resolve ``local`` cache entries (directories in OCI layout on this machine).

    BuildKit reads and writes them through a content store the session serves,
    named ``local:<dir>``; the importer needs the manifest digest, which the
    directory's ``index.json`` records under a tag (default ``latest``).
    Returns the entries to send, the stores to serve and the export tags.
    """
    from pathlib import Path

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
            raise BuildFailure("a local cache export needs dest (a directory)")
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


class Client:
    """A connection to one BuildKit daemon."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._control = control_pb2_grpc.ControlStub(connection.channel)
        self._caps: frozenset[str] | None = None
        self._exporters: frozenset[str] | None = None
        # Carry sessions over the Control.Session gRPC stream even on a Docker
        # engine (which otherwise gets the /session upgrade), as with buildkitd.
        self.session_over_grpc = False

    @classmethod
    def open(cls, address: Address | str = "docker://", timeout: float | None = None) -> "Client":
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

    def workers(self) -> list:
        return list(self._control.ListWorkers(control_pb2.ListWorkersRequest(), timeout=10).record)

    def version(self) -> str:
        try:
            return self._control.Info(control_pb2.InfoRequest(), timeout=10).buildkitVersion.version
        except grpc.RpcError:
            return "unknown"  # BuildKit 0.8 has no Info

    def disk_usage(self, filters: Sequence[str] = ()) -> list:
        """BuildKit's cache records (``UsageRecord``), optionally filtered."""
        req = control_pb2.DiskUsageRequest(filter=list(filters))
        return list(self._control.DiskUsage(req, timeout=60).record)

    def prune(self, filters: Sequence[str], all_records: bool = True) -> list:
        """Remove the cache records matching ``filters`` (containerd filter syntax,
        e.g. ``description~=mbuild-test``); returns what was removed.

        The engine's cache is shared: never call this without filters that
        select only records you made.
        """
        if not filters:
            raise ValueError("prune needs filters: the engine's build cache is shared")
        req = control_pb2.PruneRequest(filter=list(filters), all=all_records)
        return list(self._control.Prune(req, timeout=120))

    def caps(self) -> frozenset[str]:
        """The daemon's enabled LLB capabilities, read through LLBBridge.Ping.

        BuildKit registers a gateway bridge for a Solve without definition or
        frontend; Ping on it lists the caps, and Return ends that Solve.
        """
        if self._caps is not None:
            return self._caps
        ref = "mbuild-caps-" + new_session_id()
        bridge = gateway_pb2_grpc.LLBBridgeStub(self.connection.channel)
        md = (("buildkit-controlapi-buildid", ref),)
        with Session(self.connection) as session:
            fut = self._control.Solve.future(control_pb2.SolveRequest(Ref=ref, Session=session.id))
            try:
                pong = None
                deadline = time.monotonic() + 10
                while pong is None:
                    try:
                        pong = bridge.Ping(gateway_pb2.PingRequest(), metadata=md, timeout=5)
                    except grpc.RpcError:
                        if time.monotonic() > deadline or fut.done():
                            raise
                        time.sleep(0.05)
                bridge.Return(gateway_pb2.ReturnRequest(result=gateway_pb2.Result()), metadata=md, timeout=10)
                fut.result(timeout=10)
            finally:
                fut.cancel()
        self._caps = frozenset(c.ID for c in pong.LLBCaps if c.Enabled)
        return self._caps

    def exporters(self) -> frozenset[str]:
        """Exporter types this daemon offers (worker labels tell the image store)."""
        if self._exporters is not None:
            return self._exporters
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
                raise BuildFailure(
                    f"BuildKit at {self.address} has no {e.type!r} exporter (it offers "
                    f"{', '.join(sorted(available))}); enable the containerd image store "
                    '({"features":{"containerd-snapshotter":true}} in /etc/docker/daemon.json)'
                )

    # ------------------------------------------------------------------ solve

    def solve(self, request: SolveRequest, on_event: EventSink | None = None,
              ref: str | None = None) -> SolveResult:
        ref = ref or "mbuild-" + new_session_id()
        streamed = {i: e for i, e in enumerate(request.exports) if e.type in STREAMED}
        services = [FileSyncServicer(request.local_dirs), AuthService(), SecretsService(request.secrets)]
        if streamed:
            services.append(FileSendServicer({i: (e.type, e.output) for i, e in streamed.items()}))
        cache_imports, cache_exports, stores, tags = _local_caches(request.cache_imports, request.cache_exports)
        if stores:
            from .content import ContentStoreService

            services.append(ContentStoreService(stores))
        tracker = progress.StatusTracker()
        events: "queue.Queue[object]" = queue.Queue()

        with Session(self.connection, services, shared_key=request.shared_key,
                     grpc_stream=self.session_over_grpc) as session:
            pb = _definition_pb(request.definition, session.id)
            self._check_caps(pb)
            self.check_exports(request.exports)
            if request.no_cache:
                pb = _ignoring_cache(pb)
            solve_req = control_pb2.SolveRequest(Ref=ref, Definition=pb, Session=session.id,
                                                 Entitlements=list(request.entitlements))
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
            status_call = self._control.Status(control_pb2.StatusRequest(Ref=ref))
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
                except grpc.RpcError as err:
                    raise self._solve_error(err, tracker) from None
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
        kinds = _op_kinds(pb)
        steps = tuple(StepSummary(v.digest, v.name, v.cached, v.duration, kinds[v.digest] == "source")
                      for v in tracker.steps(set(kinds)))
        files = tuple(e.output for e in streamed.values() if e.output is not None)
        return SolveResult(dict(response.ExporterResponse), steps, files)

    def _check_caps(self, pb: ops_pb2.Definition) -> None:
        from .llb import check_caps, describe_missing, required_caps

        if not required_caps(pb) & _OPTIONAL_CAPS:
            return  # every daemon has these: no need to ask
        missing = check_caps(pb, self.caps())
        if missing:
            raise BuildFailure(f"BuildKit at {self.address}: {describe_missing(missing)}")

    def _solve_error(self, err: grpc.RpcError, tracker: progress.StatusTracker) -> BuildFailure:
        details = (err.details() if hasattr(err, "details") else str(err)) or str(err)
        failed = tracker.failed()
        if err.code() == grpc.StatusCode.UNAVAILABLE and failed is None:
            return BuildFailure(f"BuildKit at {self.address} went away during the solve: {details}")
        text = failed.error if failed else details
        m = _EXIT_CODE.search(text) or _EXIT_CODE.search(details)
        cmd = _PROCESS.search(text) or _PROCESS.search(details)
        return SolveError(
            step=(failed.name if failed else "solve"),
            error=details.splitlines()[0] if details else text,
            command=cmd.group(1) if cmd else None,
            step_exit_code=int(m.group(1)) if m else None,
            log_tail=list(failed.tail) if failed else [],
        )
