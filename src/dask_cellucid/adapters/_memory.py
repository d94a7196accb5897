"""In-memory inputs: NumPy, scipy.sparse (matrices and arrays) and Dask arrays."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from functools import singledispatch
from typing import TYPE_CHECKING, Any

import dask
import dask.array as da
import numpy as np
import scipy.sparse as sp

from dask_cellucid.errors import UnsupportedInputError

from ._base import Source

if TYPE_CHECKING:
    from collections.abc import Sequence


class _Sliceable:
    """An in-memory matrix as dask's ``from_array`` sees it, minus ``.copy()``.

    ``from_array`` defensively copies any array-like that has ``.copy()``: a
    second whole matrix in memory (measured: +122 MiB on a 128 MiB CSC input)
    and a serial pass before the first task. Block tasks only slice it.
    """

    def __init__(self, x: Any) -> None:
        self._x = x
        self.shape = x.shape
        self.dtype = x.dtype
        self.ndim = x.ndim

    def __getitem__(self, key: Any) -> Any:
        return self._x[key]


def _column_chunks(x: Any, block_sizes: Sequence[int], meta: Any) -> da.Array:
    return da.from_array(
        _Sliceable(x),
        chunks=((x.shape[0],), tuple(block_sizes)),
        asarray=False,
        name=False,
        meta=meta,
    )


@dataclass
class NumpySource(Source):
    def column_blocks(self, columns: Sequence[int], block_sizes: Sequence[int]) -> da.Array:
        x = self.array
        if list(columns) != list(range(x.shape[1])):
            x = x[:, np.asarray(columns, dtype=np.int64)]
        return _column_chunks(np.asarray(x), block_sizes, np.empty((0, 0), x.dtype))


@dataclass
class ScipySource(Source):
    @property
    def is_sparse(self) -> bool:
        return True

    def bytes_per_value(self) -> float:
        # dense codes/float32 out + stored values (value, index, float32/64 temporaries)
        density = self.array.nnz / max(1, self.shape[0] * self.shape[1])
        return 4 + density * (self.dtype.itemsize + 4 + 4 + 8 + 8)

    def column_blocks(self, columns: Sequence[int], block_sizes: Sequence[int]) -> da.Array:
        x = self.array
        meta = sp.csc_matrix((0, 0), dtype=x.dtype)
        cols = np.asarray(columns, dtype=np.int64)
        if x.format != "csr":
            # one conversion to CSC; after it every column block is a cheap slice
            csc = sp.csc_matrix(x)
            if list(columns) != list(range(csc.shape[1])):
                csc = csc[:, cols]
            csc.sum_duplicates()
            return _column_chunks(csc, block_sizes, meta)
        # CSR: a column slice costs a pass over every stored value, and a whole
        # CSC copy doubles the matrix in memory and converts it serially before
        # the first task. So the tasks convert it in a few column groups: each
        # group is one pass and one CSC conversion, its blocks are cheap slices.
        source = dask.delayed(_Sliceable(x), name=f"cellucid-input-{uuid.uuid4().hex}")
        starts = np.concatenate([[0], np.cumsum(block_sizes)]).astype(int)
        n_blocks = len(block_sizes)
        per_group = -(-n_blocks // min(n_blocks, _CSR_GROUPS))
        pieces = []
        for g0 in range(0, n_blocks, per_group):
            g1 = min(g0 + per_group, n_blocks)
            a = starts[g0]
            group = dask.delayed(_csc_of_columns, pure=False)(source, cols[a : starts[g1]])
            for k in range(g0, g1):
                block = dask.delayed(_column_slice, pure=False)(
                    group, starts[k] - a, starts[k + 1] - a
                )
                shape = (x.shape[0], int(block_sizes[k]))
                pieces.append(da.from_delayed(block, shape=shape, dtype=x.dtype, meta=meta))
        return da.concatenate(pieces, axis=1)


# CSR inputs are converted in at most this many column groups, each a pass over
# the stored values run in parallel by the tasks: a group holds about 1/10 of
# the matrix (two or three at a time), against a whole second copy for one
# tocsc(). On the benchmark's M dataset (100k x 2k, 8 %, 38 blocks), medians
# of 4 runs: 19 groups 2.51 s and 288 MiB peak RSS, 10 groups 2.26 s and
# 324 MiB (the reference writer: 344 MiB), 7 groups 2.19 s and 343 MiB.
_CSR_GROUPS = 10


def _csc_of_columns(source: _Sliceable, cols: np.ndarray) -> sp.csc_matrix:
    """Columns ``cols`` of a CSR matrix as canonical CSC (one pass, one conversion)."""
    a, b = int(cols[0]), int(cols[-1]) + 1
    key = slice(a, b) if b - a == len(cols) and (np.diff(cols) == 1).all() else cols
    csc = sp.csc_matrix(source[:, key])
    csc.sum_duplicates()
    return csc


def _column_slice(csc: sp.csc_matrix, a: int, b: int) -> sp.csc_matrix:
    """Columns ``a:b`` of a canonical CSC matrix as views of its arrays (no copy)."""
    if a == 0 and b == csc.shape[1]:
        return csc
    p0, p1 = int(csc.indptr[a]), int(csc.indptr[b])
    view = sp.csc_matrix(
        (csc.data[p0:p1], csc.indices[p0:p1], csc.indptr[a : b + 1] - p0),
        shape=(csc.shape[0], b - a),
        copy=False,
    )
    view.has_canonical_format = True
    return view


@dataclass
class DaskSource(Source):
    @property
    def is_sparse(self) -> bool:
        return sp.issparse(getattr(self.array, "_meta", None))


def check_numeric(dtype: np.dtype[Any], what: str) -> None:
    if not (np.issubdtype(dtype, np.number) or dtype.kind == "b") or np.issubdtype(
        dtype, np.complexfloating
    ):
        msg = (
            f"{what} has dtype {dtype}, which is not a real number type. Gene expression must "
            "be integer or floating point; convert it with .astype('float32')."
        )
        raise UnsupportedInputError(msg)


@singledispatch
def _wrap(obj: Any) -> Source:
    """Wrap a matrix as a :class:`Source`; raise a clear error for anything else."""
    if sp.issparse(obj):  # scipy's sparse arrays and matrices share no single base class
        return _sparse(obj)
    msg = (
        f"gene_expression of type {type(obj).__module__}.{type(obj).__name__} is not supported. "
        "Pass a NumPy array, a scipy.sparse matrix or array, a Dask array, an AnnData, or a "
        "path to an .h5ad or .zarr file."
    )
    raise UnsupportedInputError(msg)


def _check_matrix(obj: Any) -> None:
    check_numeric(obj.dtype, "gene_expression")
    if obj.ndim != 2:
        msg = f"gene_expression must be 2-D (cells x genes), got shape {obj.shape}."
        raise UnsupportedInputError(msg)


def _sparse(obj: Any) -> Source:
    _check_matrix(obj)
    return ScipySource(obj, description=f"scipy.sparse {obj.format} {obj.shape}")


@_wrap.register
def _(obj: np.ndarray) -> Source:
    _check_matrix(obj)
    return NumpySource(obj, description=f"numpy {obj.dtype} {obj.shape}")


@_wrap.register
def _(obj: da.Array) -> Source:
    _check_matrix(obj)
    if any(np.isnan(c) for c in obj.shape):
        msg = "gene_expression has unknown chunk sizes; call .compute_chunk_sizes() first."
        raise UnsupportedInputError(msg)
    return DaskSource(obj, description=f"dask {obj.dtype} {obj.shape}")
