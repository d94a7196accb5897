"""Progress over block tasks: tqdm driven by Dask, on any scheduler.

Dask's local diagnostics callbacks do not fire under distributed, so there we
count finished futures instead; both feed the same tqdm bar.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import dask
from dask.callbacks import Callback
from tqdm.auto import tqdm

from ._graph import TASK_PREFIX

if TYPE_CHECKING:
    from collections.abc import Sequence

    from dask.delayed import Delayed

    from ._scheduler import Compute


class _BlockBar(Callback):  # type: ignore[misc]
    def __init__(self, bar: tqdm) -> None:
        super().__init__()
        self.bar = bar

    def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, id: Any) -> None:
        name = key[0] if isinstance(key, tuple) else key
        if isinstance(name, str) and name.startswith(TASK_PREFIX):
            self.bar.update(len(result))


def run(
    tasks: Sequence[Delayed],
    compute: Compute,
    *,
    n_genes: int,
    initial: int = 0,
    num_workers: int | None = None,
    progress: bool,
    desc: str = "Exporting genes",
) -> list[list[Any]]:
    """Compute the block tasks; return their per-gene results in task order.

    ``num_workers`` overrides the local scheduler's thread count for this run.
    """
    with tqdm(
        total=n_genes,
        initial=initial,
        unit="gene",
        desc=desc,
        disable=not progress,
        smoothing=0.1,
    ) as bar:
        if compute.client is not None:
            return _run_distributed(tasks, compute.client, bar)
        kw: dict[str, Any] = {"scheduler": _local_get(compute.local)}
        threads = num_workers or compute.num_workers
        if threads:
            kw["num_workers"] = threads
        with _BlockBar(bar):
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
