"""AnnData inputs: objects, backed objects, and .h5ad/.zarr files written by anndata.

Every export from a file must hold the same bytes as the export of the same
matrix given in memory; bad files are refused before anything is written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anndata as ad
import dask
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from conftest import write_anndata
from dask_cellucid import prepare
from dask_cellucid.adapters import as_source, read_obsm
from dask_cellucid.errors import (
    CellucidExportError,
    InputShapeError,
    InvalidOptionError,
    UnsupportedInputError,
)
from dask_cellucid.testing import assert_export_equal, random_matrix

N_CELLS, N_GENES, N_RAW = 230, 37, 45
SETTINGS: dict[str, Any] = {"var_quantization": 8, "compression": 6, "genes_per_block": 5}

STORAGE = {
    "csr": sp.csr_matrix,
    "csc": sp.csc_matrix,
    "dense": lambda m: np.asarray(m.toarray()),
}


def _adata(storage: str) -> ad.AnnData:
    X = random_matrix(N_CELLS, N_GENES, density=0.2, seed=1, negative=True)
    counts = random_matrix(N_CELLS, N_GENES, density=0.3, seed=2)
    raw = random_matrix(N_CELLS, N_RAW, density=0.25, seed=3)
    make = STORAGE[storage]
    obs = pd.DataFrame({"n": np.arange(N_CELLS)}, index=[f"cell{i}" for i in range(N_CELLS)])
    var = pd.DataFrame(
        {"symbol": [f"SYM{j}" for j in range(N_GENES)]},
        index=[f"ENSG{j:05d}" for j in range(N_GENES)],
    )
    raw_ad = ad.AnnData(
        make(raw), obs=obs, var=pd.DataFrame(index=[f"RAW{j}" for j in range(N_RAW)])
    )
    a = ad.AnnData(make(X), obs=obs, var=var, layers={"counts": make(counts)})
    a.raw = raw_ad
    a.obsm["X_umap"] = np.random.default_rng(0).normal(size=(N_CELLS, 2)).astype(np.float32)
    return a


def _files(storage: str, d: Path) -> dict[str, Any]:
    a = _adata(storage)
    return {
        "adata": a,
        "h5ad": write_anndata(a, d / "data.h5ad"),
        "zarr": write_anndata(a, d / "data.zarr"),
        "storage": storage,
    }


@pytest.fixture(scope="module", params=["csr", "csc", "dense"])
def files(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    return _files(request.param, tmp_path_factory.mktemp(f"ad-{request.param}"))


@pytest.fixture(scope="module")
def csr_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _files("csr", tmp_path_factory.mktemp("ad-csr-only"))


def _matrix(a: ad.AnnData, layer: str | None, use_raw: bool) -> tuple[Any, pd.DataFrame]:
    if use_raw:
        return a.raw.X, a.raw.var
    return (a.layers[layer] if layer else a.X), a.var


@pytest.mark.parametrize("fmt", ["h5ad", "zarr"])
@pytest.mark.parametrize(
    ("layer", "use_raw"),
    [(None, False), ("counts", False), (None, True)],
    ids=["X", "layer", "raw"],
)
def test_file_matches_in_memory(
    tmp_path: Path, files: dict[str, Any], fmt: str, layer: str | None, use_raw: bool
) -> None:
    matrix, var = _matrix(files["adata"], layer, use_raw)
    prepare(matrix, var, out_dir=tmp_path / "mem", **SETTINGS)
    prepare(str(files[fmt]), layer=layer, use_raw=use_raw, out_dir=tmp_path / "file", **SETTINGS)
    assert_export_equal(tmp_path / "file", tmp_path / "mem")


def test_anndata_objects_match(tmp_path: Path, files: dict[str, Any]) -> None:
    """In-memory and backed AnnData objects, with layers and raw, give the same bytes."""
    a = files["adata"]
    prepare(a.layers["counts"], a.var, out_dir=tmp_path / "mem", **SETTINGS)
    prepare(a, layer="counts", out_dir=tmp_path / "obj", **SETTINGS)
    assert_export_equal(tmp_path / "obj", tmp_path / "mem")

    backed = ad.read_h5ad(files["h5ad"], backed="r")
    try:
        prepare(a.raw.X, a.raw.var, out_dir=tmp_path / "rawmem", **SETTINGS)
        prepare(backed, use_raw=True, out_dir=tmp_path / "rawbacked", **SETTINGS)
        prepare(backed, out_dir=tmp_path / "Xbacked", **SETTINGS)
    finally:
        backed.file.close()
    assert_export_equal(tmp_path / "rawbacked", tmp_path / "rawmem")
    prepare(a.X, a.var, out_dir=tmp_path / "Xmem", **SETTINGS)
    assert_export_equal(tmp_path / "Xbacked", tmp_path / "Xmem")


@pytest.mark.parametrize("fmt", ["h5ad", "zarr"])
def test_var_from_file_and_gene_subset(tmp_path: Path, files: dict[str, Any], fmt: str) -> None:
    """Ids come from the file's var (any column); a reordered subset keeps its order."""
    a = files["adata"]
    genes = ["SYM30", "SYM2", "SYM17", "SYM3", "SYM36", "SYM0"]
    kw = {
        **SETTINGS,
        "genes_per_block": 2,
        "var_gene_id_column": "symbol",
        "gene_identifiers": genes,
    }
    prepare(a.X, a.var, out_dir=tmp_path / "mem", **kw)
    prepare(str(files[fmt]), out_dir=tmp_path / "file", **kw)
    assert_export_equal(tmp_path / "file", tmp_path / "mem")
    doc = json.loads((tmp_path / "file" / "var_manifest.json").read_text())
    assert [f[0] for f in doc["fields"]] == genes


