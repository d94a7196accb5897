"""The differential test: our store against what cellucid==0.9.5's prepare writes from it.

cellucid 0.9.5 conflicts with the cellucid the suite installs, so it gets its own
venv, ``.venv-oracle-095`` at the repository root, built on first use (``python -m
venv``, then ``pip install cellucid==0.9.5``) and reused while its marker file says
so. If it cannot be built the tests skip, or fail when the environment variable CI
is set. ``oracle_095_script.py`` runs in it: for every store, ``AnnDataServer``
must construct on ours and ``browser_undecodable`` be empty, and
``cellucid.prepare(tmp, format=..., data=<ours read back>, zarr_format=...)`` must
write the same consolidated metadata (``.zmetadata``, or the root ``zarr.json`` of
zarr v3), the same files with the same bytes, and the same arrays; a ``.zarr.zip``
the same archive, byte for byte. Zarr v2 and v3 folders and ``.zarr.zip`` files
are compared, and the arguments both refuse are refused alike.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from dask_cellucid import read_genes
from dask_cellucid.errors import InvalidOptionError
from dask_cellucid.store_api import prepare_store

SCRIPT = Path(__file__).with_name("oracle_095_script.py")


@pytest.fixture(scope="session")
def oracle_095(oracle_venv: Callable[..., Path]) -> Path:
    """The python of a venv with cellucid 0.9.5 (see the module docstring)."""
    return oracle_venv(
        ".venv-oracle-095", "cellucid==0.9.5", "cellucid, anndata, zarr", timeout=900
    )


def _pbmc():
    scanpy = pytest.importorskip("scanpy")
    return scanpy.datasets.pbmc68k_reduced()


def _synthetic(nnz_target: int, *, big_counts: bool = False):
    n, g = 300, 400
    rng = np.random.default_rng(nnz_target)
    m = sp.random(n, g, density=nnz_target / (n * g), format="csr", random_state=rng)
    m.data = rng.integers(1, 40, m.nnz).astype(np.int64)
    if big_counts:
        m.data[0] = 2**24 + 7
    obs = pd.DataFrame(
        {
            "group": rng.choice(["a", "b", "c"], n),
            "label": [f"cell-{i}" for i in range(n)],
            "flag": rng.random(n) > 0.5,
            "depth": pd.array(rng.integers(0, 5, n), dtype="Int64"),
            "value": rng.normal(size=n),
        },
        index=[f"c{i}" for i in range(n)],
    )
    obs.loc["c3", "depth"] = pd.NA
    var = pd.DataFrame(
        {"symbol": [f"S{j % 50}" for j in range(g)], "mean": rng.random(g)},
        index=[f"ENSG{j:05d}" for j in range(g)],
    )
    emb = {"X_umap": rng.normal(size=(n, 2)), "X_pca": rng.normal(size=(n, 10))}
    return m, obs, var, emb


def _zlib_store(*args, **kwargs):
    # zlib's own encoder: the chunk bytes cellucid 0.9.5 writes (the default, libdeflate,
    # writes other zlib streams of the same values)
    return prepare_store(*args, codec="zlib", **kwargs)


#: The identity fields beyond id and name (uns['cellucid']: description, citation, source).
IDENTITY = {
    "dataset_description": "Peripheral blood cells, reduced.",
    "citation_text": "Zheng et al. 2017",
    "citation_url": "https://doi.org/10.1038/ncomms14049",
    "source_name": "scanpy datasets",
}

#: name -> (suffix, zarr_format): the stores written besides the v2 folders.
FORMS = {
    "pbmc_dense": (".zarr", 2),
    "pbmc_sparse": (".zarr", 2),
    "above_65536": (".zarr", 2),
    "below_65536": (".zarr", 2),
    "counts_2_24": (".zarr", 2),
    "dense_tall": (".zarr", 2),
    "pbmc_sparse_v3": (".zarr", 3),
    "pbmc_dense_v3_zip": (".zarr.zip", 3),
    "above_65536_v3": (".zarr", 3),
    "counts_2_24_zip": (".zarr.zip", 2),
    "dense_tall_v3_zip": (".zarr.zip", 3),
    "pbmc_sparse_v3_zip_auto": (".zarr.zip", 3),
    # every kind of input gives the store 0.9.5 writes from it
    "input_csc": (".zarr", 2),
    "input_dask": (".zarr", 2),
    "input_backed_h5ad": (".zarr", 2),
    "input_numpy": (".zarr", 2),
    # empty genes and cells, one gene, cells just past a chunk of 65,536
    "empty_genes_and_cells": (".zarr", 2),
    "single_gene": (".zarr", 2),
    "cells_65537": (".zarr", 2),
}

#: Written with the default chunk encoder (libdeflate when installed): other deflate
#: streams of the same values, so only the arrays and metadata are compared.
AUTO_CODEC = {"pbmc_sparse_v3_zip_auto"}

#: Arguments both cellucid 0.9.5 and prepare_store refuse, before anything is written.
REFUSED = {
    "citation_url_relative": {"citation_text": "A", "citation_url": "doi.org/10.1/x"},
    "citation_url_without_text": {"citation_url": "https://example.org/a"},
    "source_url_ftp": {"source_name": "S", "source_url": "ftp://example.org/a"},
    "description_trailing_space": {"dataset_description": "About this "},
    "name_with_zero_width_space": {"dataset_name": "Na\u200bme"},
    "zip_suffix_for_zarr": {"out": "x.zarr.zip", "format": "zarr"},
    "zarr_suffix_for_zip": {"out": "x.zarr", "format": "zarr.zip"},
    "zarr_format_4": {"zarr_format": 4},
}


def _pbmc_sparse():
    sparse = _pbmc()
    sparse.X = sp.csr_matrix(np.where(sparse.X > 0.5, sparse.X, 0))
    return sparse


@pytest.fixture(scope="module")
def oracle_cases(tmp_path_factory):
    """Every store written, by name: ``(path, its X as stored, dense)``."""
    base = tmp_path_factory.mktemp("oracle095")
    cases = {}

    def path(name):
        suffix, _ = FORMS[name]
        return base / f"{name}{suffix}"

    def fmt(name):
        suffix, zarr_format = FORMS[name]
        return {
            "format": suffix.lstrip(".") if suffix != ".zarr" else "zarr",
            "zarr_format": zarr_format,
        }

    pbmc = _pbmc()
    for name in ("pbmc_dense", "pbmc_dense_v3_zip"):
        _zlib_store(
            path(name), data=pbmc, dataset_id="pbmc68k", dataset_name="PBMC 68k", **fmt(name)
        )
        cases[name] = (path(name), np.asarray(pbmc.X, dtype=np.float32))
    sparse = _pbmc_sparse()
    name = "pbmc_sparse_v3_zip_auto"
    prepare_store(
        path(name), data=sparse, dataset_id="pbmc68k.auto", dataset_name="PBMC auto", **fmt(name)
    )
    cases[name] = (path(name), sparse.X.toarray().astype(np.float32))
    for name, extra in (("pbmc_sparse", {}), ("pbmc_sparse_v3", IDENTITY)):
        _zlib_store(
            path(name),
            data=sparse,
            dataset_id="pbmc68k.sparse",
            dataset_name="PBMC sparse",
            num_workers=4,
            scheduler="threads",
            **extra,
            **fmt(name),
        )
        cases[name] = (path(name), sparse.X.toarray().astype(np.float32))
    for name, target, big in (
        ("above_65536", 65536 + 9, False),
        ("below_65536", 65536 - 9, False),
        ("counts_2_24", 5000, True),
        ("above_65536_v3", 65536 + 9, False),
        ("counts_2_24_zip", 5000, True),
    ):
        m, obs, var, emb = _synthetic(target, big_counts=big)
        _zlib_store(
            path(name),
            gene_expression=m,
            obs=obs,
            var=var,
            embeddings=emb,
            dataset_id=name,
            dataset_name=f"Case {name}",
            scheduler="threads",
            **fmt(name),
        )
        cases[name] = (path(name), m.toarray().astype(np.float64 if big else np.float32))
    tall = np.zeros((2**18 + 5, 3), dtype=np.float32)
    tall[::7, 0] = 1.5
    tall[-3:, 2] = 2.0  # gene 1 all zero: its chunks are not written
    for name in ("dense_tall", "dense_tall_v3_zip"):
        _zlib_store(
            path(name),
            gene_expression=tall,
            embeddings={"X_umap": np.zeros((tall.shape[0], 2), np.float32)},
            var=pd.DataFrame(index=["A", "B", "C"]),
            dataset_id="tall",
            dataset_name="Tall",
            scheduler="threads",
            **fmt(name),
        )
        cases[name] = (path(name), tall)
    _input_kinds(base, cases, path)
    return cases


def _input_kinds(base, cases, path):
    """The synthetic matrix given as CSC, Dask, a backed .h5ad and NumPy; the edge cases."""
    import anndata as ad
    import dask.array as da

    m, obs, var, emb = _synthetic(20000)
    backed = base / "input.h5ad"
    ad.AnnData(X=m.astype(np.float32), obs=obs, var=var, obsm=emb).write_h5ad(backed)
    dense = m.toarray().astype(np.float32)
    kinds = {
        "input_csc": sp.csc_matrix(m),
        "input_dask": da.from_array(dense, chunks=(70, 90)).map_blocks(
            sp.csr_matrix, meta=sp.csr_matrix((0, 0), dtype=np.float32)
        ),
        "input_backed_h5ad": None,
        "input_numpy": dense,
    }
    for name, x in kinds.items():
        given = (
            {"data": ad.read_h5ad(backed, backed="r")}
            if x is None
            else {"gene_expression": x, "obs": obs, "var": var, "embeddings": emb}
        )
        _zlib_store(
            path(name),
            dataset_id=name,
            dataset_name=f"Case {name}",
            scheduler="threads",
            max_memory="64MB",
            **given,
        )
        cases[name] = (path(name), dense)
    empty = m.toarray().astype(np.float32)
    empty[:, :7] = 0
    empty[:11] = 0
    one = m[:, [5]].toarray().astype(np.float32)
    rng = np.random.default_rng(7)
    tall = sp.random(65537, 4, density=0.3, format="csr", random_state=rng, dtype=np.float32)
    for name, x in (
        ("empty_genes_and_cells", sp.csr_matrix(empty)),
        ("single_gene", sp.csr_matrix(one)),
        ("cells_65537", tall),
    ):
        n, g = x.shape
        _zlib_store(
            path(name),
            gene_expression=x,
            var=pd.DataFrame(index=[f"G{j}" for j in range(g)]),
            embeddings={"X_umap": np.random.default_rng(1).normal(size=(n, 2))},
            dataset_id=name,
            dataset_name=f"Case {name}",
            scheduler="threads",
        )
        cases[name] = (path(name), x.toarray().astype(np.float32))


@pytest.fixture(scope="module")
def oracle_reports(oracle_095, oracle_cases, tmp_path_factory):
    base = tmp_path_factory.mktemp("oracle095ref")
    names = list(oracle_cases)
    jobs = [
        [str(p), str(base / f"ref_{k}{FORMS[k][0]}"), {"zarr_format": FORMS[k][1]}]
        for k, (p, _) in oracle_cases.items()
    ]
    for key, kwargs in REFUSED.items():
        names.append(f"refuse:{key}")
        jobs.append(["refuse", kwargs.get("out", "x.zarr"), _refused_kwargs(kwargs)])
    done = subprocess.run(
        [str(oracle_095), str(SCRIPT), json.dumps(jobs)],
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(zip(names, json.loads(done.stdout), strict=True))


def _refused_kwargs(kwargs):
    """The prepare() arguments of a refused case (besides data=), both libraries' names."""
    out = {"format": "zarr", "dataset_id": "refused", "dataset_name": "Refused"}
    out.update({k: v for k, v in kwargs.items() if k != "out"})
    return out


