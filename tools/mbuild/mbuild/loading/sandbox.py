"""BUILD evaluation in a child process with resource limits.

BUILD and .bzl files are workspace code, and Starlark alone does not bound
what they cost: a loop over ``range(100000)`` twice runs for hours, a list
of a billion items takes the machine's memory (or makes the interpreter
panic), and a few thousand nested brackets or a very long ``a + b + …``
overflow the stack of the Rust parser, which takes the process down with
SIGSEGV. So evaluation runs in a worker process, forked from mbuild (about 2
ms: it shares what mbuild has imported), which

* evaluates on a thread with a 512 MiB stack (address space only: pages are
  used as the recursion needs them), so ordinary generated code never comes
  near the end of it;
* may not grow its address space by more than four times the memory limit
  (RLIMIT_AS), so one huge allocation fails at once instead of taking the
  machine's memory; the limit check of the evaluator stops a steady growth
  earlier, at its line (:class:`~mbuild.loading.starlark_eval.EvaluationLimits`);
* has no stdin, stdout or stderr (a Rust panic message never reaches the
  terminal) and ignores Ctrl-C (mbuild handles it, and kills the worker).

The worker evaluates the packages it is sent in order and returns plain data
(:class:`~mbuild.loading.starlark_eval.EvaluatedPackage`); mbuild checks the
targets of one package while the worker evaluates the next, so on two cores
loading takes less time than in one process.

A build forks its first worker before anything else starts a thread
(:func:`prefork`; it learns which workspace it evaluates when first used):
a fork while another thread imports or talks to the engine leaves locks
held in the child that no thread there will release. Any later fork (a
second worker, or one after a crash) first waits for mbuild's background
threads (:mod:`mbuild.background`).

When the worker dies (stack overflow, allocation failure, a panic) or takes
too long, the package is evaluated again in a fresh worker one top-level
statement at a time, which reports each statement before it runs: the error
names the statement the crash happened in (``pkg/BUILD:12: …``), and the
.bzl file and line when a load was being evaluated.
"""

from __future__ import annotations

import faulthandler
import os
import pickle
import resource  # (imported here: a worker imports nothing once forked)
import select
import signal
import struct
import threading
import time
import traceback
import weakref
from collections import deque
from typing import Any

from mbuild.errors import ConfigError, MbuildError, at
from mbuild.loading.packages import build_file
from mbuild.loading.starlark_eval import EvaluatedPackage, Evaluator

__all__ = ["EvaluationWorker"]

STACK_SIZE = 512 << 20
WINDOW = 32  # packages sent ahead of the one waited for
_HEADER = struct.Struct("<Q")
_GRACE = 30.0  # seconds past the evaluator's own time limit before the worker is killed


class _Died(Exception):
    """The worker ended without answering; ``how`` says how."""

    def __init__(self, how: str, detail: str = "") -> None:
        super().__init__(how)
        self.how = how
        self.detail = detail


