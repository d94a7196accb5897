"""Differential tests against the reference writer, cellucid 0.9.2 (``index`` layout).

cellucid 0.9.2 writes the ``index`` layout, truncates codes (our
``rounding="floor"``), and gzips with Python's zlib, so with ``codec="zlib"`` at
level 6 its payloads and ours must be the same bytes; with any codec the
decoded values must be the same.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dask_cellucid import prepare
from dask_cellucid.testing import export_files, random_matrix, read_payloads

cellucid = pytest.importorskip("cellucid")


def reference_export(X, var: pd.DataFrame, out: Path, **kw) -> None:
    """Run cellucid 0.9.2's prepare with the least non-gene work it accepts."""
    n = X.shape[0]
    rng = np.random.default_rng(0)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        cellucid.prepare(
            gene_expression=X,
            var=var,
            out_dir=out,
            obs=pd.DataFrame(index=[str(i) for i in range(n)]),
            obs_keys=[],
            latent_space=rng.normal(size=(n, 3)),
            X_umap_2d=rng.normal(size=(n, 2)),
            centroid_outlier_quantile=None,
            obs_categorical_dtype="uint8",
            dataset_name="ref",
            dataset_id="ref",
            **kw,
        )


def _var(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {"symbol": [f"S{j}" for j in range(n)]}, index=[f"ENSG{j:05d}" for j in range(n)]
    )


@pytest.mark.parametrize("bits", [8, 16, None])
@pytest.mark.parametrize("compression", [6, None])
def test_same_manifest_and_bytes_as_cellucid_092(tmp_path: Path, bits, compression) -> None:
    X = random_matrix(300, 25, density=0.2, seed=3, negative=True).tolil()
    X[:, 4] = 0  # an all-zero gene: a constant field, bounds [0, 0] in this layout
    X[:, 7] = 2.5  # a dense constant gene
    X = X.tocsr()
    X.eliminate_zeros()
    var = _var(25)
    reference_export(X, var, tmp_path / "ref", var_quantization=bits, compression=compression)
    with pytest.warns(UserWarning, match="zero in every cell"):
        prepare(
            X,
            var,
            out_dir=tmp_path / "ours",
            layout="index",
            rounding="floor",
            var_quantization=bits,
            compression=compression,
            codec="zlib",
            genes_per_block=4,
        )
    ref = {k: v for k, v in export_files(tmp_path / "ref").items() if k.startswith("var")}
    ours = {k: v for k, v in export_files(tmp_path / "ours").items() if k.startswith("var")}
    assert ref.keys() == ours.keys()
    import json

    assert json.loads(ours["var_manifest.json"]) == json.loads(ref["var_manifest.json"])
    assert [k for k in ref if ref[k] != ours[k]] == []


@pytest.mark.parametrize("bits", [8, 16])
def test_floor_decodes_like_the_reference_with_any_codec(tmp_path: Path, bits: int) -> None:
    X = random_matrix(500, 40, density=0.3, seed=5)
    var = _var(40)
    genes = [f"ENSG{j:05d}" for j in (9, 3, 31, 0)]  # a subset, out of order
    reference_export(
        X, var, tmp_path / "ref", var_quantization=bits, compression=6, gene_identifiers=genes
    )
    prepare(
        X,
        var,
        out_dir=tmp_path / "ours",
        layout="index",
        rounding="floor",
        var_quantization=bits,
        compression=6,
        gene_identifiers=genes,
    )
    ref_doc, ref_codes = read_payloads(tmp_path / "ref")
    doc, codes = read_payloads(tmp_path / "ours")
    assert doc == ref_doc
    assert list(codes) == genes
    for g in genes:
        np.testing.assert_array_equal(codes[g], ref_codes[g])


def test_nearest_is_never_worse_than_the_reference(tmp_path: Path) -> None:
    X = random_matrix(2000, 10, density=0.5, seed=7)
    var = _var(10)
    reference_export(X, var, tmp_path / "ref", var_quantization=8, compression=6)
    prepare(X, var, out_dir=tmp_path / "ours", layout="index", var_quantization=8, compression=6)
    from dask_cellucid import read_genes

    dense = X.toarray()
    names = list(var.index)
    ours, ref = read_genes(tmp_path / "ours", names), read_genes(tmp_path / "ref", names)
    for j, g in enumerate(names):
        step = (dense[:, j].max() - dense[:, j].min()) / 254
        err_ours = np.abs(ours[g] - dense[:, j]).max() / step
        err_ref = np.abs(ref[g] - dense[:, j]).max() / step
        assert err_ours <= 0.5 + 1e-4
        assert err_ours <= err_ref + 1e-6