@pytest.mark.parametrize("strategy", ["memory", "spill", "passes"])
def test_csr_strategies_same_bytes(
    tmp_path: Path, csr_files: dict[str, Any], strategy: str
) -> None:
    """Every way of turning CSR rows into gene columns writes the same bytes."""
    files = csr_files
    a = files["adata"]
    genes = [f"ENSG{j:05d}" for j in (5, 1, 30, 2, 9, 36, 0, 22, 11)]
    if strategy == "passes":  # every gene: more than one pass's worth at this budget
        genes = [f"ENSG{j:05d}" for j in (*range(36, 18, -1), *range(19))]
    kw = {**SETTINGS, "genes_per_block": 2, "gene_identifiers": genes}
    prepare(a.X, a.var, out_dir=tmp_path / "mem", **kw)
    # A budget this small (just above the least this file needs) cuts it into many
    # slabs (and several passes).
    with dask.config.set({"cellucid.csr-strategy": strategy}):
        src = as_source(str(files["h5ad"]), max_memory=26_000)
        prepare(src, out_dir=tmp_path / "file", **kw)
    assert src.chosen == strategy
    assert src.slab_rows() < N_CELLS // 4
    if strategy == "passes":
        assert src.passes > 1
    assert_export_equal(tmp_path / "file", tmp_path / "mem")


def test_spill_scratch_removed(tmp_path: Path, csr_files: dict[str, Any]) -> None:
    files = csr_files
    scratch = tmp_path / "scratch"
    with dask.config.set({"cellucid.csr-strategy": "spill", "cellucid.scratch": str(scratch)}):
        prepare(str(files["h5ad"]), out_dir=tmp_path / "out", max_memory=26_000, **SETTINGS)
    assert scratch.is_dir()
    assert list(scratch.iterdir()) == []


@pytest.mark.distributed
def test_distributed_workers_open_the_file(
    tmp_path: Path, csr_files: dict[str, Any], dask_client: Any
) -> None:
    """Worker processes open the file themselves (tasks carry paths, not h5py handles)."""
    a = csr_files["adata"]
    prepare(a.X, a.var, out_dir=tmp_path / "mem", **SETTINGS)
    for strategy in ("spill", "passes"):
        with dask.config.set({"cellucid.csr-strategy": strategy}):
            prepare(
                str(csr_files["h5ad"]),
                out_dir=tmp_path / strategy,
                scheduler=dask_client,
                max_memory=26_000,
                **SETTINGS,
            )
        assert_export_equal(tmp_path / strategy, tmp_path / "mem")
    csc = write_anndata(ad.AnnData(sp.csc_matrix(a.X), obs=a.obs, var=a.var), tmp_path / "csc.zarr")
    prepare(str(csc), out_dir=tmp_path / "csc", scheduler=dask_client, **SETTINGS)
    assert_export_equal(tmp_path / "csc", tmp_path / "mem")


def test_fsspec_url_input(tmp_path: Path, csr_files: dict[str, Any]) -> None:
    """A file:// URL goes through fsspec (h5py reads a file object; zarr its own store)."""
    files = csr_files
    a = files["adata"]
    prepare(a.X, a.var, out_dir=tmp_path / "mem", **SETTINGS)
    for fmt in ("h5ad", "zarr"):
        prepare(f"file://{files[fmt]}", out_dir=tmp_path / fmt, **SETTINGS)
        assert_export_equal(tmp_path / fmt, tmp_path / "mem")


