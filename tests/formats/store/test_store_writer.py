"""prepare_store: the Cellucid-ready zarr store written on the engine, read back with anndata."""

from __future__ import annotations

import json
import os

import anndata as ad
import dask.array as da
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from dask_cellucid.errors import InputValueError, InvalidOptionError, TargetExistsError
from dask_cellucid.formats.store.read import StoreReader, read_gene
from dask_cellucid.formats.store.validate import validate
from dask_cellucid.store_api import prepare_store

N_CELLS, N_GENES = 120, 17


def _matrix(seed=0, n=N_CELLS, g=N_GENES, density=0.3):
    m = sp.random(n, g, density=density, format="csr", random_state=seed, dtype=np.float64)
    return (m * 10).astype(np.float32)


def _inputs(n=N_CELLS, g=N_GENES, seed=0):
    rng = np.random.default_rng(seed)
    obs = pd.DataFrame(
        {
            "cell_type": rng.choice(["T", "B", "NK"], n),
            "score": rng.normal(size=n),
            "count": rng.integers(0, 9, n),
            "name": [f"n{i}" for i in range(n)],
        },
        index=[f"cell{i}" for i in range(n)],
    )
    var = pd.DataFrame({"mean": rng.random(g)}, index=[f"G{j}" for j in range(g)])
    emb = {"X_umap": rng.normal(size=(n, 2)), "X_pca": rng.normal(size=(n, 5))}
    return obs, var, emb


def _write(tmp_path, x, name="out.zarr", **kw):
    obs, var, emb = _inputs(x.shape[0], x.shape[1])
    kw.setdefault("obs", obs)
    kw.setdefault("var", var)
    kw.setdefault("embeddings", emb)
    kw.setdefault("scheduler", "threads")
    out = tmp_path / name
    result = prepare_store(
        out, gene_expression=x, dataset_id="test-1", dataset_name="Test one", **kw
    )
    return out, result


def _dense(x):
    return x.toarray() if sp.issparse(x) else np.asarray(x)


def _check_round_trip(out, x, *, chunk=None):
    a = ad.read_zarr(out)
    want = _dense(x).astype(a.X.dtype)
    assert sp.issparse(a.X) == sp.issparse(x)
    np.testing.assert_array_equal(_dense(a.X), want)
    if sp.issparse(a.X):
        assert a.X.format == "csc"
        assert a.X.has_canonical_format and np.all(a.X.data)
    assert a.uns["title"] == "Test one"
    assert a.uns["cellucid"]["id"] == "test-1" and a.uns["cellucid"]["schema"] == 1
    assert validate(out, chunk=chunk or 65536) == []
    reader = StoreReader(str(out))
    for j in range(x.shape[1]):
        np.testing.assert_array_equal(reader.read_gene(j), want[:, j])
    return a


@pytest.mark.parametrize("kind", ["numpy", "csr", "csc", "coo", "dask-dense", "dask-sparse"])
def test_round_trip_inputs(tmp_path, kind):
    m = _matrix()
    x = {
        "numpy": m.toarray(),
        "csr": m,
        "csc": m.tocsc(),
        "coo": m.tocoo(),
        "dask-dense": da.from_array(m.toarray(), chunks=(50, 5)),
        "dask-sparse": da.from_array(m, chunks=(50, N_GENES)),
    }[kind]
    out, result = _write(tmp_path, x, chunk_values=64, num_workers=3)
    a = _check_round_trip(
        out, m.toarray() if kind.endswith("dense") or kind == "numpy" else m, chunk=64
    )
    obs, var, emb = _inputs()
    assert list(a.obs_names) == list(obs.index)
    assert list(a.var_names) == list(var.index)
    assert a.obs["cell_type"].dtype == "category"
    np.testing.assert_array_equal(a.obs["score"], obs["score"])
    np.testing.assert_array_equal(a.var["mean"], var["mean"])
    np.testing.assert_array_equal(a.obsm["X_pca"], emb["X_pca"].astype(np.float32))
    assert set(a.obsm) == {"X_umap", "X_pca"}
    if result.sparse:
        assert result.n_tasks > 1  # cut into several chunk-aligned segments


def test_backed_h5ad_input(tmp_path):
    m = _matrix(3)
    obs, var, emb = _inputs()
    src = ad.AnnData(X=m, obs=obs, var=var, obsm=dict(emb))
    src.uns["cellucid"] = {"id": "from-file", "name": "From file"}
    path = tmp_path / "in.h5ad"
    src.write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    out = tmp_path / "b.zarr"
    r = prepare_store(out, data=backed, chunk_values=50, max_memory="64MiB", scheduler="threads")
    a = ad.read_zarr(out)
    np.testing.assert_array_equal(a.X.toarray(), m.toarray())
    assert a.uns["cellucid"]["id"] == "from-file" and a.uns["title"] == "From file"
    assert r.nnz == m.nnz
    backed.file.close()


