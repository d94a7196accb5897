"""From the matrix's shape and the chosen genes to a :class:`~dask_cellucid.types.Plan`.

Pure and format-neutral: how many genes one task takes, and the cut of the
genes into blocks. A format brings its own options (and may align the cut).
"""

from __future__ import annotations

import math
from typing import Any

from .errors import InvalidOptionError
from .types import Plan

# Default working set of one block task (input block, float32 transpose, codes,
# compressed bytes). Small enough for many concurrent tasks per worker, large
# enough that per-task overhead is negligible.
DEFAULT_BLOCK_MEMORY = 64 * 2**20
# Keep at least this many blocks per thread so the last ones do not straggle.
_MIN_BLOCKS = 8
# The block tasks run beside the reader: they get this share of max_memory per thread.
_TASK_SHARE = 4
_MIN_TASK_MEMORY = 2**20


def task_memory(max_memory: int, n_threads: int, block_memory: int | None = None) -> int:
    """The working memory one block task may use: ``block_memory``, or its share of the budget."""
    if block_memory is not None:
        return block_memory
    share = max_memory // (_TASK_SHARE * max(1, n_threads))
    return max(_MIN_TASK_MEMORY, min(DEFAULT_BLOCK_MEMORY, share))


def genes_per_block(
    n_cells: int,
    n_genes: int,
    bytes_per_value: float,
    *,
    block_memory: int = DEFAULT_BLOCK_MEMORY,
    n_threads: int = 1,
) -> int:
    """How many genes one block task takes so its working set fits ``block_memory``.

    ``bytes_per_value`` is the task's memory per cell and gene: input bytes,
    the float32 transpose and the codes.
    """
    per_gene = max(1.0, n_cells * bytes_per_value)
    by_memory = max(1, int(block_memory // per_gene))
    threads = max(1, n_threads)
    n_blocks = max(math.ceil(n_genes / by_memory), _MIN_BLOCKS * threads)
    # A multiple of the thread count, so that the threads get equal shares
    # (M on 2 threads: 20 blocks of 100 genes, 10 each, not 19 of 107).
    n_blocks = math.ceil(n_blocks / threads) * threads
    return max(1, min(math.ceil(n_genes / n_blocks), n_genes))


def block_sizes(n_genes: int, per_block: int) -> tuple[int, ...]:
    """``n_genes`` cut into blocks of ``per_block`` (the last may be smaller)."""
    return tuple(min(per_block, n_genes - s) for s in range(0, n_genes, per_block))


def build_plan(
    *,
    n_cells: int,
    gene_ids: Any,
    source_columns: Any,
    block_size: int,
    options: Any,
    source_token: str = "",
) -> Plan:
    """A plan of ``gene_ids`` (already checked by the format) in blocks of ``block_size``."""
    if n_cells <= 0:
        msg = "the matrix has no cells (0 rows); nothing to export."
        raise InvalidOptionError(msg)
    if not len(gene_ids):
        msg = "no gene is selected for export; check gene_identifiers and var."
        raise InvalidOptionError(msg)
    return Plan(
        n_cells=n_cells,
        gene_ids=tuple(gene_ids),
        source_columns=tuple(int(c) for c in source_columns),
        block_sizes=block_sizes(len(gene_ids), block_size),
        options=options,
        source_token=source_token,
    )