@pytest.mark.s3
def test_s3_h5ad_input(tmp_path: Path, s3_bucket: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """An .h5ad on a (loopback moto) S3 bucket, found through fsspec's configuration."""
    fsspec = pytest.importorskip("fsspec")
    a = _adata("csr")
    path = write_anndata(a, tmp_path / "d.h5ad")
    s3_bucket.boto.upload_file(str(path), s3_bucket.bucket, "in/d.h5ad")
    monkeypatch.setitem(fsspec.config.conf, "s3", {"endpoint_url": s3_bucket.endpoint})
    prepare(a.X, a.var, out_dir=tmp_path / "mem", **SETTINGS)
    prepare(f"s3://{s3_bucket.bucket}/in/d.h5ad", out_dir=tmp_path / "s3", **SETTINGS)
    assert_export_equal(tmp_path / "s3", tmp_path / "mem")


def test_read_obsm(csr_files: dict[str, Any]) -> None:
    files = csr_files
    for fmt in ("h5ad", "zarr"):
        coords = read_obsm(str(files[fmt]), "X_umap")
        np.testing.assert_array_equal(coords, files["adata"].obsm["X_umap"])
        assert read_obsm(str(files[fmt]), "X_pca") is None


# -- bad input: a clear error, and nothing written --------------------------------------------
def _refused(
    tmp_path: Path, error: type[Exception], match: str, gene_expression: Any, **kw: Any
) -> None:
    out = tmp_path / "never"
    with pytest.raises(error, match=match):
        prepare(gene_expression, out_dir=out, **kw)
    assert not out.exists()


def test_not_anndata(tmp_path: Path) -> None:
    text = tmp_path / "cells.h5ad"
    text.write_text("gene,cell\n")
    _refused(tmp_path, UnsupportedInputError, "not an AnnData file", str(text))
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["matrix"] = np.zeros((3, 3))
    _refused(tmp_path, UnsupportedInputError, "not an AnnData", str(plain))
    folder = tmp_path / "folder"
    folder.mkdir()
    _refused(tmp_path, UnsupportedInputError, "not a .zarr store", str(folder))
    _refused(tmp_path, FileNotFoundError, "no such file", str(tmp_path / "missing.h5ad"))


@pytest.mark.parametrize("fmt", ["h5ad", "zarr"])
def test_missing_layer_and_raw(tmp_path: Path, fmt: str) -> None:
    a = _adata("csr")
    del a.layers["counts"]
    a.raw = None
    path = str(write_anndata(a, tmp_path / f"d.{fmt}"))
    _refused(tmp_path, InvalidOptionError, r"no layer 'counts'.*layers: none", path, layer="counts")
    _refused(tmp_path, InvalidOptionError, "has no raw", path, use_raw=True)
    _refused(tmp_path, InvalidOptionError, "both pick", path, layer="x", use_raw=True)
    _refused(tmp_path, InvalidOptionError, "no layer 'counts'", a, layer="counts")
    _refused(tmp_path, InvalidOptionError, "has no raw", a, use_raw=True)


def test_wrong_orientation(tmp_path: Path) -> None:
    """A matrix stored genes x cells, or a var with one row per cell, is named as such."""
    a = _adata("csr")
    path = write_anndata(a, tmp_path / "d.h5ad")
    from anndata.io import write_elem

    with h5py.File(path, "r+") as f:
        del f["X"]
        write_elem(f, "X", sp.csr_matrix(a.X.T))
    _refused(tmp_path, InputShapeError, "stored transposed", str(path))
    _refused(tmp_path, InputShapeError, "looks like adata.obs", a, var=a.obs)
    _refused(tmp_path, InputShapeError, "same genes in the same order", a, var=a.var.iloc[::-1])


def test_truncated_files(tmp_path: Path) -> None:
    a = _adata("csr")
    path = write_anndata(a, tmp_path / "d.h5ad")
    cut = tmp_path / "cut.h5ad"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    _refused(tmp_path, UnsupportedInputError, "truncated", str(cut))

    store = write_anndata(a, tmp_path / "d.zarr")
    chunks = sorted(
        p
        for p in (store / "X" / "indices").rglob("*")
        if p.is_file() and not p.name.startswith((".", "zarr"))
    )
    assert chunks, "the zarr store should have chunk files"
    chunks[-1].unlink()
    _refused(tmp_path, UnsupportedInputError, "incomplete", str(store))


def test_errors_are_library_errors(tmp_path: Path) -> None:
    with pytest.raises(CellucidExportError):
        as_source(np.zeros((3, 3)), layer="counts")
    backed = ad.read_h5ad(write_anndata(_adata("csr"), tmp_path / "v.h5ad"), backed="r")
    try:
        with pytest.raises(CellucidExportError, match="view"):
            as_source(backed[:, :5])
    finally:
        backed.file.close()
