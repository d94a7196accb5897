"""The spill path of a CSR file: shards, regroups, block files, and the read phase.

Every block read back from scratch must equal the same columns of the matrix
in memory, value for value and in canonical CSC order; the scratch folder
must be empty afterwards; progress reports the read phase.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import Any

import anndata as ad
import dask
import numpy as np
import pytest
import scipy.sparse as sp

from dask_cellucid import prepare
from dask_cellucid.adapters import _stack, as_source
from dask_cellucid.adapters._stack import put_piece, stacked_layout
from dask_cellucid.testing import random_matrix

N_CELLS, N_GENES = 1_003, 61


@pytest.fixture(scope="module")
def csr_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, sp.csr_matrix]:
    X = sp.csr_matrix(random_matrix(N_CELLS, N_GENES, density=0.15, seed=7, negative=True))
    # a few empty rows and columns, and a full one
    X = X.tolil()
    X[10:20, :] = 0
    X[:, 5] = 0
    X[:, 40] = np.arange(1, N_CELLS + 1, dtype=np.float32)[:, None]
    X = sp.csr_matrix(X.tocsr(), dtype=np.float32)
    X.sort_indices()
    path = tmp_path_factory.mktemp("spill") / "x.h5ad"
    a = ad.AnnData(X)
    a.var_names = [f"G{j}" for j in range(N_GENES)]
    a.write_h5ad(path)
    return path, X


def _pieces(rng: np.random.Generator, n_cols: int) -> list[sp.csc_matrix]:
    out = []
    for rows in (0, 1, 7, 30, 2):
        density = rng.choice([0.0, 0.1, 0.5, 1.0])
        out.append(sp.random(rows, n_cols, density=density, format="csc", random_state=rng))
    return out


@pytest.mark.parametrize("copy", ["by-value", "by-column"])
@pytest.mark.parametrize("seed", range(5))
def test_stacked_pieces_equal_vstack(seed: int, copy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pieces copied in, in any order, give scipy's vstack (canonical CSC) exactly."""
    monkeypatch.setattr(_stack, "_SLICE_COPY_MIN", 10**9 if copy == "by-value" else 0)
    rng = np.random.default_rng(seed)
    n_cols = 9
    pieces = _pieces(rng, n_cols)
    counts = np.stack([np.diff(p.indptr) for p in pieces])
    out = stacked_layout(counts, np.dtype(np.float64))
    row0 = np.cumsum([0, *(p.shape[0] for p in pieces)])
    for k in rng.permutation(len(pieces)):
        p = pieces[k]
        # as read from a shard: a range of a wider piece, so indptr starts past 0
        shift = int(rng.integers(0, 50))
        indices = p.indices.astype(np.uint16) if k % 2 else p.indices  # as in a shard
        put_piece(out, int(k), p.indptr + shift, indices, p.data, int(row0[k]))
    want = sp.csc_matrix(sp.vstack(pieces, format="csc"))
    want.sort_indices()
    np.testing.assert_array_equal(out.indptr, want.indptr)
    np.testing.assert_array_equal(out.indices, want.indices)
    np.testing.assert_array_equal(out.data, want.data)


def _blocks(src: Any, cols: list[int], sizes: list[int]) -> list[sp.csc_matrix]:
    x = src.column_blocks(cols, sizes)
    starts = np.cumsum([0, *sizes])
    return [
        sp.csc_matrix(x[:, a:b].compute(scheduler="threads")) for a, b in itertools.pairwise(starts)
    ]


@pytest.mark.parametrize("rows", ["uint16", "int32"])
@pytest.mark.parametrize("order", ["all", "subset"])
def test_spilled_blocks_equal_the_matrix(
    tmp_path: Path,
    csr_file: tuple[Path, sp.csr_matrix],
    order: str,
    rows: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Many shards and several groups of several blocks: every block exact."""
    from dask_cellucid.adapters import _backed

    monkeypatch.setattr(_backed, "_U16_ROWS", 2**16 if rows == "uint16" else 0)
    path, X = csr_file
    rng = np.random.default_rng(3)
    cols = list(range(N_GENES)) if order == "all" else [int(c) for c in rng.permutation(50)]
    sizes = [3] * (len(cols) // 3) + ([len(cols) % 3] if len(cols) % 3 else [])
    scratch = tmp_path / "scratch"
    with dask.config.set({"cellucid.csr-strategy": "spill", "cellucid.scratch": str(scratch)}):
        src = as_source(str(path), max_memory=80_000)
        starts = [0, *np.cumsum(sizes).tolist()]
        groups = src.groups(starts)
        n_slabs = -(-N_CELLS // src.slab_rows())
        assert n_slabs > 3
        assert len(groups) > 2
        assert any(b1 - b0 > 1 for b0, b1 in groups)
        assert [b for g in groups for b in range(*g)] == list(range(len(sizes)))
        got = _blocks(src, cols, sizes)
    assert src.chosen == "spill"
    want = X.tocsc()
    for block, (a, b) in zip(got, itertools.pairwise(starts), strict=True):
        ref = sp.csc_matrix(want[:, cols[a:b]])
        ref.sort_indices()
        assert block.has_canonical_format or block.has_sorted_indices
        np.testing.assert_array_equal(block.indptr, ref.indptr)
        np.testing.assert_array_equal(block.indices, ref.indices)
        np.testing.assert_array_equal(block.data, ref.data)
    del src
    import gc

    gc.collect()
    assert list(scratch.iterdir()) == []


@pytest.mark.filterwarnings("ignore:1 gene")
def test_read_phase_is_reported(
    tmp_path: Path, csr_file: tuple[Path, sp.csr_matrix], caplog: pytest.LogCaptureFixture
) -> None:
    """The one pass over the file is a phase of its own, logged when it ends."""
    path, _ = csr_file
    with (
        dask.config.set({"cellucid.csr-strategy": "spill"}),
        caplog.at_level(logging.INFO, logger="dask_cellucid"),
    ):
        src = as_source(str(path), max_memory=80_000)
        prepare(src, out_dir=tmp_path / "o", var_quantization=8, genes_per_block=4)
    n_slabs = -(-N_CELLS // src.slab_rows())
    done = [r.getMessage() for r in caplog.records if "read/transpose done" in r.getMessage()]
    assert len(done) == 1
    assert done[0].startswith(f"read/transpose done: {n_slabs} read tasks")
