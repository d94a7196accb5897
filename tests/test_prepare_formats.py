"""``prepare`` dispatches on ``format``: the folder without it, the store with it."""

from __future__ import annotations

import inspect
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import dask_cellucid
from dask_cellucid import InvalidOptionError, prepare, prepare_folder, prepare_store


def _adata() -> ad.AnnData:
    rng = np.random.default_rng(0)
    X = sp.random(50, 8, density=0.3, format="csr", dtype=np.float32, random_state=rng)
    a = ad.AnnData(
        X,
        obs=pd.DataFrame(index=[f"c{i}" for i in range(50)]),
        var=pd.DataFrame(index=[f"g{j}" for j in range(8)]),
    )
    a.obsm["X_umap"] = rng.random((50, 2), dtype=np.float32)
    return a


def test_without_format_prepare_writes_the_folder(tmp_path: Path) -> None:
    a = _adata()
    prepare(a.X, a.var, out_dir=tmp_path / "a", var_quantization=8)
    prepare_folder(a.X, a.var, out_dir=tmp_path / "b", var_quantization=8)
    assert (tmp_path / "a" / "var_manifest.json").read_bytes() == (
        tmp_path / "b" / "var_manifest.json"
    ).read_bytes()


def test_cellucid_095_call_writes_the_store(tmp_path: Path) -> None:
    a = _adata()
    # cellucid 0.9.5's call, with only the import swapped
    out = prepare(
        tmp_path / "a.zarr",
        format="zarr",
        data=a,
        embeddings={"X_umap": a.obsm["X_umap"]},
        dataset_id="demo",
        dataset_name="Demo",
    )
    prepare_store(
        tmp_path / "b.zarr",
        format="zarr",
        data=a,
        embeddings={"X_umap": a.obsm["X_umap"]},
        dataset_id="demo",
        dataset_name="Demo",
    )
    assert out is not None
    back = ad.read_zarr(tmp_path / "a.zarr")
    np.testing.assert_array_equal(back.X.toarray(), a.X.toarray())
    assert (tmp_path / "a.zarr" / ".zmetadata").read_bytes() == (
        tmp_path / "b.zarr" / ".zmetadata"
    ).read_bytes()


def test_unknown_format_is_refused_before_writing(tmp_path: Path) -> None:
    with pytest.raises(InvalidOptionError, match="format="):
        prepare(tmp_path / "a.h5", format="hdf5", data=_adata(), dataset_id="d", dataset_name="D")
    assert not any(tmp_path.iterdir())


def test_signature_lists_both_forms_keywords() -> None:
    params = inspect.signature(dask_cellucid.prepare).parameters
    assert {"gene_expression", "out_dir", "var_quantization"} <= set(params)
    assert {"format", "data", "embeddings", "zarr_format"} <= set(params)
    identity = {"dataset_description", "citation_text", "citation_url", "source_name"}
    assert identity | {"source_url"} <= set(params)
    assert params["format"].default is None


def test_cellucid_095_call_writes_a_v3_zarr_zip(tmp_path: Path) -> None:
    a = _adata()
    out = tmp_path / "a.zarr.zip"
    prepare(
        out,
        format="zarr.zip",
        data=a,
        dataset_id="demo",
        dataset_name="Demo",
        citation_text="Cite us",
        citation_url="https://example.org/cite",
        zarr_format=3,
    )
    assert out.is_file()
    got = dask_cellucid.read_genes(str(out))
    np.testing.assert_array_equal(np.stack(list(got.values()), axis=1), a.X.toarray())
    assert dask_cellucid.validate(str(out)).ok
