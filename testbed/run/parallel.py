"""Run independent calls here, in local worker processes, or on a Dask cluster, yielding results as they finish.

Sweeps (one run per cell) and the optimiser (one run per configuration and replication) share this
one executor, so ``--workers`` and ``--scheduler`` mean the same thing in both. Calls are handed out
in the order given (callers put the largest first); results come back in completion order, each with
its position, so what a caller builds from them does not depend on that order.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from testbed.errors import ConfigError

__all__ = ["MAX_WORKERS", "check_workers", "run_all"]

MAX_WORKERS = 1024


def check_workers(workers: int, scheduler: str | None) -> None:
    """Refuse a worker count out of range, or a scheduler when dask.distributed is not installed."""
    if not 1 <= workers <= MAX_WORKERS:
        raise ConfigError("--workers", workers, f"a number of worker processes from 1 to {MAX_WORKERS}")
    if scheduler is not None:
        if not scheduler.strip():
            raise ConfigError("--scheduler", scheduler, "a Dask scheduler address like tcp://host:8786")
        try:
            found = importlib.util.find_spec("dask.distributed") is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise ConfigError("--scheduler", scheduler, "needs dask.distributed, which is not installed "
                                                        "(pip install 'dask[distributed]', or testbed's [dev] extra)")


def run_all(fn: Callable[..., Any], calls: Sequence[tuple[Any, ...]], workers: int = 1,
            scheduler: str | None = None) -> Generator[tuple[int, Any], None, None]:
    """``fn(*call)`` for every call, yielding ``(position, result)`` as each finishes.

    ``fn`` must be a module-level function and the calls picklable (they go to other processes).
    Closing the generator early (Ctrl-C, an error, ``break``) starts nothing more and stops the calls
    under way; local workers are forked where the platform allows (they start at once with this
    process's imports: callers warm any model cache first, so no torch thread pool runs after the fork).
    """
    if not calls:
        return
    if scheduler:
        yield from _on_dask(fn, calls, scheduler)
    elif workers <= 1:
        for i, call in enumerate(calls):
            yield i, fn(*call)
    else:
        yield from _on_pool(fn, calls, workers)


def _on_dask(fn: Callable[..., Any], calls: Sequence[tuple[Any, ...]], scheduler: str
             ) -> Generator[tuple[int, Any], None, None]:
    from dask.distributed import Client
    from dask.distributed import as_completed as dask_completed

    try:
        client = Client(scheduler, timeout="20s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise ConfigError("--scheduler", scheduler, f"a reachable Dask scheduler ({type(exc).__name__}: "
                                                    f"{str(exc)[:120]})") from None
    with client:
        futures = client.map(fn, *zip(*calls), pure=False)
        where = {f.key: i for i, f in enumerate(futures)}
        try:
            for fut in dask_completed(futures):
                yield where[fut.key], fut.result()
        finally:
            client.cancel([f for f in futures if not f.done()])  # nothing more starts on the cluster


def _on_pool(fn: Callable[..., Any], calls: Sequence[tuple[Any, ...]], workers: int
             ) -> Generator[tuple[int, Any], None, None]:
    import multiprocessing as mp

    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context(method))
    finished = False
    try:
        where = {pool.submit(fn, *call): i for i, call in enumerate(calls)}
        for done in as_completed(where):
            yield where[done], done.result()
        finished = True
    finally:
        if finished:
            pool.shutdown(wait=True)
        else:  # interrupted (or a run failed): start nothing more, stop the runs under way
            _stop_pool(pool)


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Cancel the queued calls and end the workers now, not after the calls already handed to them."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # CPython's, read only
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        if proc.is_alive():
            proc.terminate()
    for proc in processes:
        proc.join(timeout=5)
