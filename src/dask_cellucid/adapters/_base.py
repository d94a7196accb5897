from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

    import dask.array as da
    import pandas as pd


_SAMPLE = 1 << 20  # values hashed exactly, spread evenly over each array


def content_token(x: Any) -> str:
    """A digest of a matrix's values that costs one summing pass, not a full hash.

    Shape, dtype and sparsity structure, a float64 sum of the values, and an
    even sample of about a million values: any real
    change (a re-normalisation, another layer, other cells) changes it. A Dask
    array is named by its graph token instead, without computing anything.
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
        step = max(1, a.size // _SAMPLE)
        with np.errstate(all="ignore"):  # buffered: no float64 copy of the array
            total = np.sum(a, dtype=np.float64)
        digest.update(repr((a.size, total)).encode())
        digest.update(np.ascontiguousarray(a.flat[::step]).tobytes())
    return digest.hexdigest()[:24]


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

    def data_token(self) -> str:
        """A cheap digest that changes when the values change (:func:`content_token`)."""
        return content_token(self.array)

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
