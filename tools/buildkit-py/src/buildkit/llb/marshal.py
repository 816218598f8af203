"""Turning a graph of op nodes into a ``pb.Definition``.

The bytes are deterministic: ops are serialised with sorted map keys and
explicit empty messages, listed in a fixed dependency order (inputs before
the ops that read them), each distinct op once (by digest), and the terminal
op ``Op{inputs:[result]}`` last. A node's bytes are memoised on the node, so
re-marshalling a graph, or a graph that shares sub-graphs, is linear.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterator

from ..proto import ops_pb2
from . import caps as C
from .ops import CUSTOM_NAME, Node, Output


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _serialize(msg) -> bytes:
    return msg.SerializeToString(deterministic=True)


@dataclass(frozen=True)
class OpInfo:
    """One op's metadata entry (``Definition.metadata[digest]``)."""

    caps: frozenset[str]
    name: str | None = None
    ignore_cache: bool = False

    def merged(self, other: "OpInfo") -> "OpInfo":
        """Two nodes with the same digest: union caps, keep any name, OR ignore_cache."""
        return OpInfo(self.caps | other.caps, other.name or self.name,
                      self.ignore_cache or other.ignore_cache)

    def to_pb(self) -> ops_pb2.OpMetadata:
        md = ops_pb2.OpMetadata(ignore_cache=self.ignore_cache)
        if self.name:
            md.description[CUSTOM_NAME] = self.name
        for cap in self.caps:
            md.caps[cap] = True
        return md


@dataclass(frozen=True)
class _Built:
    digest: str
    data: bytes
    caps: frozenset[str]


@dataclass(frozen=True)
class Definition:
    """A marshalled LLB graph, ready for ``SolveRequest.Definition``."""

    defs: tuple[bytes, ...]  # marshalled ops, terminal op last
    metadata: tuple[tuple[str, OpInfo], ...]  # sorted by digest
    head: tuple[str, int] | None = None  # (digest, output index) the terminal op selects

    @property
    def digests(self) -> list[str]:
        """The digest of every entry of ``defs``, in the same order."""
        return [digest_of(d) for d in self.defs]

    @property
    def terminal_digest(self) -> str | None:
        """Digest of the terminal op (the last entry)."""
        return digest_of(self.defs[-1]) if self.defs else None

    @property
    def head_digest(self) -> str | None:
        """Digest of the op whose result the Definition selects."""
        return self.head[0] if self.head is not None else None

    @property
    def caps(self) -> frozenset[str]:
        return frozenset().union(*(info.caps for _, info in self.metadata))

    @property
    def is_empty(self) -> bool:
        """True for scratch: there is nothing to solve."""
        return not self.defs

    def ops(self) -> list[ops_pb2.Op]:
        """The ``defs`` decoded (for inspection and tests)."""
        return [ops_pb2.Op.FromString(d) for d in self.defs]

    def op(self, digest: str) -> ops_pb2.Op:
        for d in self.defs:
            if digest_of(d) == digest:
                return ops_pb2.Op.FromString(d)
        raise KeyError(digest)

    def to_pb(self) -> ops_pb2.Definition:
        pb = ops_pb2.Definition()
        getattr(pb, "def").extend(self.defs)
        for dgst, info in self.metadata:
            pb.metadata[dgst].CopyFrom(info.to_pb())
        return pb

    def serialize(self) -> bytes:
        return _serialize(self.to_pb())


def _post_order(root: Node) -> list[Node]:
    """Nodes reachable from ``root``, each once, inputs first (iterative DFS)."""
    order: list[Node] = []
    seen: set[int] = {id(root)}
    stack: list[tuple[Node, Iterator[Output]]] = [(root, iter(root.inputs()))]
    while stack:
        node, it = stack[-1]
        for out in it:
            child = out.node
            if id(child) not in seen:
                seen.add(id(child))
                stack.append((child, iter(child.inputs())))
                break
        else:
            stack.pop()
            order.append(node)
    return order


_HAS_LOCAL = object()  # memo key: does this node's sub-graph hold a local source?
_KEEP_UNIQUE = 4  # memo entries kept per node for distinct local_unique values


def _key(node: Node, local_unique: str | None) -> str | None:
    """Only sub-graphs with a local source depend on ``local_unique``."""
    return local_unique if node._memo[_HAS_LOCAL] else None


def build_nodes(root: Node, local_unique: str | None = None) -> list[tuple[Node, _Built]]:
    """Every node under ``root`` with its bytes, inputs first.

    Results are memoised on the nodes; this call reads each memo once, so a
    concurrent marshal evicting entries cannot disturb it.
    """
    order = _post_order(root)
    done: dict[int, _Built] = {}

    def input_of(out: Output) -> ops_pb2.Input:
        return ops_pb2.Input(digest=done[id(out.node)].digest, index=out.index)

    result = []
    for node in order:
        memo = node._memo
        if _HAS_LOCAL not in memo:
            memo[_HAS_LOCAL] = bool(getattr(node, "local", False)) or any(
                o.node._memo[_HAS_LOCAL] for o in node.inputs())
        key = _key(node, local_unique)
        b = memo.get(key)
        if b is None:
            op, caps = node.build(input_of, local_unique)
            data = _serialize(op)
            b = _Built(digest_of(data), data, caps)
            if key is not None:
                stale = [k for k in list(memo) if isinstance(k, str)]
                for k in stale[: max(0, len(stale) - _KEEP_UNIQUE + 1)]:
                    memo.pop(k, None)
            memo[key] = b
        done[id(node)] = b
        result.append((node, b))
    return result


def node_digest(node: Node, local_unique: str | None = None) -> str:
    return build_nodes(node, local_unique)[-1][1].digest


def marshal(output: Output | None, local_unique: str | None = None) -> Definition:
    """The Definition whose result is ``output`` (``None``: scratch, empty)."""
    if output is None:
        return Definition(defs=(), metadata=())
    order = build_nodes(output.node, local_unique)
    defs: list[bytes] = []
    infos: dict[str, OpInfo] = {}
    for node, b in order:
        info = OpInfo(b.caps, node.meta.name, node.meta.ignore_cache)
        if b.digest in infos:
            infos[b.digest] = infos[b.digest].merged(info)
            continue
        infos[b.digest] = info
        defs.append(b.data)

    head = (order[-1][1].digest, output.index)
    terminal = ops_pb2.Op()
    terminal.inputs.add(digest=head[0], index=head[1])
    data = _serialize(terminal)
    term_caps = {C.CONSTRAINTS, C.PLATFORM}
    if any(i.name for i in infos.values()):
        term_caps.add(C.META_DESCRIPTION)
    if any(i.ignore_cache for i in infos.values()):
        term_caps.add(C.META_IGNORE_CACHE)
    term_info = OpInfo(frozenset(term_caps))
    tdigest = digest_of(data)
    infos[tdigest] = infos[tdigest].merged(term_info) if tdigest in infos else term_info
    defs.append(data)
    return Definition(defs=tuple(defs), metadata=tuple(sorted(infos.items())), head=head)
