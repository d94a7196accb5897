"""``dask-cellucid export --format zarr``, ``validate`` and ``verify`` on Cellucid-ready stores."""

from __future__ import annotations

import os
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import dask_cellucid
from conftest import write_anndata
from dask_cellucid.cli import DEMO_ID, DEMO_STORE, main
from dask_cellucid.formats.detect import detect
from dask_cellucid.testing import random_matrix

N_CELLS, N_GENES = 150, 12


def _adata(seed: int = 0) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    a = ad.AnnData(
        random_matrix(N_CELLS, N_GENES, density=0.3, seed=seed).astype(np.float32),
        obs=pd.DataFrame(
            {
                "cell_type": pd.Categorical(rng.choice(["T", "B"], N_CELLS)),
                "score": rng.random(N_CELLS),
            },
            index=[f"c{i}" for i in range(N_CELLS)],
        ),
        var=pd.DataFrame({"mean": rng.random(N_GENES)}, index=[f"G{j}" for j in range(N_GENES)]),
        layers={"counts": random_matrix(N_CELLS, N_GENES, density=0.4, seed=seed + 1)},
    )
    a.obsm["X_umap"] = rng.normal(size=(N_CELLS, 2)).astype(np.float32)
    a.obsm["X_pca"] = rng.normal(size=(N_CELLS, 5))
    return a


@pytest.fixture(scope="module")
def adata() -> ad.AnnData:
    return _adata()


