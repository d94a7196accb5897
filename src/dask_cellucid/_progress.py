"""Progress over block tasks: tqdm driven by Dask, on any scheduler.

Two phases, each with its own bar and ETA: the *read* phase (the tasks whose
keys start with :data:`~._graph.READ_PREFIX`: row slabs of a CSR file, spill
shards, regroups; only inputs read out of core have them) and the genes
written by the block tasks. When the last read task is done, a log line says
how long the phase took (``read/transpose done``), with or without bars.

Dask's local diagnostics callbacks do not fire under distributed, so there we
count finished block futures instead (and show no read bar); both feed the
same tqdm bar.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import dask
from dask.callbacks import Callback
from tqdm.auto import tqdm

from ._graph import READ_PREFIX, TASK_PREFIX

if TYPE_CHECKING:
    from collections.abc import Sequence

    from dask.delayed import Delayed

    from ._scheduler import Compute


log = logging.getLogger("dask_cellucid")


def _name(key: Any) -> Any:
    return key[0] if isinstance(key, tuple) else key


def read_tasks(tasks: Sequence[Delayed]) -> int:
    """How many read-phase tasks computing ``tasks`` runs (after culling)."""
    if not tasks:
        return 0
    graph = tasks[0].__dask_graph__()
    keys = {t.key for t in tasks}
    culled = graph.cull(keys) if hasattr(graph, "cull") else graph
    return sum(1 for k in culled if str(_name(k)).startswith(READ_PREFIX))


class _BlockBar(Callback):  # type: ignore[misc]
    def __init__(self, bar: tqdm, read_bar: tqdm | None = None, n_read: int = 0) -> None:
        super().__init__()
        self.bar = bar
        self.read_bar = read_bar
        self.n_read = n_read
        self.reads_done = 0
        self.t0 = time.perf_counter()

    def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, id: Any) -> None:
        name = _name(key)
        if not isinstance(name, str):
            return
        if name.startswith(TASK_PREFIX):
            self.bar.update(len(result))
        elif name.startswith(READ_PREFIX):
            self.reads_done += 1
            if self.read_bar is not None:
                self.read_bar.update(1)
            if self.reads_done == self.n_read:
                log.info(
                    "read/transpose done: %d read tasks in %.1f s",
                    self.n_read,
                    time.perf_counter() - self.t0,
                )


def run(
    tasks: Sequence[Delayed],
    compute: Compute,
    *,
    n_genes: int,
    initial: int = 0,
    num_workers: int | None = None,
    progress: bool,
    desc: str = "Exporting genes",
    unit: str = "gene",
) -> list[list[Any]]:
    """Compute the block tasks; return their per-gene results in task order.

    ``num_workers`` overrides the local scheduler's thread count for this run;
    each task's records count ``unit`` (one record per gene, or per row block).
    """
    if compute.client is not None:
        with tqdm(
            total=n_genes, initial=initial, unit=unit, desc=desc, disable=not progress
        ) as bar:
            return _run_distributed(tasks, compute.client, bar)
    n_read = read_tasks(tasks)
    kw: dict[str, Any] = {"scheduler": _local_get(compute.local)}
    threads = num_workers or compute.num_workers
    if threads:
        kw["num_workers"] = threads
    with (
        tqdm(
            total=n_read,
            unit="task",
            desc="Reading and transposing",
            disable=not progress or not n_read,
            smoothing=0.1,
            position=0,
        ) as read_bar,
        tqdm(
            total=n_genes,
            initial=initial,
            unit=unit,
            desc=desc,
            disable=not progress,
            smoothing=0.1,
            position=1 if n_read and progress else 0,
        ) as bar,
        _BlockBar(bar, read_bar, n_read),
    ):
        return list(dask.compute(*tasks, **kw))


def _local_get(name: str | None) -> Any:
    """The local scheduler's get function itself.

    Dask resolves a scheduler *name* by first importing ``distributed``, when
    installed, to look for a Client: 0.4 s on the first call of a process,
    for a client that :mod:`._scheduler` has already ruled out.
    """
    if name == "synchronous":
        from dask.local import get_sync

        return get_sync
    if name == "processes":
        from dask.multiprocessing import get as get_processes

        return get_processes
    from dask.threaded import get as get_threads

    return get_threads


def _run_distributed(tasks: Sequence[Delayed], client: Any, bar: tqdm) -> list[list[Any]]:
    """Submit the block tasks to the cluster and count them off as they finish.

    Only each block's small entry list comes back to the client, never payload
    bytes. If a block fails for good, the blocks still queued are cancelled
    before the error propagates (nothing will name what they would write).
    """
    from distributed import as_completed

    futures = client.compute(list(tasks))
    order = {fut.key: i for i, fut in enumerate(futures)}
    results: list[list[Any]] = [[] for _ in futures]
    try:
        for fut, records in as_completed(futures, with_results=True, loop=client.loop):
            results[order[fut.key]] = records
            bar.update(len(records))
    except BaseException:
        client.cancel(futures)
        raise
    return results