CASES = list(FORMS)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_browser_opens_our_store(oracle_reports, case):
    report = oracle_reports[case]
    assert report["server"] is True
    assert report["undecodable"] == []


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_cellucid_095_reproduces_our_store(oracle_reports, case):
    report = oracle_reports[case]
    assert report["zmetadata_diff"] == []
    assert report["zmetadata_equal"] is True
    assert report["arrays_differ"] == []
    assert report["only_ours"] == [] and report["only_ref"] == []
    if case in AUTO_CODEC:  # other gzip members of X's values; Blosc's indices the same
        assert all(k.startswith("X/data/c/") for k in report["bytes_differ"])
    else:
        assert report["bytes_differ"] == []  # the same zlib: the same chunk bytes


@pytest.mark.slow
@pytest.mark.parametrize("case", [c for c in CASES if FORMS[c] != (".zarr", 2)])
def test_v3_and_zip_are_what_cellucid_095_writes(oracle_reports, case):
    report = oracle_reports[case]
    suffix, zarr_format = FORMS[case]
    assert report["zarr_format"] == zarr_format
    if suffix == ".zarr.zip":
        assert report["zip_root"] == ""  # the store at the top of the archive
        assert report["same_entry_order"] is True
        if case not in AUTO_CODEC:
            assert report["same_archive_bytes"] is True


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_read_genes_round_trips_every_gene(oracle_cases, case):
    path, want = oracle_cases[case]
    got = read_genes(str(path))
    assert len(got) == want.shape[1]
    for j, values in enumerate(got.values()):
        assert values.dtype == want.dtype
        np.testing.assert_array_equal(values, want[:, j])


@pytest.mark.slow
@pytest.mark.parametrize("case", list(REFUSED))
def test_what_cellucid_095_refuses_is_refused_before_writing(oracle_reports, tmp_path, case):
    oracle = oracle_reports[f"refuse:{case}"]
    assert oracle["refused"] is not None and oracle["written"] is False
    kwargs = _refused_kwargs(REFUSED[case])
    out = tmp_path / REFUSED[case].get("out", "x.zarr")
    m, _, var, emb = _synthetic(500)
    with pytest.raises(InvalidOptionError):
        prepare_store(out, gene_expression=m, var=var, embeddings=emb, **kwargs)
    assert list(tmp_path.iterdir()) == []
