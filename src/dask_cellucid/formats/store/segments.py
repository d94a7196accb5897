"""Chunk-aligned segments: which whole chunks each task writes, and which genes it reads.

Pure NumPy. A sparse ``X``'s ``data`` and ``indices`` are cut into segments of
whole chunks; each segment covers the genes whose stored values fall in it (a
gene across a boundary is read by both segments, and each keeps its own
part). A dense ``X`` is cut into groups of whole column strips. No task ever
writes part of another's chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence


@dataclass(frozen=True, slots=True)
class Segment:
    """Chunks ``[first_chunk, stop_chunk)`` of the grid, from genes ``[first_gene, stop_gene)``.

    For a dense ``X`` the "chunks" are column strips (one grid column each).
    """

    first_chunk: int
    stop_chunk: int
    first_gene: int
    stop_gene: int

    @property
    def n_genes(self) -> int:
        return self.stop_gene - self.first_gene


def sparse_segments(
    indptr: Sequence[int] | np.ndarray, chunk: int, chunks_per_segment: int
) -> list[Segment]:
    """Segments of ``chunks_per_segment`` chunks of ``chunk`` values over ``X/data``.

    ``indptr`` holds the ``n_genes + 1`` global positions of every gene's
    values. Genes with no value inside a segment are left out of it; a
    matrix with no stored value has no segment.
    """
    ptr = np.asarray(indptr, dtype=np.int64)
    nnz = int(ptr[-1])
    if nnz == 0:
        return []
    n_chunks = -(-nnz // chunk)
    step = max(1, int(chunks_per_segment))
    out = []
    for c0 in range(0, n_chunks, step):
        c1 = min(n_chunks, c0 + step)
        p0, p1 = c0 * chunk, min(c1 * chunk, nnz)
        g0 = int(np.searchsorted(ptr, p0, side="right")) - 1
        g1 = int(np.searchsorted(ptr, p1 - 1, side="right"))
        out.append(Segment(c0, c1, g0, g1))
    return out


def dense_segments(n_genes: int, strip_genes: int, strips_per_segment: int) -> list[Segment]:
    """Groups of ``strips_per_segment`` column strips of ``strip_genes`` genes each."""
    n_strips = -(-n_genes // strip_genes)
    step = max(1, int(strips_per_segment))
    return [
        Segment(
            s0, min(n_strips, s0 + step), s0 * strip_genes, min(n_genes, (s0 + step) * strip_genes)
        )
        for s0 in range(0, n_strips, step)
    ]


def chunks_per_task(task_memory: int, chunk: int, bytes_per_value: float) -> int:
    """Whole chunks one task may hold within ``task_memory`` (at least one)."""
    return max(1, int(task_memory // max(1.0, chunk * bytes_per_value)))
