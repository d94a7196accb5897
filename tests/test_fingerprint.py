"""A resumed export never reuses blocks written from other data."""

from __future__ import annotations

import time
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import scipy.sparse as sp

from dask_cellucid import TargetExistsError, prepare, read_gene
from dask_cellucid.adapters import as_source
from dask_cellucid.adapters._base import content_token
from dask_cellucid.testing import random_matrix

X = random_matrix(60, 12, density=0.3, seed=4)
GENES = [f"G{j}" for j in range(12)]


@pytest.mark.parametrize(
    "make",
    [lambda m: m.toarray(), sp.csr_matrix, sp.coo_matrix, lambda m: np.asfortranarray(m.toarray())],
)
def test_token_follows_the_values(make) -> None:
    a = make(X)
    assert content_token(a) == content_token(make(X.copy()))
    changed = X.copy()
    changed.data[7] += 1.0  # one value in one cell
    assert content_token(make(changed)) != content_token(a)
    assert content_token(make(X * 2)) != content_token(a)


@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_token_sees_values_that_trade_places(layout) -> None:
    # Sums and samples miss two values swapped between cells; a checksum does not.
    rng = np.random.default_rng(0)
    base = rng.random((3000, 1200)).astype(np.float32)
    swapped = base.copy()
    swapped[1, 4], swapped[2001, 8] = base[2001, 8], base[1, 4]

    def arrange(m):
        if layout == "F":
            return np.asfortranarray(m)
        return m[:, ::2] if layout == "strided" else m

    assert content_token(arrange(swapped)) != content_token(arrange(base))
    assert content_token(arrange(base.copy())) == content_token(arrange(base))
    # the same values in another memory layout name the same data
    assert content_token(np.asfortranarray(base)) == content_token(base)


def test_dask_arrays_are_named_without_computing() -> None:
    calls = []

    def spy(b):
        calls.append(1)
        return b

    x = da.from_array(X.toarray(), chunks=(-1, 4)).map_blocks(spy, meta=np.array((), np.float32))
    calls.clear()
    assert content_token(x) == content_token(x)
    assert not calls


def _interrupted(out: Path, values: np.ndarray) -> None:
    def maybe_fail(b, block_info=None):
        if block_info[0]["chunk-location"][1] == 2:
            time.sleep(1.0)
            msg = "interrupted"
            raise RuntimeError(msg)
        return b

    x = da.from_array(values, chunks=(-1, 4)).map_blocks(maybe_fail, dtype=values.dtype)
    with pytest.raises(RuntimeError):
        prepare(x, GENES, out_dir=out, genes_per_block=4, scheduler="threads", num_workers=3)


def test_changed_values_are_not_resumed(tmp_path: Path) -> None:
    _interrupted(tmp_path, X.toarray())
    renormalised = X.toarray() * 2
    with pytest.raises(TargetExistsError, match="input data"):
        prepare(renormalised, GENES, out_dir=tmp_path, genes_per_block=4)
    result = prepare(renormalised, GENES, out_dir=tmp_path, genes_per_block=4, force=True)
    assert result.n_genes_written == 12
    np.testing.assert_array_equal(read_gene(tmp_path, "G1"), renormalised[:, 1])


def test_rewritten_file_is_not_resumed(tmp_path: Path) -> None:
    ad = pytest.importorskip("anndata")
    import pandas as pd

    path = tmp_path / "data.h5ad"
    ad.AnnData(X=X.copy(), var=pd.DataFrame(index=GENES)).write_h5ad(path)
    before = as_source(str(path)).data_token()
    assert as_source(str(path)).data_token() == before
    time.sleep(0.01)
    ad.AnnData(X=X * 2, var=pd.DataFrame(index=GENES)).write_h5ad(path)
    assert as_source(str(path)).data_token() != before
