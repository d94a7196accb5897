"""formats/store: segments and kernels, pure (no Dask, no storage)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
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
