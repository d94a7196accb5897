"""The differential test: our store against what cellucid==0.9.5's prepare writes from it.

cellucid 0.9.5 conflicts with the cellucid the suite installs, so it gets its own
venv, ``.venv-oracle-095`` at the repository root, built on first use (``python -m
venv``, then ``pip install cellucid==0.9.5``) and reused while its marker file says
so. If it cannot be built the tests skip, or fail when the environment variable CI
is set. ``oracle_095_script.py`` runs in it: for every store, ``AnnDataServer``
must construct on ours and ``browser_undecodable`` be empty, and
``cellucid.prepare(tmp, format="zarr", data=anndata.read_zarr(ours))`` must write
the same ``.zmetadata``, the same files with the same bytes, and the same arrays.
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


@pytest.fixture(scope="module")
def oracle_reports(oracle_095, tmp_path_factory):
    base = tmp_path_factory.mktemp("oracle095")
    cases = {}
    pbmc = _pbmc()
    _zlib_store(base / "pbmc_dense.zarr", data=pbmc, dataset_id="pbmc68k", dataset_name="PBMC 68k")
    cases["pbmc_dense"] = base / "pbmc_dense.zarr"
    sparse = pbmc.copy()
    sparse.X = sp.csr_matrix(np.where(sparse.X > 0.5, sparse.X, 0))
    _zlib_store(
        base / "pbmc_sparse.zarr",
        data=sparse,
        dataset_id="pbmc68k.sparse",
        dataset_name="PBMC sparse",
        num_workers=4,
        scheduler="threads",
    )
    cases["pbmc_sparse"] = base / "pbmc_sparse.zarr"
    for name, target, big in (
        ("above_65536", 65536 + 9, False),
        ("below_65536", 65536 - 9, False),
        ("counts_2_24", 5000, True),
    ):
        m, obs, var, emb = _synthetic(target, big_counts=big)
        out = base / f"{name}.zarr"
        _zlib_store(
            out,
            gene_expression=m,
            obs=obs,
            var=var,
            embeddings=emb,
            dataset_id=name,
            dataset_name=f"Case {name}",
            scheduler="threads",
        )
        cases[name] = out
    tall = np.zeros((2**18 + 5, 3), dtype=np.float32)
    tall[::7, 0] = 1.5
    tall[-3:, 2] = 2.0  # gene 1 all zero: its chunks are not written
    out = base / "dense_tall.zarr"
    _zlib_store(
        out,
        gene_expression=tall,
        embeddings={"X_umap": np.zeros((tall.shape[0], 2), np.float32)},
        var=pd.DataFrame(index=["A", "B", "C"]),
        dataset_id="tall",
        dataset_name="Tall",
        scheduler="threads",
    )
    cases["dense_tall"] = out
    jobs = [[str(p), str(base / f"ref_{k}.zarr"), {}] for k, p in cases.items()]
    done = subprocess.run(
        [str(oracle_095), str(SCRIPT), json.dumps(jobs)],
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(zip(cases, json.loads(done.stdout), strict=True))


CASES = [
    "pbmc_dense",
    "pbmc_sparse",
    "above_65536",
    "below_65536",
    "counts_2_24",
    "dense_tall",
]


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
    assert report["bytes_differ"] == []  # the same zlib: the same chunk bytes
