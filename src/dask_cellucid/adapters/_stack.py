"""Stacking CSC pieces by rows: pure NumPy, no Dask, no files.

A CSR file turned into gene columns arrives as CSC pieces, one per row slab,
each holding the same columns for its own rows. The column block of all the
rows interleaves them: column ``j`` is slab 0's column ``j``, then slab 1's,
and so on, with each slab's row indices shifted by its first row.
:func:`stacked_layout` places every piece's columns in the output from the
pieces' column counts alone, so the output is allocated once and each piece is
copied in (:func:`put_piece`) as soon as it is read, then dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Values per column from which a piece is copied column by column (slices)
# rather than value by value (an index per value).
_SLICE_COPY_MIN = 32


@dataclass
class Stacked:
    """A CSC block being filled from row pieces: ``indptr``, ``indices`` (int32), ``data``.

    ``starts[k, j]`` is where piece ``k``'s column ``j`` begins in ``indices``/``data``.
    """

    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    starts: np.ndarray


def stacked_layout(counts: np.ndarray, dtype: np.dtype) -> Stacked:
    """The empty output for pieces whose column counts are the rows of ``counts``.

    Parameters
    ----------
    counts
        ``(n_pieces, n_columns)`` stored values of each piece's columns, pieces
        in row order.
    dtype
        The values' dtype.
    """
    counts = np.asarray(counts, dtype=np.int64)
    n_cols = counts.shape[1]
    indptr = np.zeros(n_cols + 1, np.int64)
    np.cumsum(counts.sum(axis=0), out=indptr[1:])
    # each piece starts after the earlier pieces' values of the same column
    starts = np.cumsum(counts, axis=0) - counts + indptr[:-1]
    nnz = int(indptr[-1])
    return Stacked(indptr, np.empty(nnz, np.int32), np.empty(nnz, dtype), starts)


def put_piece(
    out: Stacked, k: int, indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, row0: int
) -> None:
    """Copy piece ``k`` (CSC over the output's columns, rows from ``row0``) into ``out``.

    ``indptr`` may start anywhere (a range of a larger piece): only its
    differences count. ``indices`` (any integer dtype, rows of the piece) and
    ``data`` hold exactly ``indptr[-1] - indptr[0]`` values.
    """
    local = np.asarray(indptr, dtype=np.int64) - int(indptr[0])
    n = int(local[-1])
    if n == 0:
        return
    counts = np.diff(local)
    # rows of the output (int32), whatever the piece's index dtype
    rows = np.add(indices, np.int32(row0), dtype=np.int32) if row0 else indices
    if n >= _SLICE_COPY_MIN * len(counts):
        # long column runs: one slice copy per column beats an index per value
        full = counts > 0
        for a, b, at in zip(
            local[:-1][full].tolist(),
            local[1:][full].tolist(),
            out.starts[k][full].tolist(),
            strict=True,
        ):
            out.indices[at : at + b - a] = rows[a:b]
            out.data[at : at + b - a] = data[a:b]
        return
    # destination of each value: its column's start in the output, plus its
    # offset inside its column
    dest = np.repeat(out.starts[k] - local[:-1], counts)
    dest += np.arange(n, dtype=np.int64)
    out.indices[dest] = rows
    out.data[dest] = data


def column_counts(indptr: np.ndarray) -> np.ndarray:
    """Stored values per column, from a CSC ``indptr`` (or a range of one)."""
    return np.diff(np.asarray(indptr, dtype=np.int64))
