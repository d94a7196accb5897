"""The export folder as a whole: replacing, failing safely, and a folder that opens."""

from __future__ import annotations

import contextlib
import io
import json
import time
from pathlib import Path

import dask.array as da
import numpy as np
import pandas as pd
import pytest

from dask_cellucid import InvalidOptionError, TargetExistsError, prepare, read_gene, read_manifest
from dask_cellucid.testing import export_files, random_matrix

X = random_matrix(50, 12, density=0.3, seed=2)
GENES = [f"G{j}" for j in range(12)]
RNG = np.random.default_rng(0)
UMAP2 = RNG.normal(size=(50, 2))
UMAP3 = RNG.normal(size=(50, 3))


def failing(x: np.ndarray, bad_block: int, delay: float = 0.0, times: float = np.inf) -> da.Array:
    """``x`` as Dask, with one block failing (the first ``times`` times it is read)."""
    failures = []

    def maybe_fail(b, block_info=None):
        if block_info[0]["chunk-location"][1] == bad_block and len(failures) < times:
            failures.append(1)
            time.sleep(delay)  # let the other blocks finish first
            msg = "disk on fire"
            raise RuntimeError(msg)
        return b

    return da.from_array(x, chunks=(-1, 4)).map_blocks(maybe_fail, dtype=x.dtype)


def test_existing_export_is_refused_without_force(tmp_path: Path) -> None:
    prepare(X, GENES, out_dir=tmp_path, var_quantization=8)
    before = export_files(tmp_path)
    with pytest.raises(TargetExistsError, match="force=True"):
        prepare(X * 2, GENES, out_dir=tmp_path, var_quantization=8)
    assert export_files(tmp_path) == before


def test_force_replaces_the_whole_gene_export(tmp_path: Path) -> None:
    prepare(X, GENES, out_dir=tmp_path, var_quantization=8)
    prepare(
        X * 2,
        [g + "x" for g in GENES],
        out_dir=tmp_path,
        force=True,
        var_quantization=8,
        gene_identifiers=["G1x", "G2x"],
    )
    assert sorted(p.name for p in (tmp_path / "var").iterdir()) == [
        "G1x.values.u8",
        "G2x.values.u8",
    ]
    np.testing.assert_allclose(read_gene(tmp_path, "G1x"), X[:, 1].toarray().ravel() * 2, atol=0.05)


def test_a_failed_export_leaves_no_manifest(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="disk on fire"):
        prepare(
            failing(X.toarray(), 1),
            GENES,
            out_dir=tmp_path,
            genes_per_block=4,
            scheduler="synchronous",
        )
    assert not (tmp_path / "var_manifest.json").exists()


def test_force_withdraws_the_old_manifest_before_touching_payloads(tmp_path: Path) -> None:
    prepare(X, GENES, out_dir=tmp_path, var_quantization=8)
    with pytest.raises(RuntimeError, match="disk on fire"):
        prepare(
            failing(X.toarray() * 3, 2),
            GENES,
            out_dir=tmp_path,
            force=True,
            var_quantization=8,
            genes_per_block=4,
            scheduler="synchronous",
        )
    # some payloads were already rewritten with new values: an old manifest would lie
    assert not (tmp_path / "var_manifest.json").exists()


def test_unfinished_export_with_other_settings_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        prepare(
            failing(X.toarray(), 2),
            GENES,
            out_dir=tmp_path,
            genes_per_block=4,
            scheduler="synchronous",
        )
    with pytest.raises(TargetExistsError, match="unfinished export"):
        prepare(X, GENES, out_dir=tmp_path, var_quantization=16)
    prepare(X, GENES, out_dir=tmp_path, var_quantization=16, force=True)
    assert read_manifest(tmp_path)["quantization"] == 16


def test_rerun_after_failure_resumes_the_same_export(tmp_path: Path) -> None:
    out = tmp_path / "out"
    flaky = failing(X.toarray(), 2, delay=1.0, times=1)  # fails once, like a lost worker
    with pytest.raises(RuntimeError):
        prepare(flaky, GENES, out_dir=out, genes_per_block=4, scheduler="threads", num_workers=3)
    assert len(list((out / "var").iterdir())) == 8
    assert not (out / "var_manifest.json").exists()
    result = prepare(flaky, GENES, out_dir=out, genes_per_block=4)
    assert result.n_genes_written == 4  # blocks 0 and 1 were written intact before the failure
    prepare(X, GENES, out_dir=tmp_path / "fresh")
    assert export_files(out) == export_files(tmp_path / "fresh")


