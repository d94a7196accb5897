"""A store told apart from a folder, read by gene name, validated and verified exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import dask_cellucid
from dask_cellucid.formats.detect import detect
from dask_cellucid.formats.store.read import StoreReader, read_named_genes
from dask_cellucid.formats.store.validate import validate_store
from dask_cellucid.storage import Target
from dask_cellucid.store_api import prepare_store, verify_store

N_CELLS, N_GENES = 90, 8


def _store(tmp_path, x, name="s.zarr", **kw):
    var = pd.DataFrame(index=[f"G{j}" for j in range(x.shape[1])])
    emb = {"X_umap": np.random.default_rng(0).normal(size=(x.shape[0], 2))}
    out = tmp_path / name
    prepare_store(
        out,
        gene_expression=x,
        var=var,
        embeddings=emb,
        dataset_id="d-1",
        dataset_name="D one",
        scheduler="threads",
        **kw,
    )
    return out


def _sparse(seed=0):
    return sp.random(N_CELLS, N_GENES, density=0.3, format="csr", random_state=seed).astype(
        np.float32
    )


def test_detect(tmp_path):
    store = _store(tmp_path, _sparse())
    assert detect(str(store)) == "store"
    assert detect(Target.from_url(str(store))) == "store"
    # a store without its metadata is still a (broken) store, by its name
    (store / ".zmetadata").unlink()
    assert detect(str(store)) == "store"
    # a folder with .zmetadata is a store whatever its name
    other = tmp_path / "plain"
    other.mkdir()
    (other / ".zmetadata").write_text("{}")
    assert detect(str(other)) == "store"
    # anything else is an export folder, even a missing path; and a folder export named .zarr
    assert detect(str(tmp_path / "nothing")) == "folder"
    folder = tmp_path / "odd.zarr"
    folder.mkdir()
    (folder / "var_manifest.json").write_text("{}")
    assert detect(str(folder)) == "folder"


def test_reader_names_scalars_and_genes(tmp_path):
    x = _sparse()
    store = _store(tmp_path, x)
    reader = StoreReader(str(store))
    assert reader.gene_names() == [f"G{j}" for j in range(N_GENES)]
    assert str(reader.array("uns/cellucid/id")) == "d-1"
    got = read_named_genes(str(store), ["G6", 1])
    np.testing.assert_array_equal(got["G6"], x.toarray()[:, 6])
    np.testing.assert_array_equal(got[1], x.toarray()[:, 1])
    with pytest.raises(dask_cellucid.GeneIdError, match="99"):
        read_named_genes(str(store), [99])


def test_read_gene_dense_store_through_the_public_api(tmp_path):
    x = np.random.default_rng(3).random((N_CELLS, N_GENES)).astype(np.float32)
    store = _store(tmp_path, x)
    for j in range(N_GENES):
        np.testing.assert_array_equal(dask_cellucid.read_gene(store, f"G{j}"), x[:, j])
    assert validate_store(str(store)).ok


def test_read_gene_reads_only_metadata_indptr_index_and_covering_chunks(tmp_path, monkeypatch):
    x = sp.random(400, 30, density=0.5, format="csr", random_state=2).astype(np.float32)
    store = _store(tmp_path, x, chunk_values=256)
    seen = []
    original = Target.read

    def spy(self, rel):
        seen.append(rel)
        return original(self, rel)

    monkeypatch.setattr(Target, "read", spy)
    got = dask_cellucid.read_gene(store, 20)
    np.testing.assert_array_equal(got, x.toarray()[:, 20])
    assert all(
        r == ".zmetadata" or r.startswith(("X/indptr/", "X/data/", "X/indices/")) for r in seen
    ), seen
    data_chunks = {r for r in seen if r.startswith("X/data/")}
    assert 1 <= len(data_chunks) <= 2  # 200 values of one gene: one or two 256-value chunks


def test_validate_store_reports_a_missing_data_chunk_and_an_unreadable_document(tmp_path):
    store = _store(tmp_path, _sparse(), chunk_values=16)
    assert validate_store(str(store), chunk=16).ok
    (store / "X" / "data" / "2").unlink()
    report = validate_store(str(store), chunk=16)
    assert not report.ok
    assert any("X/data/2" in p for p in report.problems), report.problems
    (store / ".zmetadata").write_text("not json")
    report = validate_store(str(store))
    assert not report.ok and "cannot be read" in report.problems[0]
    assert "problem(s)" in str(report)


def test_verify_store_subset_and_wrong_cell_count(tmp_path):
    x = _sparse()
    store = _store(tmp_path, x, gene_identifiers=["G5", "G0"])
    var = pd.DataFrame(index=[f"G{j}" for j in range(N_GENES)])
    target = Target.from_url(str(store))
    report = verify_store(target, x, var, scheduler="threads")
    assert report.ok and report.n_genes == 2
    report = verify_store(target, x, var, gene_identifiers=["G0", "G3"], scheduler="threads")
    assert report.missing == ["G3"] and not report.ok
    report = verify_store(target, x[:50], var, scheduler="threads")
    assert not report.ok and "90 cells" in report.problems[0]
