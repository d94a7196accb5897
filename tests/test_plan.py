"""Block sizing: memory bound, enough blocks per thread, no straggling thread."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from dask_cellucid.plan import genes_per_block


@given(
    n_cells=st.integers(1, 2_000_000),
    n_genes=st.integers(1, 50_000),
    bytes_per_value=st.floats(0.01, 16),
    block_memory=st.integers(1, 2**30),
    n_threads=st.integers(1, 64),
)
def test_blocks_fit_memory_and_keep_every_thread_busy(
    n_cells, n_genes, bytes_per_value, block_memory, n_threads
) -> None:
    size = genes_per_block(
        n_cells, n_genes, bytes_per_value, block_memory=block_memory, n_threads=n_threads
    )
    assert 1 <= size <= n_genes
    assert size == 1 or size * max(1.0, n_cells * bytes_per_value) <= block_memory
    assert size <= math.ceil(n_genes / (8 * n_threads))  # about 8 blocks per thread or more


def test_block_count_is_a_multiple_of_the_threads() -> None:
    # M: 100,000 cells at 6.24 bytes a value fit 107 genes in 64 MiB: 19 blocks
    # by memory, 20 (of 100 genes) so that two threads run 10 each.
    assert genes_per_block(100_000, 2_000, 6.24, block_memory=64 * 2**20, n_threads=2) == 100
    # 16 threads want at least 128 blocks: 1,000 genes in 125 blocks of 8
    # would leave 13 threads a block short; 128 blocks of 8 (the last 4 empty
    # ones dropped) is the closest.
    assert genes_per_block(1_000, 1_000, 1.0, block_memory=2**30, n_threads=16) == 8
