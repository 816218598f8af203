"""A typed model of BuildKit's progress stream.

``Control.Status`` sends deltas: vertices (steps) appearing, starting,
finishing; byte-count statuses; log chunks; warnings. :class:`StatusTracker`
merges them per vertex and turns them into the events below, which progress
displays (and tests) consume without knowing the wire. Log bytes are buffered
per vertex and stream, because the daemon may split a line across messages.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Union

LOG_TAIL_LINES = 30


@dataclass(frozen=True)
class VertexStarted:
    digest: str
    number: int
    name: str


@dataclass(frozen=True)
class VertexCompleted:
    digest: str
    number: int
    name: str
    cached: bool
    duration: float  # seconds; 0 for cached steps


@dataclass(frozen=True)
class VertexFailed:
    digest: str
    number: int
    name: str
    error: str
    duration: float


@dataclass(frozen=True)
class VertexLog:
    digest: str
    number: int
    stream: int  # 1 stdout, 2 stderr
    line: str


@dataclass(frozen=True)
class VertexProgress:
    digest: str
    number: int
    id: str
    name: str
    current: int
    total: int
    completed: bool


@dataclass(frozen=True)
class Warning_:
    digest: str
    number: int
    message: str


Event = Union[VertexStarted, VertexCompleted, VertexFailed, VertexLog, VertexProgress, Warning_]


@dataclass
class VertexState:
    digest: str
    number: int
    name: str = ""
    cached: bool = False
    started: float | None = None
    completed: float | None = None
    error: str = ""
    tail: deque = field(default_factory=lambda: deque(maxlen=LOG_TAIL_LINES))
    partial: dict = field(default_factory=dict)  # stream -> unfinished line bytes

    @property
    def done(self) -> bool:
        return self.completed is not None or self.cached

    @property
    def duration(self) -> float:
        if self.started is None or self.completed is None:
            return 0.0
        return max(0.0, self.completed - self.started)


def _ts(ts) -> float | None:
    if ts is None or (ts.seconds == 0 and ts.nanos == 0):
        return None
    return ts.seconds + ts.nanos / 1e9


class StatusTracker:
    """Merge ``StatusResponse`` deltas; ``feed`` returns the new events."""

    def __init__(self) -> None:
        self.vertices: dict[str, VertexState] = {}

    def _vertex(self, digest: str) -> VertexState:
        v = self.vertices.get(digest)
        if v is None:
            v = self.vertices[digest] = VertexState(digest, len(self.vertices) + 1)
        return v

    def feed(self, response) -> list[Event]:
        events: list[Event] = []
        for pv in response.vertexes:
            v = self._vertex(pv.digest)
            if pv.name:
                v.name = pv.name
            started = _ts(pv.started if pv.HasField("started") else None)
            completed = _ts(pv.completed if pv.HasField("completed") else None)
            if started is not None and v.started is None:
                v.started = started
                events.append(VertexStarted(v.digest, v.number, v.name))
            if pv.cached and not v.cached:
                v.cached = True
            if pv.error and not v.error:
                v.error = pv.error
                v.completed = completed or v.started
                events.append(VertexFailed(v.digest, v.number, v.name, v.error, v.duration))
            elif completed is not None and v.completed is None:
                v.completed = completed
                events.append(VertexCompleted(v.digest, v.number, v.name, v.cached, 0.0 if v.cached else v.duration))
        for st in response.statuses:
            v = self._vertex(st.vertex)
            events.append(VertexProgress(v.digest, v.number, st.ID, st.name or st.ID, st.current,
                                         st.total, st.HasField("completed")))
        for lg in response.logs:
            v = self._vertex(lg.vertex)
            buf = v.partial.get(lg.stream, b"") + lg.msg
            *lines, rest = buf.split(b"\n")
            v.partial[lg.stream] = rest
            for raw in lines:
                line = raw.decode("utf-8", "replace").rstrip("\r")
                v.tail.append(line)
                events.append(VertexLog(v.digest, v.number, lg.stream, line))
        for w in response.warnings:
            v = self._vertex(w.vertex)
            events.append(Warning_(v.digest, v.number, w.short.decode("utf-8", "replace")))
        return events

    def flush_logs(self) -> list[Event]:
        """Emit unfinished last lines (a step's output need not end with a newline)."""
        events: list[Event] = []
        for v in self.vertices.values():
            for stream, rest in sorted(v.partial.items()):
                if rest:
                    line = rest.decode("utf-8", "replace")
                    v.tail.append(line)
                    events.append(VertexLog(v.digest, v.number, stream, line))
            v.partial.clear()
        return events

    def steps(self, digests: set[str] | frozenset[str] | None = None) -> list[VertexState]:
        """Vertices of the solved graph (``digests``), without exporter vertices."""
        return [v for v in self.vertices.values() if digests is None or v.digest in digests]

    def failed(self) -> VertexState | None:
        """The step that failed. When one step fails BuildKit cancels the ones
        running beside it, which then report "context canceled": those are
        passed over for the step whose error is its own."""
        failed = [v for v in self.vertices.values() if v.error]
        own = [v for v in failed if not _is_cancellation(v.error)]
        return (own or failed or [None])[0]


def _is_cancellation(error: str) -> bool:
    text = error.lower()
    return "context canceled" in text or "context cancelled" in text or text.strip() == "canceled"
