"""The Dask graph: one task per gene-column block, in one place.

A format's block task takes one block of the input (a NumPy or scipy.sparse
array of ``n_cells`` rows) and a small job describing it, writes what it must,
and returns only small records: payload bytes never travel back to the
client. The same graph serves exports and verifications.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import dask.array as da

TASK_PREFIX = "cellucid-block"
#: Key prefix of the tasks that make the one pass over an input read out of core
#: before any block can be built (row slabs of a CSR file, spill shards):
#: progress counts them as the read phase.
READ_PREFIX = "cellucid-read"


def block_tasks(
    x: da.Array,
    fn: Callable[..., list[Any]],
    jobs: Sequence[tuple[int, Any]],
    *args: Any,
    name: str,
) -> list[Delayed]:
    """``fn(block, job, *args)`` as one task per ``(block index, job)``.

    Blocks given no job get no task, and Dask culls their reads from the
    graph. Task names start with :data:`TASK_PREFIX` so progress can count
    them; keys are ``(name, block index)``, as Dask's own. The tasks are
    written as a graph layer directly: ``dask.delayed`` would walk every
    job's fields looking for Dask collections (see ``benchmarks/README.md``).
    """
    blocks = x.to_delayed(optimize_graph=True).ravel()
    prefix = f"{TASK_PREFIX}-{name}"
    layer = {(prefix, i): (fn, blocks[i].key, job, *args) for i, job in jobs}
    graph = HighLevelGraph.from_collections(
        prefix, layer, dependencies=[blocks[i] for i, _ in jobs]
    )
    return [Delayed(key, graph, layer=prefix) for key in layer]
