"""The LLB vertices: immutable op nodes and how each becomes an ``ops_pb2.Op``.

A node knows its parameters and the :class:`Output`\\ s it reads; its bytes
depend on its inputs' digests, so they are made by :mod:`marshal` in
dependency order (and memoised on the node). Nodes compare by identity:
equal sub-graphs are merged by digest when marshalled.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Iterable

from ..proto import ops_pb2
from . import caps as C
from .fileaction import Copy, FileAction
from .mounts import BIND, CACHE, SECRET, SHARING, SSH, TMPFS, Mount
from .platform import Platform

CUSTOM_NAME = "llb.customname"
NETWORK = {"sandbox": ops_pb2.UNSET, "host": ops_pb2.HOST, "none": ops_pb2.NONE}
SECURITY = {"sandbox": ops_pb2.SANDBOX, "insecure": ops_pb2.INSECURE}
_MOUNT_TYPE = {BIND: ops_pb2.BIND, SECRET: ops_pb2.SECRET, SSH: ops_pb2.SSH,
               CACHE: ops_pb2.CACHE, TMPFS: ops_pb2.TMPFS}


@dataclass(frozen=True)
class OpMeta:
    """Per-op metadata (not part of the op's digest)."""

    name: str | None = None  # progress display name (llb.customname)
    ignore_cache: bool = False


@dataclass(frozen=True)
class Output:
    """Result ``index`` of op ``node``."""

    node: "Node"
    index: int = 0


InputOf = Callable[[Output], ops_pb2.Input]


class _Inputs:
    """An op's input list, deduplicated by (digest, index) like Go's client."""

    def __init__(self, input_of: InputOf) -> None:
        self._input_of = input_of
        self.items: list[ops_pb2.Input] = []
        self._index: dict[tuple[str, int], int] = {}

    def add(self, out: Output | None, dedupe: bool = True) -> int:
        if out is None:
            return -1
        inp = self._input_of(out)
        key = (inp.digest, inp.index)
        if dedupe and key in self._index:
            return self._index[key]
        self._index.setdefault(key, len(self.items))
        self.items.append(inp)
        return len(self.items) - 1


def _platform_pb(p: Platform) -> ops_pb2.Platform:
    return ops_pb2.Platform(Architecture=p.architecture, OS=p.os, Variant=p.variant)


@dataclass(frozen=True, eq=False, kw_only=True)
class Node:
    meta: OpMeta = OpMeta()
    _memo: dict = field(default_factory=dict, init=False, repr=False)

    def inputs(self) -> tuple[Output, ...]:
        """Every output this op reads, in input order (duplicates allowed)."""
        return ()

    def build(self, input_of: InputOf, local_unique: str | None) -> tuple[ops_pb2.Op, frozenset[str]]:
        raise NotImplementedError

    def with_meta(self, **changes) -> "Node":
        return replace(self, meta=replace(self.meta, **changes))

    @staticmethod
    def _new_op(inputs: Iterable[ops_pb2.Input] = ()) -> ops_pb2.Op:
        op = ops_pb2.Op()
        op.inputs.extend(inputs)
        op.constraints.SetInParent()  # Go always writes an empty WorkerConstraints
        return op


@dataclass(frozen=True, eq=False, kw_only=True)
class SourceNode(Node):
    identifier: str
    attrs: tuple[tuple[str, str], ...] = ()
    platform: Platform | None = None  # only docker-image sources carry one
    caps: frozenset[str] = frozenset()
    local: bool = False

    def build(self, input_of, local_unique):
        attrs = dict(self.attrs)
        caps = set(self.caps)
        if (self.local and local_unique is not None
                and "local.session" not in attrs and "local.unique" not in attrs):
            attrs["local.unique"] = local_unique
            caps.add(C.SOURCE_LOCAL_UNIQUE)
        op = self._new_op()
        op.source.identifier = self.identifier
        op.source.attrs.update(attrs)
        if self.platform is not None:
            op.platform.CopyFrom(_platform_pb(self.platform))
        return op, frozenset(caps)


@dataclass(frozen=True, eq=False, kw_only=True)
class ExecNode(Node):
    args: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str
    user: str = ""
    hostname: str = ""
    extra_hosts: tuple[tuple[str, str], ...] = ()
    valid_exit_codes: tuple[int, ...] | None = None
    network: str = "sandbox"
    security: str = "sandbox"
    platform: Platform
    mounts: tuple[Mount, ...]  # sorted by dest; sources are Output | None

    def inputs(self):
        return tuple(m.source for m in self.mounts if m.source is not None)

    def output_index(self, dest: str) -> int:
        """The result index of the writable bind mount at ``dest`` (root is 0)."""
        i = 0
        for m in self.mounts:
            if m.has_output:
                if m.dest == dest:
                    return i
                i += 1
        raise KeyError(dest)

    def build(self, input_of, local_unique):
        caps = {C.EXEC_META_BASE}
        inputs = _Inputs(input_of)
        op = self._new_op()
        ex = op.exec
        meta = ex.meta
        meta.args.extend(self.args)
        meta.env.extend(self.env)
        meta.cwd = self.cwd
        meta.user = self.user
        meta.hostname = self.hostname
        for host, ip in self.extra_hosts:
            meta.extraHosts.add(Host=host, IP=ip)
        meta.removeMountStubsRecursive = True
        if self.valid_exit_codes is not None:
            meta.validExitCodes.extend(self.valid_exit_codes)
            caps.add(C.EXEC_VALID_EXIT_CODE)
        ex.network = NETWORK[self.network]
        ex.security = SECURITY[self.security]
        if self.network != "sandbox":
            caps.add(C.EXEC_META_NETWORK)
        if self.security != "sandbox":
            caps.add(C.EXEC_META_SECURITY)

        out_index = 0
        for m in self.mounts:
            pm = ex.mounts.add()
            pm.dest = m.dest
            pm.mountType = _MOUNT_TYPE[m.kind]
            pm.input = -1 if m.kind in (SECRET, SSH) else inputs.add(m.source)
            if m.has_output:
                pm.output = out_index
                out_index += 1
            else:
                pm.output = -1
            pm.readonly = m.readonly
            pm.selector = m.selector
            if m.selector:
                caps.add(C.EXEC_MOUNT_SELECTOR)
            if m.kind == BIND:
                if m.source is not None:
                    caps.add(C.EXEC_MOUNT_BIND)
            elif m.kind == CACHE:
                pm.cacheOpt.ID = m.id
                pm.cacheOpt.sharing = SHARING[m.sharing]
                caps.update((C.EXEC_MOUNT_CACHE, C.EXEC_MOUNT_CACHE_SHARING))
            elif m.kind == TMPFS:
                pm.TmpfsOpt.SetInParent()
                pm.TmpfsOpt.size = m.size
                caps.add(C.EXEC_MOUNT_TMPFS)
                if m.size > 0:
                    caps.add(C.EXEC_MOUNT_TMPFS_SIZE)
            else:
                opt = pm.secretOpt if m.kind == SECRET else pm.SSHOpt
                opt.SetInParent()
                opt.ID, opt.uid, opt.gid, opt.mode, opt.optional = m.id, m.uid, m.gid, m.mode, m.optional
                caps.add(C.EXEC_MOUNT_SECRET if m.kind == SECRET else C.EXEC_MOUNT_SSH)
        op.inputs.extend(inputs.items)
        op.platform.CopyFrom(_platform_pb(self.platform))
        return op, frozenset(caps)


@dataclass(frozen=True, eq=False, kw_only=True)
class FileNode(Node):
    """One FileOp: ``actions`` applied in turn to ``base`` (action j reads
    the result of action j-1); ``sources[j]`` is action j's copy source."""

    base: Output | None
    actions: tuple[FileAction, ...]
    sources: tuple[Output | None, ...]

    def inputs(self):
        outs = [self.base] if self.base is not None else []
        outs.extend(s for s in self.sources if s is not None)
        return tuple(outs)

    def build(self, input_of, local_unique):
        caps = {C.FILE_BASE}
        inputs = _Inputs(input_of)
        base_index = inputs.add(self.base)
        secondary = [inputs.add(s) if isinstance(a, Copy) else -1
                     for a, s in zip(self.actions, self.sources)]
        n = len(inputs.items)
        op = self._new_op(inputs.items)
        op.file.SetInParent()
        last = len(self.actions) - 1
        for j, action in enumerate(self.actions):
            fa = op.file.actions.add()
            fa.input = base_index if j == 0 else n + j - 1
            fa.secondaryInput = secondary[j]
            fa.output = 0 if j == last else -1
            action.fill(fa, base_index)
            caps.update(action.caps)
        return op, frozenset(caps)


@dataclass(frozen=True, eq=False, kw_only=True)
class MergeNode(Node):
    layers: tuple[Output, ...]  # bottom to top

    def inputs(self):
        return self.layers

    def build(self, input_of, local_unique):
        inputs = _Inputs(input_of)
        op = self._new_op()
        op.merge.SetInParent()
        for out in self.layers:
            op.merge.inputs.add().input = inputs.add(out, dedupe=False)
        op.inputs.extend(inputs.items)
        return op, frozenset({C.MERGE_OP})


@dataclass(frozen=True, eq=False, kw_only=True)
class DiffNode(Node):
    lower: Output | None
    upper: Output | None

    def inputs(self):
        return tuple(o for o in (self.lower, self.upper) if o is not None)

    def build(self, input_of, local_unique):
        inputs = _Inputs(input_of)
        op = self._new_op()
        op.diff.lower.SetInParent()
        op.diff.lower.input = inputs.add(self.lower)
        op.diff.upper.SetInParent()
        op.diff.upper.input = inputs.add(self.upper)
        op.inputs.extend(inputs.items)
        return op, frozenset({C.DIFF_OP})