def _send(fd: int, message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def _read_exactly(fd: int, n: int, deadline: float | None) -> bytes | None:
    chunks, left = [], n
    while left:
        if deadline is not None:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([fd], [], [], wait)[0]:
                raise TimeoutError
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _receive(fd: int, deadline: float | None = None) -> Any:
    """The next message, or None when the other side closed the pipe."""
    header = _read_exactly(fd, _HEADER.size, deadline)
    if header is None:
        return None
    data = _read_exactly(fd, _HEADER.unpack(header)[0], deadline)
    return None if data is None else pickle.loads(data)


def _crash_kind(err: BaseException) -> tuple[str, str]:
    text = " ".join(str(err).split())
    if isinstance(err, RecursionError):
        return "stack", text
    if isinstance(err, MemoryError) or "memory" in text or "capacity overflow" in text or "u32::MAX" in text:
        return "memory", text
    return "panic", text


class _Process:
    """One forked worker: ``run(evaluator, requests, replies)`` in the child.
    Without an evaluator (a spare, forked early), its first message is the
    evaluator's :attr:`~mbuild.loading.starlark_eval.Evaluator.spec`."""

    def __init__(self, evaluator: Evaluator | None, stepwise: str | None = None) -> None:
        from mbuild import background

        background.quiesce()  # no fork while another thread imports or talks to the engine
        requests_r, requests_w = os.pipe()
        replies_r, replies_w = os.pipe()
        try:
            pid = os.fork()
        except OSError as err:
            for fd in (requests_r, requests_w, replies_r, replies_w):
                os.close(fd)
            raise MbuildError(f"cannot start the process that evaluates BUILD files: {err.strerror}; "
                              f"free some memory or processes and run again") from None
        if pid == 0:  # the child: never returns
            try:
                os.close(requests_w)
                os.close(replies_r)
                _child(evaluator, requests_r, replies_w, stepwise)
            finally:
                os._exit(0)
        os.close(requests_r)
        os.close(replies_w)
        self.pid = pid
        self.requests = requests_w
        self.replies = replies_r
        self._status: int | None = None

    def send(self, message: Any) -> None:
        try:
            _send(self.requests, message)
        except BrokenPipeError:
            pass  # it died: the next receive says how

    def receive(self, timeout: float) -> Any:
        try:
            message = _receive(self.replies, time.monotonic() + timeout)
        except TimeoutError:
            self.kill()
            raise _Died("time") from None
        if message is None:
            raise _Died(*self._how())
        return message

    def _how(self) -> tuple[str, str]:
        status = self.wait()
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            if sig == signal.SIGSEGV:
                return "stack", ""
            if sig in (signal.SIGABRT, signal.SIGKILL):
                return "memory", signal.Signals(sig).name  # Rust aborts when an allocation fails
            return "signal", signal.Signals(sig).name
        return "exit", str(os.WEXITSTATUS(status)) if os.WIFEXITED(status) else str(status)

    def wait(self) -> int:
        if self._status is None:
            self._status = os.waitpid(self.pid, 0)[1]
        return self._status

    def kill(self) -> None:
        if self._status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.wait()

    def close(self) -> None:
        for fd in (self.requests, self.replies):
            try:
                os.close(fd)
            except OSError:
                pass
        self.kill()


def _child(evaluator: Evaluator, requests: int, replies: int, stepwise: str | None) -> None:
    """The worker's life: limits, then requests answered until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    faulthandler.disable()  # a crash is the parent's to report (pytest's handler writes to a saved fd)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    threading.stack_size(STACK_SIZE)
    thread = threading.Thread(target=_serve, args=(evaluator, requests, replies, stepwise), name="starlark")
    thread.start()
    thread.join()


def _limit_address_space(extra: int) -> None:
    with open("/proc/self/statm") as f:
        size = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    limit = size + extra
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _serve(evaluator: Evaluator | None, requests: int, replies: int, stepwise: str | None) -> None:
    try:
        if evaluator is None:  # a spare: told what to evaluate when first used
            spec = _receive(requests)
            if spec is None:
                return  # never used: mbuild has ended
            evaluator = Evaluator.from_spec(spec)
        _limit_address_space(4 * evaluator.limits.memory)
        if stepwise is not None:
            evaluator.evaluate_stepwise(stepwise, lambda positions: _send(replies, ("at", positions)))
            _send(replies, ("finished",))
            return
        while True:
            package = _receive(requests)
            if package is None:
                return
            try:
                _send(replies, ("done", evaluator.evaluate(package)))
            except ConfigError as err:
                _send(replies, ("error", str(err)))
    except BaseException as err:  # noqa: BLE001 - the parent decides what it means
        try:
            if isinstance(err, (MemoryError, RecursionError)) or type(err).__name__ == "PanicException":
                _send(replies, ("crash", *_crash_kind(err)))
            elif isinstance(err, ConfigError):
                _send(replies, ("error", str(err)))
            else:
                _send(replies, ("internal", "".join(traceback.format_exception(err))))
        except BaseException:  # noqa: BLE001 - nothing left to tell it with
            pass


_spare: list[_Process] = []


def prefork() -> None:
    """Fork the next worker now (before any thread starts); the next
    :class:`EvaluationWorker` takes it. At most one waits."""
    if not _spare:
        try:
            _spare.append(_Process(None))
        except MbuildError:
            pass  # no process to spare: forked when needed


def discard_spare() -> None:
    """End the spare worker if nobody took it (at the end of the command that forked it:
    a spare forked for one command is never another's)."""
    while _spare:
        _spare.pop().close()


def _adopt(evaluator: Evaluator) -> "_Process | None":
    """The spare worker, told to evaluate with ``evaluator``; None if there is none alive."""
    while _spare:
        process = _spare.pop()
        if process._status is None and os.waitpid(process.pid, os.WNOHANG)[0] == 0:
            process.send(evaluator.spec)
            return process
        process.close()
    return None


class EvaluationWorker:
    """Evaluates packages in a worker process: ``request`` them (as early as
    known), then ``result`` each, in any order; ``close`` when done."""

    def __init__(self, evaluator: Evaluator) -> None:
        self.evaluator = evaluator
        self._process: _Process | None = None
        self._finalizer: weakref.finalize | None = None
        self._sent: deque[str] = deque()  # sent, not yet answered, in order
        self._unsent: deque[str] = deque()
        self._answers: dict[str, Any] = {}
        self._known: set[str] = set()

    def request(self, package: str) -> None:
        if package not in self._known:
            self._known.add(package)
            self._unsent.append(package)
            self._pump()

    def result(self, package: str) -> EvaluatedPackage:
        """The evaluated package (ConfigError if its evaluation failed)."""
        self.request(package)
        while package not in self._answers:
            self._answer_next()
        answer = self._answers.pop(package)
        self._known.discard(package)
        kind = answer[0]
        if kind == "done":
            return answer[1]
        if kind == "error":
            raise ConfigError(answer[1])
        if kind == "internal":
            raise RuntimeError(f"evaluating //{package} failed in mbuild itself:\n{answer[1]}")
        raise self._diagnose(package, answer[1], answer[2])

    def close(self) -> None:
        if self._process is not None:
            self._process.close()
            self._process = None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None

    # ------------------------------------------------------------------ the pipe

    def _pump(self) -> None:
        while self._unsent and len(self._sent) < WINDOW:
            if self._process is None:
                self._process = _adopt(self.evaluator) or _Process(self.evaluator)
                self._finalizer = weakref.finalize(self, self._process.close)
            package = self._unsent.popleft()
            self._sent.append(package)
            self._process.send(package)

    def _answer_next(self) -> None:
        assert self._process is not None and self._sent
        package = self._sent[0]
        try:
            message = self._process.receive(self.evaluator.limits.seconds + _GRACE)
        except _Died as died:
            message = ("crash", died.how, died.detail)
        self._sent.popleft()
        self._answers[package] = message
        if message[0] == "crash":  # the worker is gone: what it was sent goes to the next one
            self.close()
            self._unsent.extendleft(reversed(self._sent))
            self._sent.clear()
        self._pump()

    # ------------------------------------------------------------------ after a crash

    def _diagnose(self, package: str, how: str, detail: str) -> Exception:
        """The error for a worker that died evaluating ``package``: evaluated
        again one statement at a time, to name the statement it died in."""
        process = _Process(self.evaluator, stepwise=package)
        positions: list[tuple[str, int]] = []
        try:
            while True:
                message = process.receive(self.evaluator.limits.seconds + _GRACE)
                if message[0] != "at":
                    break
                positions = message[1]
        except _Died as died:
            message = ("crash", died.how, died.detail)
        finally:
            process.close()
        if message[0] == "error":
            return ConfigError(message[1])  # this time it failed the ordinary way
        if message[0] == "internal":
            return RuntimeError(f"evaluating //{package} failed in mbuild itself:\n{message[1]}")
        if message[0] == "crash":
            how, detail = message[1], message[2]
        if message[0] != "crash" or not positions:  # it did not crash again: name the file alone
            found = build_file(self.evaluator.root, package)
            name = found.name if found is not None else "BUILD"
            return ConfigError(f"{package}/{name}: {_why(how, detail, self.evaluator)}" if package
                               else f"{name}: {_why(how, detail, self.evaluator)}")
        path, line = positions[-1]
        outer = f" (loaded from {positions[0][0]}:{positions[0][1]})" if len(positions) > 1 else ""
        return ConfigError(at(path, line, f"{_why(how, detail, self.evaluator)}{outer}"))


def _why(how: str, detail: str, evaluator: Evaluator) -> str:
    limits = evaluator.limits
    if how == "stack":
        return ("this statement crashed the Starlark interpreter (it ran out of stack): an expression nested too "
                "deeply, like a very long chain of '+' or of brackets; build the value in steps")
    if how == "memory":
        return (f"evaluation needs more than {limits.memory >> 20} MiB of memory; build smaller values (a list "
                f"or string this large is a mistake)")
    if how == "time":
        return f"evaluation took more than {limits.seconds:g} s; make the BUILD file (or its macros) do less"
    if how == "panic":
        return f"the Starlark interpreter failed ({detail}); build smaller or simpler values"
    return f"the process evaluating it ended unexpectedly ({how} {detail}); run again, and report it if it repeats"
