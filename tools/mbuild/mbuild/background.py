"""Background threads that a fork must not overlap.

mbuild forks (the BUILD-file worker of :mod:`mbuild.loading.sandbox`, the
warm server's children), and a fork while another thread is importing a
module or inside gRPC leaves the child — and Python's fork handlers in the
parent — with locks held by a thread that is not there ("release unlocked
lock"). So work started in the background (:func:`start`: the engine's early
start) is waited for by :func:`quiesce` before any fork, for at most a few
seconds: a fork after that (the engine answers slowly) is taken as it comes.
"""

from __future__ import annotations

import threading

_running: list[threading.Thread] = []
_lock = threading.Lock()


def start(target, name: str) -> None:
    """Run ``target()`` in a daemon thread that :func:`quiesce` waits for."""
    thread = threading.Thread(target=target, name=name, daemon=True)
    with _lock:
        _running[:] = [t for t in _running if t.is_alive()]
        _running.append(thread)
    thread.start()


def quiesce(timeout: float = 3.0) -> None:
    """Wait until the background threads have ended (at most ``timeout`` seconds in all)."""
    with _lock:
        threads = [t for t in _running if t.is_alive() and t is not threading.current_thread()]
    if not threads:
        return
    import time

    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
