"""In-memory inputs: NumPy, scipy.sparse (matrices and arrays) and Dask arrays."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from functools import singledispatch
from typing import TYPE_CHECKING, Any

import dask.array as da
import numpy as np
import scipy.sparse as sp
from dask.highlevelgraph import HighLevelGraph

from dask_cellucid.errors import UnsupportedInputError

from ._base import Source

if TYPE_CHECKING:
    from collections.abc import Sequence


class _Sliceable:
    """An in-memory matrix as dask's ``from_array`` sees it, minus ``.copy()``.

    ``from_array`` defensively copies any array-like that has ``.copy()``: a
    second whole matrix in memory (measured: +122 MiB on a 128 MiB CSC input)
    and a serial pass before the first task. Block tasks only slice it. In a
    graph layer written here it is one opaque value that the tasks read
    (``._x``).
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
    def resident(self) -> Any:
        return self.array

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

    def resident(self) -> Any:
        return self.array

    def bytes_per_value(self) -> float:
        # dense codes/float32 out + stored values (value, index, float32/64 temporaries)
        density = self.array.nnz / max(1, self.shape[0] * self.shape[1])
        return 4 + density * (self.dtype.itemsize + 4 + 4 + 8 + 8)

    def column_blocks(self, columns: Sequence[int], block_sizes: Sequence[int]) -> da.Array:
        x = self.array
        meta = sp.csc_matrix((0, 0), dtype=x.dtype)
        cols = np.asarray(columns, dtype=np.int64)
        if x.format != "csr":
            # one conversion to CSC (none for CSC input); after it every column
            # block is a view
            csc = sp.csc_matrix(x)
            if list(columns) != list(range(csc.shape[1])):
                csc = csc[:, cols]
            return _csc_column_blocks(csc, block_sizes, meta)
        return _csr_column_blocks(x, cols, block_sizes, meta)

    def row_blocks(self, values_per_block: int) -> da.Array | None:
        x = self.array
        if x.format != "csr":
            return None
        name, source, layer = _new_layer("cellucid-rows", x)
        ranges = _row_ranges(x.indptr, values_per_block)
        for i, (r0, r1) in enumerate(ranges):
            layer[(name, i, 0)] = (_row_view, source, r0, r1)
        chunks = (tuple(r1 - r0 for r0, r1 in ranges), (x.shape[1],))
        graph = HighLevelGraph.from_collections(name, layer, dependencies=())
        return da.Array(graph, name, chunks, meta=sp.csr_matrix((0, 0), dtype=x.dtype))


def _csc_column_blocks(csc: sp.csc_matrix, block_sizes: Sequence[int], meta: Any) -> da.Array:
    """Column blocks of a CSC matrix, each a view of its arrays.

    Slicing through ``from_array`` would copy every block (scipy's
    ``csc[:, a:b]``: 0.15 CPU-s for the 16 M stored values of the benchmark's
    M). Whether a block is canonical is left to the block task
    (:func:`dask_cellucid.kernels.encode_block` checks it, in parallel, and
    canonicalises a copy: the views share the caller's arrays).
    """
    name, source, layer = _new_layer("cellucid-csc", csc)
    starts = _block_starts(block_sizes)
    for k in range(len(block_sizes)):
        layer[(name, 0, k)] = (_view_of_columns, source, int(starts[k]), int(starts[k + 1]))
    return _column_block_array(name, layer, csc.shape[0], block_sizes, meta)


def _new_layer(prefix: str, x: Any) -> tuple[str, str, dict[Any, Any]]:
    """A fresh array name, and a graph layer holding ``x`` under a key of its own.

    ``x`` is wrapped so that Dask treats it as one opaque value.
    """
    name = f"{prefix}-{uuid.uuid4().hex}"
    source = f"{name}-input"
    return name, source, {source: _Sliceable(x)}


def _block_starts(block_sizes: Sequence[int]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(block_sizes)]).astype(int)


def _column_block_array(
    name: str, layer: dict[Any, Any], n_rows: int, block_sizes: Sequence[int], meta: Any
) -> da.Array:
    """The Dask array whose block ``k`` is ``layer[(name, 0, k)]``."""
    graph = HighLevelGraph.from_collections(name, layer, dependencies=())
    chunks = ((n_rows,), tuple(int(n) for n in block_sizes))
    return da.Array(graph, name, chunks, meta=meta)


def _row_view(source: _Sliceable, r0: int, r1: int) -> sp.csr_matrix:
    """Rows ``r0:r1`` of a CSR matrix as views of its arrays (scipy's slice copies them)."""
    x = source._x
    p0, p1 = int(x.indptr[r0]), int(x.indptr[r1])
    view = sp.csr_matrix((r1 - r0, x.shape[1]), dtype=x.dtype)
    view.data, view.indices = x.data[p0:p1], x.indices[p0:p1]
    view.indptr = x.indptr[r0 : r1 + 1] - x.indptr.dtype.type(p0)
    return view


