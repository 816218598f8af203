"""Runs jobs in parallel as soon as the jobs they wait for have finished.

A job failing stops new jobs from starting; running ones finish, and the
first failure is raised.
"""

from __future__ import annotations

from concurrent import futures
from typing import Callable, Hashable, Iterable, Mapping, Sequence, TypeVar

K = TypeVar("K", bound=Hashable)
R = TypeVar("R")


def run_parallel(keys: Sequence[K], after: Mapping[K, Iterable[K]], work: Callable[[K], R],
                 max_workers: int = 4) -> dict[K, R]:
    """Run ``work(key)`` for every key, each after the keys in ``after[key]``."""
    waiting = {k: set(after.get(k, ())) & set(keys) for k in keys}
    results: dict[K, R] = {}
    failure: BaseException | None = None
    with futures.ThreadPoolExecutor(max_workers=max(1, max_workers), thread_name_prefix="job") as pool:
        running: dict[futures.Future, K] = {}

        def start_ready() -> None:
            for k in [k for k, deps in waiting.items() if not deps]:
                del waiting[k]
                running[pool.submit(work, k)] = k

        start_ready()
        while running:
            done, _ = futures.wait(running, return_when=futures.FIRST_COMPLETED)
            for fut in done:
                k = running.pop(fut)
                try:
                    results[k] = fut.result()
                except BaseException as e:  # noqa: BLE001 - re-raised below
                    if failure is None:
                        failure = e
                    continue
                for deps in waiting.values():
                    deps.discard(k)
            if failure is None:
                start_ready()
    if failure is not None:
        raise failure
    if waiting:  # only possible with a cycle, which loading rejects
        raise RuntimeError(f"jobs never became ready: {sorted(map(str, waiting))}")
    return results