@pytest.mark.parametrize("compression", [None, 6])
def test_embedding_makes_a_folder_that_opens(tmp_path: Path, compression) -> None:
    prepare(
        X,
        GENES,
        out_dir=tmp_path / "my pbmc",
        X_umap_2d=UMAP2,
        X_umap_3d=UMAP3,
        var_quantization=8,
        compression=compression,
        dataset_name="PBMC",
    )
    root = tmp_path / "my pbmc"
    gz = ".gz" if compression else ""
    ident = json.loads((root / "dataset_identity.json").read_text())
    assert set(ident) <= {
        "version",
        "id",
        "name",
        "description",
        "cellucid_data_version",
        "stats",
        "embeddings",
        "obs_fields",
        "created_at",
        "export_settings",
        "source",
        "vector_fields",
    }
    assert ident["version"] == 2 and ident["id"] == "my_pbmc" and ident["name"] == "PBMC"
    assert ident["stats"] == {
        "n_cells": 50,
        "n_genes": 12,
        "n_obs_fields": 0,
        "n_categorical_fields": 0,
        "n_continuous_fields": 0,
        "has_connectivity": False,
        "n_edges": None,
    }
    assert ident["embeddings"] == {
        "available_dimensions": [2, 3],
        "default_dimension": 3,
        "files": {"2d": f"points_2d.bin{gz}", "3d": f"points_3d.bin{gz}"},
    }
    assert ident["export_settings"] == {
        "compression": compression,
        "var_quantization": 8,
        "obs_continuous_quantization": None,
        "obs_categorical_dtype": "uint8",
    }
    obs = json.loads((root / "obs_manifest.json").read_text())
    assert obs == {
        "_format": "compact_v1",
        "n_points": 50,
        "centroid_outlier_quantile": None,
        "latent_key": None,
        "compression": compression,
        "_obsSchemas": {},
        "_continuousFields": [],
        "_categoricalFields": [],
    }
    import gzip

    for d, src in ((2, UMAP2), (3, UMAP3)):
        raw = (root / f"points_{d}d.bin{gz}").read_bytes()
        pts = np.frombuffer(gzip.decompress(raw) if compression else raw, "<f4").reshape(50, d)
        assert np.isfinite(pts).all() and pts.min() >= -1 and pts.max() <= 1
        assert np.isclose(np.abs(pts).max(), 1.0)
        # one scale for every axis: distances keep their ratios
        a, b = np.linalg.norm(src[0] - src[1]), np.linalg.norm(src[0] - src[2])
        pa, pb = np.linalg.norm(pts[0] - pts[1]), np.linalg.norm(pts[0] - pts[2])
        assert np.isclose(a / b, pa / pb, rtol=1e-4)
    assert read_manifest(root)["n_points"] == ident["stats"]["n_cells"]


def _cellucid_folder(out: Path, compression) -> None:
    cellucid = pytest.importorskip("cellucid")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        cellucid.prepare(
            obs=pd.DataFrame(index=[str(i) for i in range(50)]),
            obs_keys=[],
            out_dir=out,
            latent_space=UMAP3,
            X_umap_2d=UMAP2,
            centroid_outlier_quantile=None,
            obs_categorical_dtype="uint8",
            dataset_name="theirs",
            dataset_id="theirs",
            compression=compression,
        )


def test_genes_are_added_to_a_folder_cellucid_made(tmp_path: Path) -> None:
    _cellucid_folder(tmp_path, compression=6)
    before = json.loads((tmp_path / "dataset_identity.json").read_text())
    assert before["stats"]["n_genes"] == 0
    prepare(X, GENES, out_dir=tmp_path, var_quantization=16, compression=6, layout="index")
    after = json.loads((tmp_path / "dataset_identity.json").read_text())
    assert after["stats"]["n_genes"] == 12
    assert after["export_settings"]["var_quantization"] == 16
    assert {k: v for k, v in after.items() if k not in ("stats", "export_settings")} == {
        k: v for k, v in before.items() if k not in ("stats", "export_settings")
    }
    assert read_manifest(tmp_path)["compression"] == 6


def test_compression_must_agree_with_the_existing_folder(tmp_path: Path) -> None:
    _cellucid_folder(tmp_path, compression=6)
    with pytest.raises(InvalidOptionError, match="compression=6"):
        prepare(X, GENES, out_dir=tmp_path, var_quantization=8, compression=None)
    assert not (tmp_path / "var_manifest.json").exists() and not (tmp_path / "var").exists()


def test_embedding_over_an_existing_dataset_needs_force(tmp_path: Path) -> None:
    prepare(X, GENES, out_dir=tmp_path, X_umap_2d=UMAP2)
    with pytest.raises(TargetExistsError, match=r"dataset_identity\.json"):
        prepare(X, GENES, out_dir=tmp_path, X_umap_2d=UMAP2, gene_identifiers=["G1"])


def test_same_folder_bytes_on_reexport(tmp_path: Path) -> None:
    for name in ("a", "b"):
        prepare(
            X,
            GENES,
            out_dir=tmp_path / name,
            X_umap_2d=UMAP2,
            var_quantization=8,
            compression=6,
            dataset_id="same",
        )
    assert export_files(tmp_path / "a") == export_files(tmp_path / "b")