def _view_of_columns(source: _Sliceable, a: int, b: int) -> sp.csc_matrix:
    return _column_slice(source._x, a, b, canonical=False)


def _csr_column_blocks(
    x: sp.csr_matrix, cols: np.ndarray, block_sizes: Sequence[int], meta: Any
) -> da.Array:
    """Column blocks of a CSR matrix, converted to CSC by the tasks, a group at a time.

    A whole ``tocsc()`` would hold a second copy of the matrix and run serially
    before the first task. Instead the matrix is converted in a few column
    groups; a group's blocks are views of its CSC arrays. The graph is written
    directly (``dask.delayed`` and ``concatenate`` cost a few ms a task, serially).
    """
    name, source, layer = _new_layer("cellucid-csr", x)
    starts = _block_starts(block_sizes)
    n_blocks = len(block_sizes)
    per_group = -(-n_blocks // min(n_blocks, _CSR_GROUPS))
    first_blocks = range(0, n_blocks, per_group)
    spans = [(starts[k], starts[min(k + per_group, n_blocks)]) for k in first_blocks]
    if _row_table_applies(x, cols):
        # Sorted rows: one shared pass finds where every row enters every
        # group, so a group costs only its own entries (not a full pass). A
        # column may end one group and start the next (the store's segments
        # share the gene across a chunk boundary): bounds are the groups'
        # first columns and ends, each once.
        ranges = [(int(cols[a]), int(cols[b - 1]) + 1) for a, b in spans]
        bounds = sorted({c for r in ranges for c in r})
        at = {c: i for i, c in enumerate(bounds)}
        table = []
        for i, (r0, r1) in enumerate(_row_ranges(x.indptr)):
            table.append((f"{name}-rows", i))
            layer[table[-1]] = (_row_starts, source, r0, r1, bounds)
        for g, (a, b) in enumerate(spans):
            lo, hi = at[ranges[g][0]], at[ranges[g][1]]
            layer[(f"{name}-group", g)] = (_csc_of_group, source, table, lo, hi, cols[a:b])
    else:
        for g, (a, b) in enumerate(spans):
            layer[(f"{name}-group", g)] = (_csc_of_columns, source, cols[a:b])
    for g, k0 in enumerate(first_blocks):
        for k in range(k0, min(k0 + per_group, n_blocks)):
            a, b = starts[k] - spans[g][0], starts[k + 1] - spans[g][0]
            layer[(name, 0, k)] = (_column_slice, (f"{name}-group", g), int(a), int(b))
    return _column_block_array(name, layer, x.shape[0], block_sizes, meta)


# CSR inputs are converted in at most this many column groups, in parallel by
# the tasks: a group holds about 1/10 of the matrix (two or three at a time),
# against a whole second copy for one tocsc(); fewer groups cost less CPU, more
# cost less memory (measured trade-off: benchmarks/README.md).
_CSR_GROUPS = 10
# Stored values per task of the row-start table, and per step inside one.
_TABLE_PART_VALUES = 1 << 22
_TABLE_STEP_VALUES = 1 << 20


def _row_table_applies(x: sp.csr_matrix, cols: np.ndarray) -> bool:
    """Whether :func:`_csc_of_group` can serve ``x``: sorted rows, increasing
    columns, positions that fit the indices' dtype (scipy slices with one)."""
    return (
        x.indices.dtype in (np.int32, np.int64)
        and x.nnz <= np.iinfo(x.indices.dtype).max
        and bool(np.all(np.diff(cols) >= 0))
        and bool(x.has_sorted_indices)  # scipy checks once and caches the answer
    )


def _row_ranges(indptr: np.ndarray, values_per_part: int | None = None) -> list[tuple[int, int]]:
    """Row ranges of about ``values_per_part`` (:data:`_TABLE_PART_VALUES`) stored values each."""
    n_rows, nnz = len(indptr) - 1, int(indptr[-1])
    per = values_per_part or _TABLE_PART_VALUES
    n_parts = max(1, min(n_rows, -(-nnz // max(1, per))))
    edges = np.searchsorted(indptr, np.linspace(0, nnz, n_parts + 1)[1:-1])
    edges = np.unique(np.concatenate([[0], np.clip(edges, 0, n_rows), [n_rows]]))
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges)]


def _row_starts(
    source: _Sliceable,
    r0: int,
    r1: int,
    bounds: Sequence[int],
    step_values: int = _TABLE_STEP_VALUES,
) -> np.ndarray:
    """``out[r, g]``: the position of row ``r0 + r``'s first stored column ``>= bounds[g]``.

    Rows must be sorted. Each row's (row, column) keys are sorted, so one
    ``searchsorted`` over a step of rows answers every row and bound at once.
    """
    x = source._x
    indptr, indices, n_cols = x.indptr, x.indices, x.shape[1]
    out = np.empty((r1 - r0, len(bounds)), indices.dtype)
    avg = max(1, int(indptr[r1] - indptr[r0]) // max(1, r1 - r0))
    step = max(1, step_values // avg)
    key_dtype = np.int32 if (step + 1) * (n_cols + 1) < np.iinfo(np.int32).max else np.int64
    b = np.asarray(bounds, key_dtype)
    for s0 in range(r0, r1, step):
        s1 = min(r1, s0 + step)
        p0, p1 = int(indptr[s0]), int(indptr[s1])
        base = np.arange(s1 - s0, dtype=key_dtype) * key_dtype(n_cols + 1)
        key = np.repeat(base, np.diff(indptr[s0 : s1 + 1]))
        key += indices[p0:p1]
        queries = base[:, None] + b[None, :]
        out[s0 - r0 : s1 - r0] = np.searchsorted(key, queries.ravel()).reshape(queries.shape)
        out[s0 - r0 : s1 - r0] += p0
    return out


def _csc_of_group(
    source: _Sliceable, table: list[np.ndarray], lo: int, hi: int, cols: np.ndarray
) -> sp.csc_matrix:
    """Columns ``cols`` (non-decreasing) of a CSR matrix with sorted rows, as canonical CSC.

    Row ``r``'s entries in the group are ``[table[r, lo], table[r, hi])``.
    Interleaved with the gaps between them, these ranges form a valid
    ``indptr`` over the matrix's own arrays, so a strided row slice copies out
    exactly the group's entries: work in proportion to the group, not the matrix.
    """
    x = source._x
    n = x.shape[0]
    starts = np.concatenate([part[:, lo] for part in table])
    ends = np.concatenate([part[:, hi] for part in table])
    indptr = np.empty(2 * n + 2, x.indices.dtype)
    indptr[0], indptr[-1] = 0, x.nnz
    indptr[1:-1:2], indptr[2:-1:2] = starts, ends
    # Set, not passed to the constructor: it would scan int64 indices for their
    # range (a pass over the matrix) and maybe downcast them (a copy).
    ranges = sp.csr_matrix((2 * n + 1, x.shape[1]), dtype=x.dtype)
    ranges.data, ranges.indices, ranges.indptr = x.data, x.indices, indptr
    csc = sp.csc_matrix(ranges[1::2])
    csc.sum_duplicates()
    a, b = int(cols[0]), int(cols[-1]) + 1
    csc = _column_slice(csc, a, b)
    contiguous = b - a == len(cols) and bool(np.all(np.diff(cols) == 1))
    return csc if contiguous else sp.csc_matrix(csc[:, cols - a])


def _csc_of_columns(source: _Sliceable, cols: np.ndarray) -> sp.csc_matrix:
    """Columns ``cols`` of any CSR matrix as canonical CSC (a pass over every stored value)."""
    a, b = int(cols[0]), int(cols[-1]) + 1
    key = slice(a, b) if b - a == len(cols) and (np.diff(cols) == 1).all() else cols
    csc = sp.csc_matrix(source[:, key])
    csc.sum_duplicates()
    return csc


def _column_slice(csc: sp.csc_matrix, a: int, b: int, *, canonical: bool = True) -> sp.csc_matrix:
    """Columns ``a:b`` of a CSC matrix as views of its arrays (no copy).

    ``canonical`` says the matrix is canonical (sorted, no duplicates), so the
    view need not be checked again.
    """
    if canonical and a == 0 and b == csc.shape[1]:
        return csc
    p0, p1 = int(csc.indptr[a]), int(csc.indptr[b])
    # Set, not passed to the constructor: its check_format "prunes" an array
    # that is a view of one more than twice its size, i.e. copies it.
    view = sp.csc_matrix((csc.shape[0], b - a), dtype=csc.dtype)
    view.data, view.indices = csc.data[p0:p1], csc.indices[p0:p1]
    view.indptr = csc.indptr[a : b + 1] - csc.indptr.dtype.type(p0)
    if canonical:
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
def memory_source(obj: Any) -> Source:
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


@memory_source.register
def _(obj: np.ndarray) -> Source:
    _check_matrix(obj)
    return NumpySource(obj, description=f"numpy {obj.dtype} {obj.shape}")


@memory_source.register
def _(obj: da.Array) -> Source:
    _check_matrix(obj)
    if any(np.isnan(c) for c in obj.shape):
        msg = "gene_expression has unknown chunk sizes; call .compute_chunk_sizes() first."
        raise UnsupportedInputError(msg)
    return DaskSource(obj, description=f"dask {obj.dtype} {obj.shape}")