def test_edge_cases_empty_genes_cells_and_integer_counts(tmp_path):
    x = np.zeros((40, 6), dtype=np.int32)
    x[3, 1] = 5
    x[7:30, 4] = np.arange(1, 24)
    x[:, 5] = 1  # every cell
    # genes 0, 2, 3 empty; many cells empty
    out, r = _write(tmp_path, sp.csr_matrix(x), chunk_values=8)
    assert r.dtype == "float32" and r.nnz == int(np.count_nonzero(x))
    _check_round_trip(out, sp.csr_matrix(x), chunk=8)


def test_single_gene_and_all_zero_matrix(tmp_path):
    x = sp.csr_matrix(np.arange(30, dtype=np.float32).reshape(30, 1))
    out, _ = _write(tmp_path, x, chunk_values=7)
    _check_round_trip(out, x, chunk=7)
    z = sp.csr_matrix((30, 4), dtype=np.float32)
    out2, r2 = _write(tmp_path, z, name="zero.zarr")
    assert r2.nnz == 0 and r2.n_tasks == 0
    _check_round_trip(out2, z)


@pytest.mark.parametrize("delta", [-1, 0, 1])
def test_nnz_around_a_chunk_boundary(tmp_path, delta):
    chunk = 16
    n = 20
    nnz = 3 * chunk + delta
    x = np.zeros((n, 5), dtype=np.float32)
    flat = x.reshape(-1, order="F")
    flat[:nnz] = np.arange(1, nnz + 1)
    x = flat.reshape(n, 5, order="F")
    out, r = _write(tmp_path, sp.csr_matrix(x), chunk_values=chunk)
    assert r.nnz == nnz
    _check_round_trip(out, sp.csr_matrix(x), chunk=chunk)
    files = sorted(os.listdir(out / "X" / "data"))
    assert len([f for f in files if not f.startswith(".")]) == -(-nnz // chunk)


def test_real_chunk_size_just_above_65536(tmp_path):
    n, g = 400, 200
    rng = np.random.default_rng(5)
    m = sp.random(n, g, density=0.82, format="csc", random_state=rng, dtype=np.float32)
    m.data[:] = rng.integers(1, 50, m.nnz)
    assert 65536 < m.nnz < 2 * 65536
    out, r = _write(tmp_path, m)
    assert r.nnz == m.nnz
    _check_round_trip(out, m)
    meta = json.loads((out / ".zmetadata").read_text())["metadata"]
    assert meta["X/data/.zarray"]["chunks"] == [65536]
    assert meta["X/indices/.zarray"]["filters"] == [{"id": "shuffle", "elementsize": 4}]


def test_integer_counts_above_2_24_are_float64(tmp_path):
    x = np.zeros((10, 3), dtype=np.int64)
    x[0, 0] = 2**24 + 1
    x[5, 2] = 3
    out, r = _write(tmp_path, sp.csr_matrix(x))
    assert r.dtype == "float64"
    a = ad.read_zarr(out)
    assert a.X.dtype == np.float64 and a.X[0, 0] == 2**24 + 1


def test_nan_refused_naming_the_genes_before_anything_is_written(tmp_path):
    x = _matrix().toarray()
    x[4, 2] = np.nan
    x[9, 11] = np.inf
    with pytest.raises(InputValueError, match=r"\['G2', 'G11'\]"):
        _write(tmp_path, sp.csr_matrix(x))
    assert os.listdir(tmp_path) == []
    with pytest.raises(InputValueError, match="G2"):
        _write(tmp_path, x)
    assert os.listdir(tmp_path) == []


def test_existing_out_path_refused_without_force_replaced_with_it(tmp_path):
    m = _matrix()
    out, _ = _write(tmp_path, m)
    with pytest.raises(TargetExistsError):
        _write(tmp_path, m)
    m2 = _matrix(seed=9)
    _write(tmp_path, m2, force=True)
    np.testing.assert_array_equal(ad.read_zarr(out).X.toarray(), m2.toarray())
    assert sorted(os.listdir(tmp_path)) == ["out.zarr"]  # no staging folder left
    (tmp_path / "plain.zarr").mkdir()
    with pytest.raises(TargetExistsError, match="not a Zarr store"):
        _write(tmp_path, m, name="plain.zarr", force=True)


def test_bad_options_refused(tmp_path):
    m = _matrix()
    with pytest.raises(InvalidOptionError, match=r"\.zarr"):
        _write(tmp_path, m, name="out.h5ad")
    for bad in (4, True, "3", 3.0):
        with pytest.raises(InvalidOptionError, match="zarr_format"):
            _write(tmp_path, m, zarr_format=bad)
    with pytest.raises(InvalidOptionError, match=r'ends in \.zarr\.zip, which format="zarr.zip"'):
        _write(tmp_path, m, name="out.zarr.zip")
    with pytest.raises(InvalidOptionError, match=r'ends in \.zarr, which format="zarr" writes'):
        _write(tmp_path, m, format="zarr.zip")
    with pytest.raises(InvalidOptionError, match="is only the suffix"):
        _write(tmp_path, m, name=".zarr.zip", format="zarr.zip")
    with pytest.raises(InvalidOptionError, match="dataset_id"):
        prepare_store(
            tmp_path / "x.zarr",
            gene_expression=m,
            var=_inputs()[1],
            embeddings=_inputs()[2],
            dataset_id="bad id",
            dataset_name="x",
        )
    assert os.listdir(tmp_path) == []


def test_gene_identifiers_and_var_gene_id_column(tmp_path):
    m = _matrix()
    var = _inputs()[1]
    var["symbol"] = [f"S{j}" for j in range(N_GENES)]
    out, _ = _write(
        tmp_path, m, var=var, var_gene_id_column="symbol", gene_identifiers=["S5", "S0", "S16"]
    )
    a = ad.read_zarr(out)
    assert list(a.var_names) == ["G5", "G0", "G16"]
    np.testing.assert_array_equal(a.X.toarray(), m.toarray()[:, [5, 0, 16]])
    np.testing.assert_array_equal(read_gene(str(out), 1), m.toarray()[:, 0])


def test_connectivities_and_verify(tmp_path):
    m = _matrix()
    g = sp.random(N_CELLS, N_CELLS, density=0.05, random_state=1, format="csr")
    g = g + g.T
    g.setdiag(0)
    g.eliminate_zeros()
    out, _ = _write(tmp_path, m, connectivities=g, verify=True)
    a = ad.read_zarr(out)
    np.testing.assert_array_equal(
        a.obsp["connectivities"].toarray(), g.astype(np.float32).toarray()
    )


def test_libdeflate_chunks_hold_the_same_values_as_zlib_chunks(tmp_path):
    import zlib

    rng = np.random.default_rng(3)
    m = sp.random(3_000, 40, density=0.1, format="csr", dtype=np.float32, random_state=rng)
    kw = {
        "gene_expression": m,
        "var": pd.DataFrame(index=[f"g{j}" for j in range(40)]),
        "embeddings": {"X_umap": rng.random((3_000, 2), dtype=np.float32)},
        "dataset_id": "d",
        "dataset_name": "D",
        "chunk_values": 4_096,
    }
    prepare_store(tmp_path / "z.zarr", codec="zlib", **kw)
    prepare_store(tmp_path / "l.zarr", codec="libdeflate", **kw)
    z, fast = tmp_path / "z.zarr", tmp_path / "l.zarr"
    assert (z / ".zmetadata").read_bytes() == (fast / ".zmetadata").read_bytes()
    chunks = sorted(p.name for p in (z / "X" / "data").iterdir() if not p.name.startswith("."))
    assert chunks == sorted(
        p.name for p in (fast / "X" / "data").iterdir() if not p.name.startswith(".")
    )
    differ = 0
    for name in chunks:
        a, b = (z / "X" / "data" / name).read_bytes(), (fast / "X" / "data" / name).read_bytes()
        assert zlib.decompress(a) == zlib.decompress(b)  # plain zlib streams, same contents
        differ += a != b
    assert differ  # the other encoder was used
    np.testing.assert_array_equal(ad.read_zarr(fast).X.toarray(), ad.read_zarr(z).X.toarray())


def test_repeated_gene_names_are_made_unique_and_said(tmp_path, caplog):
    m = _matrix()
    var = _inputs()[1]
    var.index = ["TP53", "TP53", *[f"G{j}" for j in range(2, N_GENES)]]
    with caplog.at_level("WARNING"):
        out, _ = _write(tmp_path, m, var=var)
    assert list(ad.read_zarr(out).var_names[:2]) == ["TP53", "TP53-1"]
    assert "'TP53' -> 'TP53-1'" in caplog.text


def test_csr_with_duplicate_entries_is_summed(tmp_path):
    # counted by rows, written by columns: both passes must sum the duplicates alike
    m = _matrix()
    doubled = sp.csr_matrix(
        (np.repeat(m.data, 2), np.repeat(m.indices, 2), m.indptr * 2), shape=m.shape
    )
    assert not doubled.has_canonical_format
    out, _ = _write(tmp_path, doubled)
    _check_round_trip(out, sp.csr_matrix(m * 2))


def test_backed_csr_is_counted_by_rows_and_spilled_once(tmp_path, caplog):
    # the first pass reads row slabs as stored (no scratch); only the write pass spills
    import dask

    m = _matrix(5)
    obs, var, emb = _inputs()
    path = tmp_path / "in.h5ad"
    ad.AnnData(X=m, obs=obs, var=var, obsm=dict(emb)).write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    out = tmp_path / "rows.zarr"
    with dask.config.set({"cellucid.csr-strategy": "spill"}), caplog.at_level("INFO"):
        prepare_store(
            out,
            data=backed,
            dataset_id="rows",
            dataset_name="Rows",
            chunk_values=50,
            max_memory="64MiB",
            scheduler="threads",
        )
    backed.file.close()
    assert caplog.text.count("spilling CSC shards") == 1
    _check_round_trip_values(out, m)


def _check_round_trip_values(out, m):
    a = ad.read_zarr(out)
    np.testing.assert_array_equal(a.X.toarray(), m.toarray())
    reader = StoreReader(str(out))
    for j in range(m.shape[1]):
        np.testing.assert_array_equal(reader.read_gene(j), m.toarray()[:, j])
