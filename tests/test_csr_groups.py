"""CSR input converted to gene-column groups: the row-start table against scipy's own slicing."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from dask_cellucid.adapters import _memory
from dask_cellucid.testing import assert_matches_dense_export, random_matrix


@st.composite
def csr_and_groups(draw: st.DrawFn) -> tuple[sp.csr_matrix, np.ndarray, list[int]]:
    """A CSR matrix with sorted rows (some with duplicate entries), a column
    selection in increasing order and its split into consecutive groups (a
    column may end one group and start the next)."""
    n_rows = draw(st.integers(1, 40))
    n_cols = draw(st.integers(1, 30))
    density = draw(st.floats(0, 1))
    seed = draw(st.integers(0, 2**32 - 1))
    x = sp.random(n_rows, n_cols, density=density, format="csr", random_state=seed)
    # every item size the C scatter copies: 1, 2, 4 and 8 bytes
    x = x.astype(draw(st.sampled_from([np.float32, np.float64, np.int16, np.uint8])))
    if draw(st.booleans()):  # every entry stored twice: sorted, not canonical
        x = sp.csr_matrix(
            (np.repeat(x.data, 2), np.repeat(x.indices, 2), x.indptr * 2), shape=x.shape
        )
    if draw(st.booleans()):  # int64 positions, as scipy uses past 2**31 stored values
        x.indices, x.indptr = x.indices.astype(np.int64), x.indptr.astype(np.int64)
    keep = draw(st.lists(st.booleans(), min_size=n_cols, max_size=n_cols))
    cols = np.flatnonzero(keep) if any(keep) else np.arange(n_cols)
    cuts = draw(st.sets(st.integers(1, max(1, len(cols) - 1)), max_size=5))
    splits = sorted({0, len(cols), *(c for c in cuts if c < len(cols))})
    if draw(st.booleans()):
        # the store's segments: a column ends one group and starts the next
        groups = [cols[a:b] for a, b in itertools.pairwise(splits)]
        groups = [groups[0]] + [np.concatenate([[p[-1]], g]) for p, g in itertools.pairwise(groups)]
        cols = np.concatenate(groups)
        splits = [0, *np.cumsum([len(g) for g in groups]).tolist()]
    return x, cols, splits


@settings(max_examples=200, deadline=None)
@given(case=csr_and_groups(), step=st.integers(1, 64), parts=st.integers(1, 4))
def test_each_group_equals_scipys_column_slice(case, step, parts) -> None:
    x, cols, splits = case
    assert _memory._row_table_applies(x, cols)
    source = _memory._Sliceable(x)
    ranges = [(int(cols[a]), int(cols[b - 1]) + 1) for a, b in itertools.pairwise(splits)]
    bounds = sorted({c for r in ranges for c in r})
    edges = np.linspace(0, x.shape[0], parts + 1).astype(int)
    table = [
        _memory._row_starts(source, int(r0), int(r1), bounds, step_values=step)
        for r0, r1 in itertools.pairwise(edges)
        if r1 > r0
    ]
    for g, (a, b) in enumerate(itertools.pairwise(splits)):
        lo, hi = bounds.index(ranges[g][0]), bounds.index(ranges[g][1])
        got = _memory._csc_of_group(source, table, lo, hi, cols[a:b])
        want = sp.csc_matrix(x[:, cols[a:b]])
        want.sum_duplicates()
        assert got.shape == want.shape
        assert got.has_canonical_format
        np.testing.assert_array_equal(got.indptr, want.indptr)
        np.testing.assert_array_equal(got.indices, want.indices)
        np.testing.assert_array_equal(got.data, want.data)


def test_row_ranges_cover_every_row_once(monkeypatch) -> None:
    monkeypatch.setattr(_memory, "_TABLE_PART_VALUES", 10)
    x = random_matrix(300, 7, density=0.3, seed=2)
    ranges = _memory._row_ranges(x.indptr)
    assert len(ranges) > 5
    assert ranges[0][0] == 0 and ranges[-1][1] == x.shape[0]
    assert all(a < b and b == c for (a, b), (c, _) in itertools.pairwise(ranges))


def test_table_is_not_used_for_unsorted_rows() -> None:
    x = random_matrix(50, 9, density=0.5, seed=3)
    assert _memory._row_table_applies(x, np.arange(9))
    assert not _memory._row_table_applies(x, np.array([3, 1, 2]))
    rev = x.copy()
    for r in range(rev.shape[0]):  # reverse each row: the table would be wrong
        a, b = rev.indptr[r], rev.indptr[r + 1]
        rev.indices[a:b] = rev.indices[a:b][::-1].copy()
        rev.data[a:b] = rev.data[a:b][::-1].copy()
    rev.has_sorted_indices = False
    assert not _memory._row_table_applies(rev, np.arange(9))


@pytest.mark.parametrize("rows", ["sorted", "unsorted"])
@pytest.mark.parametrize("subset", [False, True])
def test_csr_export_equals_dense_export(tmp_path: Path, monkeypatch, rows, subset) -> None:
    # Both conversions (row table for sorted rows, scipy's slicing otherwise),
    # with groups of several blocks, all genes or a subset of them.
    monkeypatch.setattr(_memory, "_CSR_GROUPS", 3)
    x = random_matrix(90, 17, density=0.2, seed=4, negative=True)
    if rows == "unsorted":  # each row's entries in a random order
        order = np.random.default_rng(0).permutation
        for r in range(x.shape[0]):
            a, b = x.indptr[r], x.indptr[r + 1]
            p = a + order(b - a)
            x.indices[a:b], x.data[a:b] = x.indices[p], x.data[p]
        x.has_sorted_indices = False
    genes = [f"g{j}" for j in range(17)]
    opts = dict(var_quantization=8, compression=6, genes_per_block=2)
    if subset:
        opts["gene_identifiers"] = genes[1::3]
    assert_matches_dense_export(x, genes, tmp_path, **opts)
