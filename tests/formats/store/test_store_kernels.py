"""formats/store: segments and kernels, pure (no Dask, no storage)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from numcodecs import Shuffle, Zlib

from dask_cellucid.formats.store import kernels, segments


@pytest.mark.parametrize("itemsize", [4, 8])
def test_encode_chunk_is_numcodecs_bytes(itemsize):
    rng = np.random.default_rng(itemsize)
    values = rng.integers(0, 1000, size=70).astype(f"i{itemsize}")
    got = kernels.encode_chunk(values, (100,), shuffle=True)
    padded = np.zeros(100, dtype=values.dtype)
    padded[:70] = values
    want = Zlib(level=6).encode(Shuffle(elementsize=itemsize).encode(padded))
    assert got == bytes(want)
    back = kernels.decode_chunk(got, values.dtype.str, (100,), shuffle=True)
    np.testing.assert_array_equal(back, padded)
    plain = kernels.encode_chunk(values.astype(np.float32), (70,), shuffle=False)
    assert plain == bytes(Zlib(level=6).encode(values.astype(np.float32)))


def test_all_zero_chunk_is_not_written():
    assert kernels.encode_chunk(np.zeros(5, np.int32), (8,), shuffle=True) is None


def test_canonical_csc_sums_duplicates_drops_zeros_and_leaves_input():
    m = sp.csc_matrix((np.array([1.0, 2.0, 0.0, -1.0]), (np.array([2, 2, 0, 1]), [0, 0, 1, 1])))
    before = m.copy()
    out = kernels.canonical_csc(m)
    np.testing.assert_array_equal(out.toarray(), before.toarray())
    assert out.nnz == 2 and out.has_canonical_format
    np.testing.assert_array_equal(m.data, before.data)  # not changed in place


def test_block_stats_counts_bad_and_float32_zeros():
    x = np.array([[1.0, np.nan, 1e-60], [0.0, 2.0, 3.0], [4.0, np.inf, 0.0]])
    s = kernels.block_stats(sp.csr_matrix(x), 7, sparse=True)
    assert s.start == 7
    np.testing.assert_array_equal(s.nnz, [2, 3, 2])
    np.testing.assert_array_equal(s.nnz32, [2, 3, 1])  # 1e-60 is 0 in float32
    np.testing.assert_array_equal(s.bad, [0, 2, 0])
    d = kernels.block_stats(np.array([[1e39, 1.0]]), 0, sparse=False)
    np.testing.assert_array_equal(d.bad, [1, 0])


_SPECIAL = [0.0, np.nan, np.inf, -np.inf, 1e-60, 1e39, -3.0, 2.0**25, 0.5]


@settings(max_examples=150, deadline=None)
@given(
    n_rows=st.integers(1, 30),
    n_cols=st.integers(1, 12),
    density=st.floats(0, 1),
    seed=st.integers(0, 2**32 - 1),
    dtype=st.sampled_from(["float64", "float32", "int64", "int32", "bool"]),
    cuts=st.sets(st.integers(1, 29), max_size=4),
    keep=st.lists(st.booleans(), min_size=12, max_size=12),
)
def test_row_block_stats_summed_equal_the_column_pass(
    n_rows, n_cols, density, seed, dtype, cuts, keep
):
    # by rows, in any cut, the first pass counts what it counts by columns
    rng = np.random.default_rng(seed)
    x = sp.random(n_rows, n_cols, density=density, format="csr", random_state=seed)
    if dtype.startswith("float"):
        special = rng.random(x.nnz) < 0.3
        x.data[special] = rng.choice(_SPECIAL, special.sum())
        if dtype == "float32":
            with np.errstate(over="ignore"):
                x = x.astype(np.float32)
    else:
        x.data = np.round(x.data * 9 - 3)  # explicit zeros among them
        x = x.astype(dtype)
    if seed % 3 == 0:  # every entry stored twice: duplicates the first pass must sum
        x = sp.csr_matrix(
            (np.repeat(x.data, 2), np.repeat(x.indices, 2), x.indptr * 2), shape=x.shape
        )
    columns = np.flatnonzero(keep[:n_cols]) if seed % 2 else np.arange(n_cols)
    if not len(columns):
        columns = np.arange(n_cols)
    want = kernels.block_stats(x[:, columns], 0, sparse=True)

    positions = None  # every column, in order
    if not np.array_equal(columns, np.arange(n_cols)):
        positions = np.full(n_cols, -1, dtype=np.int64)
        positions[columns] = np.arange(len(columns))
    edges = sorted({0, n_rows, *(c for c in cuts if c < n_rows)})
    parts = [
        kernels.row_block_stats(x[a:b], positions, len(columns))
        for a, b in itertools.pairwise(edges)
    ]
    got = kernels.sum_stats(parts)
    for field in ("nnz", "nnz32", "bad"):
        np.testing.assert_array_equal(getattr(got, field), getattr(want, field), err_msg=field)
    assert got.integral == want.integral
    assert got.max_abs == want.max_abs


def test_stored_dtype_rule():
    assert kernels.stored_dtype(np.dtype("int64"), integral=True, max_abs=2.0**24 + 1) == "float64"
    assert kernels.stored_dtype(np.dtype("int64"), integral=True, max_abs=2.0**24) == "float32"
    assert kernels.stored_dtype(np.dtype("float64"), integral=False, max_abs=1e30) == "float32"
    assert kernels.stored_dtype(np.dtype("float32"), integral=True, max_abs=1e30) == "float32"


@pytest.mark.parametrize("per", [1, 2, 5])
def test_sparse_segments_cover_every_chunk_once(per):
    counts = np.array([0, 5, 0, 0, 23, 1, 0, 9, 40, 0])
    indptr = np.concatenate([[0], np.cumsum(counts)])
    chunk = 8
    segs = segments.sparse_segments(indptr, chunk, per)
    covered = [c for s in segs for c in range(s.first_chunk, s.stop_chunk)]
    assert covered == list(range(-(-int(indptr[-1]) // chunk)))
    for s in segs:
        p0, p1 = s.first_chunk * chunk, min(s.stop_chunk * chunk, int(indptr[-1]))
        # its genes hold every position of its chunks, and it has no gene without one
        assert indptr[s.first_gene] <= p0 and indptr[s.stop_gene] >= p1
        assert indptr[s.first_gene + 1] > p0 and indptr[s.stop_gene - 1] < p1


def test_no_values_no_segment():
    assert segments.sparse_segments(np.zeros(4, np.int64), 8, 2) == []


def test_dense_segments():
    segs = segments.dense_segments(10, 3, 2)
    assert [(s.first_chunk, s.stop_chunk, s.first_gene, s.stop_gene) for s in segs] == [
        (0, 2, 0, 6),
        (2, 4, 6, 10),
    ]


@pytest.mark.parametrize("kind", ["continuous", "counts", "short"])
def test_libdeflate_values_chunks_decode_exactly(kind):
    # continuous floats take the level-1 path, counts level 6; both are plain zlib
    deflate = pytest.importorskip("deflate")
    rng = np.random.default_rng(1)
    n = 65536 if kind != "short" else 100
    if kind == "counts":
        values = rng.negative_binomial(2, 0.5, n).astype(np.float32)
    else:
        values = rng.random(n).astype(np.float32) * 7
    got = kernels.encode_chunk(values, (65536,), shuffle=False, codec="libdeflate")
    back = kernels.decode_chunk(got, "<f4", (65536,), shuffle=False)
    np.testing.assert_array_equal(back[:n], values)
    assert not back[n:].any()
    level6 = deflate.zlib_compress(np.pad(values, (0, 65536 - n)).tobytes(), 6)
    assert len(got) <= 1.01 * len(level6)
