"""The real 10x dataset shipped in scanpy's wheel, exported and read back."""

from __future__ import annotations

import warnings
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest

from dask_cellucid import prepare, read_genes, read_manifest

anndata = pytest.importorskip("anndata")


@pytest.fixture(scope="module")
def pbmc():
    spec = find_spec("scanpy")
    if spec is None or spec.origin is None:
        pytest.skip("scanpy is not installed")
    path = Path(spec.origin).parent / "datasets" / "10x_pbmc68k_reduced.h5ad"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the file predates anndata's encoding metadata
        return anndata.read_h5ad(path)


@pytest.mark.parametrize("layout", ["key", "index"])
@pytest.mark.parametrize(("matrix", "bits"), [("X", 8), ("raw", 16), ("X", None)])
def test_pbmc68k_round_trip(tmp_path: Path, pbmc, layout, matrix, bits) -> None:
    if matrix == "X":
        X, var = pbmc.X, pbmc.var  # dense, scaled: negatives and a max_value clip
        assert X.min() < 0
    else:
        X, var = pbmc.raw.X, pbmc.raw.var  # sparse CSR, log-normalised
    result = prepare(
        X,
        var,
        out_dir=tmp_path,
        layout=layout,
        var_quantization=bits,
        compression=6,
        X_umap_2d=pbmc.obsm["X_umap"],
        dataset_name="pbmc68k_reduced",
    )
    assert result.n_genes == X.shape[1] == len(read_manifest(tmp_path)["fields"])
    dense = np.asarray(X.todense() if hasattr(X, "todense") else X, dtype=np.float32)
    got = read_genes(tmp_path, list(var.index))
    top = {8: 254, 16: 65534}.get(bits)
    worst = 0.0
    for j, gene in enumerate(var.index):
        col = dense[:, j]
        if bits is None:
            np.testing.assert_array_equal(got[gene], col)
            continue
        step = (col.max() - col.min()) / top
        if step == 0:
            np.testing.assert_array_equal(got[gene], col)
            continue
        # half a step, plus the float32 rounding of the decoded value the viewer keeps
        err = np.abs(got[gene].astype(np.float64) - col) - np.abs(col) * 2.0**-24
        worst = max(worst, float(err.max() / step))
    assert worst <= 0.5 + 1e-9
