from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd


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