@pytest.fixture(scope="module")
def h5ad(adata: ad.AnnData, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_anndata(adata, tmp_path_factory.mktemp("store-cli") / "data.h5ad")


@pytest.fixture(scope="module")
def store(h5ad: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("store-out") / "pbmc.zarr"
    assert main(["export", str(h5ad), str(out), "--format", "zarr", "--scheduler", "threads"]) == 0
    return out


def _dense(x: object) -> np.ndarray:
    return x.toarray() if sp.issparse(x) else np.asarray(x)  # type: ignore[union-attr]


@pytest.mark.parametrize("suffix", [".h5ad", ".zarr"])
def test_export_format_zarr_round_trips_exactly(
    tmp_path: Path, adata: ad.AnnData, suffix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    src = write_anndata(adata, tmp_path / f"data{suffix}")
    out = tmp_path / "my data.zarr"
    rc = main(["export", str(src), str(out), "--format", "zarr", "--verify", "--workers", "2"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "Open it with cellucid 0.9.5 or later: pip install cellucid && cellucid serve" in (
        captured.out
    )
    assert "Verified" in captured.out
    back = ad.read_zarr(out)
    np.testing.assert_array_equal(_dense(back.X), _dense(adata.X))
    assert back.X.dtype == np.float32
    assert list(back.var_names) == list(adata.var_names)
    assert list(back.obs_names) == list(adata.obs_names)
    pd.testing.assert_frame_equal(back.obs, adata.obs)
    np.testing.assert_array_equal(back.var["mean"], adata.var["mean"])
    assert set(back.obsm) == {"X_umap", "X_pca"}
    np.testing.assert_array_equal(back.obsm["X_umap"], adata.obsm["X_umap"])
    np.testing.assert_array_equal(back.obsm["X_pca"], adata.obsm["X_pca"].astype(np.float32))
    # the identity defaults from OUT's name, as the folder export's does
    assert back.uns["cellucid"]["id"] == "my_data"
    assert back.uns["title"] == "my_data"
    assert "layers" not in back.uns and not back.layers


def test_dataset_id_and_name_and_genes(tmp_path: Path, h5ad: Path, adata: ad.AnnData) -> None:
    out = tmp_path / "s.zarr"
    argv = ["export", str(h5ad), str(out), "--format", "zarr", "--genes", "G5,G2"]
    rc = main([*argv, "--dataset-id", "pbmc-3k", "--dataset-name", "PBMC 3k"])
    assert rc == 0
    back = ad.read_zarr(out)
    assert back.uns["cellucid"]["id"] == "pbmc-3k" and back.uns["title"] == "PBMC 3k"
    assert list(back.var_names) == ["G5", "G2"]
    np.testing.assert_array_equal(_dense(back.X), _dense(adata.X)[:, [5, 2]])


def test_existing_store_refused_then_replaced_with_force(
    tmp_path: Path, h5ad: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "s.zarr"
    argv = ["export", str(h5ad), str(out), "--format", "zarr"]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(argv) == 2
    assert "--force" in capsys.readouterr().err
    assert main([*argv, "--force"]) == 0


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--use-raw"], "--layer and --use-raw apply to the folder export only"),
        (["--layer", "counts"], "--layer and --use-raw apply to the folder export only"),
        (["--quantization", "16"], "--quantization"),
        (["--layout", "index"], "--layout"),
    ],
)
def test_folder_only_flags_refused(
    tmp_path: Path, h5ad: Path, extra: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "s.zarr"
    assert main(["export", str(h5ad), str(out), "--format", "zarr", *extra]) == 2
    assert says in capsys.readouterr().err
    assert not out.exists()


def test_out_must_end_in_zarr(
    tmp_path: Path, h5ad: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", str(h5ad), str(tmp_path / "s"), "--format", "zarr"]) == 2
    assert "does not end in .zarr" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("fmt", "name", "says"),
    [
        ("zarr.zip", "s.zarr", "does not end in .zarr.zip; name it e.g."),
        ("zarr", "s.zarr.zip", "does not end in .zarr; name it e.g."),
    ],
)
def test_out_must_end_in_the_formats_suffix(
    tmp_path: Path, h5ad: Path, fmt: str, name: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", str(h5ad), str(tmp_path / name), "--format", fmt]) == 2
    assert says in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_export_zarr_zip_v3_with_citation_validates_and_verifies(
    tmp_path: Path, h5ad: Path, adata: ad.AnnData, capsys: pytest.CaptureFixture[str]
) -> None:
    import zarr

    out = tmp_path / "my data.zarr.zip"
    argv = ["export", str(h5ad), str(out), "--format", "zarr.zip", "--zarr-format", "3"]
    argv += ["--citation-text", "Someone 2024", "--citation-url", "https://example.org/p"]
    argv += ["--dataset-description", "Blood.", "--source-name", "Lab", "--verify"]
    rc = main(argv)
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "Verified" in captured.out
    root = zarr.open_group(zarr.storage.ZipStore(out, mode="r"), mode="r")
    assert root.metadata.zarr_format == 3
    back = ad.io.read_elem(root)
    np.testing.assert_array_equal(_dense(back.X), _dense(adata.X))
    record = back.uns["cellucid"]
    assert record["id"] == "my_data" and record["description"] == "Blood."
    assert dict(record["citation"]) == {"text": "Someone 2024", "url": "https://example.org/p"}
    assert dict(record["source"]) == {"name": "Lab"}
    assert detect(str(out)) == "store"
    assert main(["validate", str(out)]) == 0
    assert main(["verify", str(out), str(h5ad)]) == 0
    got = dask_cellucid.read_gene(str(out), "G3")
    np.testing.assert_array_equal(got, _dense(adata.X)[:, 3])


def test_bad_citation_url_refused_before_writing(
    tmp_path: Path, h5ad: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "s.zarr"
    argv = ["export", str(h5ad), str(out), "--format", "zarr", "--citation-text", "x"]
    assert main([*argv, "--citation-url", "example.org"]) != 0
    assert "absolute http(s) address" in capsys.readouterr().err
    assert not out.exists()


def test_store_flags_refused_for_a_folder(
    tmp_path: Path, h5ad: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "folder"
    assert main(["export", str(h5ad), str(out), "--zarr-format", "3"]) == 2
    assert "--zarr-format" in capsys.readouterr().err
    assert not out.exists()


def test_the_demo_store_runs_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["export", "--format", "zarr"]) == 0
    first = capsys.readouterr().out
    assert f"cellucid serve {DEMO_STORE}" in first
    assert main(["export", "--format", "zarr"]) == 0
    assert "Replacing the demo store" in capsys.readouterr().out
    back = ad.read_zarr(tmp_path / DEMO_STORE)
    assert back.uns["cellucid"]["id"] == DEMO_ID
    assert back.shape == (20_000, 2_000)
    assert {"X_umap_2d", "X_umap_3d"} <= set(back.obsm)
    assert main(["validate", DEMO_STORE]) == 0


def test_the_demo_does_not_replace_a_store_of_someone_else(
    tmp_path: Path, h5ad: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["export", str(h5ad), DEMO_STORE, "--format", "zarr"]) == 0
    assert main(["export", "--format", "zarr"]) == 2
    assert "--force" in capsys.readouterr().err


def test_folder_export_recommends_format_zarr(
    tmp_path: Path, h5ad: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", str(h5ad), str(tmp_path / "folder")]) == 0
    assert "--format zarr" in capsys.readouterr().out


def test_validate_a_good_store(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert detect(str(store)) == "store"
    assert main(["validate", str(store)]) == 0
    out = capsys.readouterr().out
    assert "OK, no problem found" in out and "12 genes x 150 cells" in out
    report = dask_cellucid.validate(store)
    assert isinstance(report, dask_cellucid.StoreValidationReport) and report.ok


def _copy(store: Path, tmp_path: Path) -> Path:
    import shutil

    copy = tmp_path / "copy.zarr"
    shutil.copytree(store, copy)
    return copy


def test_validate_a_store_without_its_metadata(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = _copy(store, tmp_path)
    (broken / ".zmetadata").unlink()
    assert main(["validate", str(broken)]) == 1
    assert "no .zmetadata" in capsys.readouterr().out


def test_validate_a_store_missing_a_chunk(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = _copy(store, tmp_path)
    os.remove(broken / "X" / "data" / "0")
    assert main(["validate", str(broken)]) == 1
    out = capsys.readouterr().out
    assert "X/data/0" in out and "missing" in out
    assert not dask_cellucid.validate(broken).ok


def test_validate_a_folder_is_unchanged(tmp_path: Path, h5ad: Path) -> None:
    out = tmp_path / "folder"
    assert main(["export", str(h5ad), str(out)]) == 0
    assert detect(str(out)) == "folder"
    report = dask_cellucid.validate(out)
    assert isinstance(report, dask_cellucid.ValidationReport) and report.ok


def test_verify_store_against_its_source(
    store: Path, h5ad: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", str(store), str(h5ad)]) == 0
    assert "OK, all 12 genes match exactly" in capsys.readouterr().out
    report = dask_cellucid.verify(store, str(h5ad), scheduler="threads")
    assert isinstance(report, dask_cellucid.StoreVerifyReport) and report.ok
    assert report.n_genes == N_GENES


def test_verify_store_against_a_modified_source(
    store: Path, adata: ad.AnnData, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    changed = adata.copy()
    x = sp.csr_matrix(changed.X).toarray()
    x[7, 3] += 1.0
    changed.X = sp.csr_matrix(x)
    src = write_anndata(changed, tmp_path / "changed.h5ad")
    assert main(["verify", str(store), str(src)]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "'G3' (1 cells)" in out
    report = dask_cellucid.verify(store, x, adata.var)
    assert not report.ok and report.wrong == [("G3", 1)]


def test_verify_store_names_genes_the_source_lacks(store: Path, adata: ad.AnnData) -> None:
    x = _dense(adata.X)[:, :10]
    report = dask_cellucid.verify(store, x, list(adata.var_names[:10]))
    assert not report.ok
    assert report.extra == ["G10", "G11"]


def test_read_gene_from_a_store(store: Path, adata: ad.AnnData) -> None:
    want = _dense(adata.X)
    np.testing.assert_array_equal(dask_cellucid.read_gene(store, "G4"), want[:, 4])
    np.testing.assert_array_equal(dask_cellucid.read_gene(str(store), 0), want[:, 0])
    both = dask_cellucid.read_genes(store, ["G9", "G1"])
    assert list(both) == ["G9", "G1"]
    np.testing.assert_array_equal(both["G9"], want[:, 9])
    every = dask_cellucid.read_genes(store)
    assert list(every) == list(adata.var_names)
    with pytest.raises(dask_cellucid.GeneIdError, match="NOPE"):
        dask_cellucid.read_gene(store, "NOPE")
