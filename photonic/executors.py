"""Executors: where independent tasks run — in the calling process, a local process pool, or
a Dask cluster — behind one small interface.

Design-space sweeps (:func:`photonic.sweep.run_sweep`) and multi-seed runs
(:func:`photonic.multiseed.run_seeds`) both fan their tasks out through these classes. An
:class:`Executor` is a context manager that owns its workers; :meth:`Executor.imap_unordered`
yields each task's result as it completes. Registry :data:`EXECUTORS`: ``"inprocess"``,
``"processes"`` (``spawn`` start method) and ``"dask"`` (``dask.distributed``: a small
``LocalCluster``, or the scheduler at ``address``). Task functions must be module-level (so
they pickle by reference) and their arguments and results picklable.

:func:`limited_threads` pins torch and numba to a thread count for the duration of a task, so
that several workers on one machine do not oversubscribe its cores.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from photonic.runio import BadInput
from photonic.textutil import did_you_mean

__all__ = [
    "Executor",
    "InProcessExecutor",
    "ProcessExecutor",
    "DaskExecutor",
    "EXECUTORS",
    "make_executor",
    "limited_threads",
]


@contextmanager
def limited_threads(threads: int = 1) -> Iterator[None]:
    """torch and numba on ``threads`` threads (numba: at most its configured maximum),
    restored afterwards.

    One thread by default, for two reasons: results must not depend on a thread count (BLAS
    reductions may split differently), and for small matrices numba's parallel-loop start-up
    costs more than the work (≈ 15× slower per sweep point on a loaded 2-core machine).
    """
    import numba
    import torch

    if threads < 1:
        raise ValueError(f"threads={threads}: need at least one thread per task")
    t_old, n_old = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(threads)
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        yield
    finally:
        torch.set_num_threads(t_old)
        numba.set_num_threads(n_old)


class Executor(ABC):
    """Runs chunks of tasks; a context manager that owns its workers.

    Subclasses implement :meth:`imap_unordered`, yielding each chunk's result as it
    completes; ``__exit__`` must release every worker (also on KeyboardInterrupt).
    """

    #: workers that run at once (sizes the chunks)
    workers: int = 1
    #: whether tasks cross a process boundary (then rows travel in chunks, to amortise the
    #: round trip; in-process every row is its own chunk, cached as soon as it is done)
    remote: bool = True

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc) -> None:
        return None

    @property
    def started(self) -> bool:
        """Whether workers are up (inside ``with executor:``)."""
        return True

    @abstractmethod
    def imap_unordered(self, fn: Callable, items: Sequence) -> Iterator:
        """``fn(item)`` for every item, yielded in completion order."""


class InProcessExecutor(Executor):
    """Evaluate in the calling process, one chunk after the other (the default)."""

    remote = False

    def __init__(self, **_: Any) -> None:
        self.workers = 1

    def imap_unordered(self, fn, items):
        for item in items:
            yield fn(item)


class ProcessExecutor(Executor):
    """A local pool of ``workers`` processes (``spawn`` start method: safe with torch and
    numba thread pools, unlike ``fork``)."""

    def __init__(self, *, workers: int = 2, **_: Any) -> None:
        if workers < 1:
            raise ValueError(f"workers={workers}: need at least one worker process")
        self.workers = workers
        self._pool = None

    def __enter__(self) -> ProcessExecutor:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self._pool = ProcessPoolExecutor(max_workers=self.workers,
                                         mp_context=multiprocessing.get_context("spawn"))
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    @property
    def started(self) -> bool:
        return self._pool is not None

    def imap_unordered(self, fn, items):
        from concurrent.futures import as_completed

        futures = [self._pool.submit(fn, item) for item in items]
        try:
            for f in as_completed(futures):
                yield f.result()
        finally:
            for f in futures:
                f.cancel()


# Seconds to wait for an existing Dask scheduler before refusing its address.
DASK_CONNECT_TIMEOUT_S = 5


class DaskExecutor(Executor):
    """``dask.distributed``: the scheduler at ``address`` (e.g. ``"tcp://10.0.0.5:8786"``),
    or else a ``LocalCluster`` of ``workers`` processes with one thread each, closed on exit.

    Workers of an existing cluster need ``photonic-sim`` installed (same versions) to
    unpickle the tasks; they write nothing — rows come back to the caller, which caches them.
    """

    def __init__(self, *, workers: int = 2, address: str | None = None, **_: Any) -> None:
        if workers < 1:
            raise ValueError(f"workers={workers}: need at least one Dask worker")
        self.workers = workers
        self.address = address
        self._cluster = self._client = None

    def __enter__(self) -> DaskExecutor:
        import logging

        from dask.distributed import Client, LocalCluster

        if self.address is None:
            self._cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1,
                                         processes=True, dashboard_address=":0",
                                         silence_logs=logging.ERROR)
            self._client = Client(self._cluster)
        else:
            try:
                self._client = Client(self.address, timeout=DASK_CONNECT_TIMEOUT_S)
            except (OSError, TimeoutError) as e:
                raise BadInput(f"scheduler_address={self.address!r}: no Dask scheduler "
                               f"answered within {DASK_CONNECT_TIMEOUT_S} s ({type(e).__name__}"
                               "); start one there (`dask scheduler`) or use executor: "
                               "processes") from None
            threads = sum(self._client.nthreads().values())
            self.workers = max(1, threads)
        return self

    def __exit__(self, *exc) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    @property
    def started(self) -> bool:
        return self._client is not None

    def imap_unordered(self, fn, items):
        from dask.distributed import as_completed

        futures = self._client.map(fn, list(items), pure=False)
        try:
            for f in as_completed(futures):
                yield f.result()
        finally:
            self._client.cancel(futures)


# name → executor class; ``run_sweep(executor=...)`` and the workload's ``executor:`` key.
EXECUTORS: dict[str, type[Executor]] = {
    "inprocess": InProcessExecutor,
    "processes": ProcessExecutor,
    "dask": DaskExecutor,
}


def make_executor(name: str, *, workers: int = 2, address: str | None = None) -> Executor:
    """The registered executor ``name`` (``address`` only for ``"dask"``)."""
    if name not in EXECUTORS:
        raise ValueError(f"executor={name!r} is not known; valid choices: "
                         f"{sorted(EXECUTORS)}{did_you_mean(name, EXECUTORS)}")
    if address is not None and name != "dask":
        raise ValueError(f"address={address!r} is a Dask scheduler address; it needs "
                         f"executor='dask' (got executor={name!r})")
    return EXECUTORS[name](workers=workers, address=address)
