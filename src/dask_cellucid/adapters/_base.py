from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

    import dask.array as da
    import pandas as pd


_CRC_CHUNK = 64 << 20  # bytes of a non-contiguous array copied at a time to checksum it


def content_token(x: Any) -> str:
    """A digest of a matrix's values: a CRC-32 of every stored byte.

    Shape, dtype, and a CRC-32 of each stored array (dense values, or a sparse
    matrix's values, indices and pointers): any change of any value changes
    it. libdeflate's CRC runs at about 10 GB/s, so even a large in-memory
    matrix costs a few milliseconds per hundred MB. A Dask array is named by
    its graph token instead, without computing anything.
    """
    import scipy.sparse as sp

    digest = hashlib.sha256(repr((type(x).__name__, tuple(x.shape), str(x.dtype))).encode())
    name = getattr(x, "name", None)
    if hasattr(x, "dask") and isinstance(name, str):
        digest.update(name.encode())
        return digest.hexdigest()[:24]
    if sp.issparse(x):
        parts = [
            getattr(x, a) for a in ("data", "indices", "indptr", "row", "col") if hasattr(x, a)
        ]
    else:
        parts = [np.asarray(x)]
    for part in parts:
        a = np.asarray(part)
        digest.update(repr((a.shape, a.dtype.str, _crc32_of(a))).encode())
    return digest.hexdigest()[:24]


def _crc32_of(a: np.ndarray) -> int:
    """CRC-32 of ``a``'s values in C order, copying at most ``_CRC_CHUNK`` bytes at a time."""
    from dask_cellucid.codecs import crc32

    if a.flags.c_contiguous:
        return crc32(memoryview(a.reshape(-1)).cast("B"))
    rows = a.reshape(a.shape[0], -1) if a.ndim > 1 else a.reshape(-1, 1)
    step = max(1, _CRC_CHUNK // max(1, rows.shape[1] * a.itemsize))
    value = 0
    for r in range(0, rows.shape[0], step):
        value = crc32(memoryview(np.ascontiguousarray(rows[r : r + step])).cast("B"), value)
    return value


@dataclass
class Source:
    """A matrix of ``(n_cells, n_genes)`` and what the planner needs to know of it.

    Subclasses override :meth:`column_blocks`; the default works on any Dask
    array held in ``array``.
    """

    array: Any
    var: pd.DataFrame | None = None
    description: str = "matrix"

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(int(s) for s in self.array.shape)  # type: ignore[return-value]

    @property
    def dtype(self) -> np.dtype[Any]:
        return np.dtype(self.array.dtype)

    @property
    def is_sparse(self) -> bool:
        return False

    def bytes_per_value(self) -> float:
        """Memory one block task holds per cell and gene (input + float32 + codes)."""
        return self.dtype.itemsize + 4 + 4

    def resident(self) -> Any | None:
        """The matrix itself when it is held in memory (NumPy, scipy.sparse), else None.

        What can be checked in memory is checked before anything is written.
        """
        return None

    def data_token(self) -> str:
        """A cheap digest that changes when the values change (:func:`content_token`)."""
        return content_token(self.array)

    def row_blocks(self, values_per_block: int) -> da.Array | None:
        """The whole matrix as CSR blocks of rows (every column), each of about
        ``values_per_block`` stored values, where rows are the input's own order
        and reading them costs no transposition; else None.

        A pass that only counts per gene (the store's first pass) reads these
        instead of column blocks.
        """
        return None

    def column_blocks(self, columns: Sequence[int], block_sizes: Sequence[int]) -> da.Array:
        """A Dask array of the chosen columns, in order, one chunk per block."""
        x = self.array
        if list(columns) != list(range(x.shape[1])):
            x = x[:, np.asarray(columns, dtype=np.int64)]
        chunks = ((x.shape[0],), tuple(block_sizes))
        if x.chunks != chunks:
            # "tasks": the P2P rechunk a distributed Client would pick crashes on
            # scipy.sparse chunks.
            x = x.rechunk(chunks, method="tasks")
        return x
