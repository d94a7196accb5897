"""formats/folder/dataset.py: embeddings, the obs manifest, the dataset identity."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from dask_cellucid.errors import InputShapeError, InvalidOptionError
from dask_cellucid.formats.folder import dataset
from dask_cellucid.formats.folder.spec import Encoding


def test_normalize_embedding_fits_minus_one_to_one_with_one_scale():
    rng = np.random.default_rng(0)
    coords = np.column_stack([rng.uniform(10, 30, 50), rng.uniform(-2, 3, 50)])
    out = dataset.normalize_embedding(coords, "X_umap_2d")
    assert out.dtype == np.dtype("<f4")
    assert out.shape == coords.shape
    assert out.min() >= -1 and out.max() <= 1
    # the widest axis spans exactly [-1, 1]; every axis is centred
    assert out[:, 0].min() == pytest.approx(-1) and out[:, 0].max() == pytest.approx(1)
    np.testing.assert_allclose(out.min(axis=0) + out.max(axis=0), 0, atol=1e-6)
    # one scale for all axes: the aspect ratio is kept
    spans = coords.max(axis=0) - coords.min(axis=0)
    out_spans = out.max(axis=0).astype(float) - out.min(axis=0)
    assert out_spans[1] / out_spans[0] == pytest.approx(spans[1] / spans[0], rel=1e-5)


@pytest.mark.parametrize(
    ("coords", "match"),
    [
        (np.zeros(5), "2-D"),
        (np.zeros((0, 2)), "2-D"),
        (np.array([[0.0, 1.0], [np.nan, 2.0]]), "NaN or Inf"),
        (np.array([[0.0, 1.0], [np.inf, 2.0]]), "NaN or Inf"),
        (np.ones((4, 2)), "same point"),
    ],
)
def test_normalize_embedding_refuses_what_cannot_be_shown(coords, match):
    with pytest.raises(InputShapeError, match=match):
        dataset.normalize_embedding(coords, "X_umap_2d")


def test_embedding_files_names_and_lengths():
    n = 6
    emb = {3: np.arange(n * 3, dtype=float).reshape(n, 3), 1: np.arange(n, dtype=float)[:, None]}
    files = dataset.embedding_files(emb, n, Encoding(8, None))
    assert list(files) == ["points_1d.bin", "points_3d.bin"]
    assert len(files["points_1d.bin"]) == n * 1 * 4
    assert len(files["points_3d.bin"]) == n * 3 * 4
    pts = np.frombuffer(files["points_3d.bin"], "<f4").reshape(n, 3)
    np.testing.assert_array_equal(pts, dataset.normalize_embedding(emb[3], "X_umap_3d"))


def test_compressed_embedding_files_hold_the_same_points():
    n = 6
    emb = {2: np.arange(n * 2, dtype=float).reshape(n, 2)}
    plain = dataset.embedding_files(emb, n, Encoding(8, None, codec="zlib"))
    packed = dataset.embedding_files(emb, n, Encoding(8, 6, codec="zlib"))
    assert list(packed) == ["points_2d.bin.gz"]
    assert gzip.decompress(packed["points_2d.bin.gz"]) == plain["points_2d.bin"]


@pytest.mark.parametrize("shape", [(5, 2), (6, 3), (6,)])
def test_embedding_files_refuse_the_wrong_shape(shape):
    with pytest.raises(InputShapeError, match=r"expected \(6, 2\) for 6 cells"):
        dataset.embedding_files({2: np.zeros(shape)}, 6, Encoding(8, None))


def _identity(**kw):
    args = {
        "dataset_id": "pbmc3k",
        "name": "PBMC",
        "description": "",
        "n_cells": 10,
        "n_genes": 4,
        "dims": [2, 3],
        "encoding": Encoding(8, 6),
        "layout": "key",
    }
    return dataset.identity(**{**args, **kw})


@pytest.mark.parametrize("bad", ["", "-lead", ".lead", "has space", "a/b", "é"])
def test_identity_refuses_a_bad_dataset_id(bad):
    with pytest.raises(InvalidOptionError, match="dataset_id"):
        _identity(dataset_id=bad)


def test_identity_document():
    doc = _identity()
    assert doc["version"] == 2
    assert doc["id"] == "pbmc3k"
    assert doc["cellucid_data_version"] == "0.9.0"
    assert doc["stats"]["n_cells"] == 10
    assert doc["stats"]["n_genes"] == 4
    assert doc["embeddings"] == {
        "available_dimensions": [2, 3],
        "default_dimension": 3,
        "files": {"2d": "points_2d.bin.gz", "3d": "points_3d.bin.gz"},
    }
    assert doc["export_settings"]["compression"] == 6
    assert doc["export_settings"]["var_quantization"] == 8
    assert "created_at" not in doc  # re-exports stay byte-identical


def test_identity_per_layout_dims_and_created_at():
    doc = _identity(
        layout="index",
        dims=[1, 2],
        encoding=Encoding(None, None),
        created_at="2026-01-31T12:00:00Z",
    )
    assert doc["cellucid_data_version"] == "0.9.2"
    assert doc["embeddings"]["default_dimension"] == 2
    assert doc["embeddings"]["files"] == {"1d": "points_1d.bin", "2d": "points_2d.bin"}
    assert doc["export_settings"]["compression"] is None
    assert doc["created_at"] == "2026-01-31T12:00:00Z"
    with pytest.raises(InvalidOptionError, match="created_at"):
        _identity(created_at="2026-01-31 12:00")


def test_dataset_id_from_folder_names():
    assert dataset.dataset_id_from("my data") == "my_data"
    assert dataset.dataset_id_from("pbmc3k.v2") == "pbmc3k.v2"
    assert dataset.dataset_id_from("__") == "dataset"


def test_obs_manifest_is_empty():
    doc = dataset.obs_manifest(10, 0)
    assert doc["n_points"] == 10
    assert doc["compression"] is None
    assert doc["_continuousFields"] == doc["_categoricalFields"] == []


def _raw(doc):
    return json.dumps(doc).encode()


def test_check_existing_without_a_folder():
    assert dataset.check_existing(None, None, 10, Encoding(8, 6)) is None


def test_check_existing_returns_an_identity_that_fits():
    ident = _identity(n_cells=10)
    assert dataset.check_existing(_raw(ident), None, 10, Encoding(8, 6)) == ident
    # a folder that records no compression takes ours
    del ident["export_settings"]
    assert dataset.check_existing(_raw(ident), None, 10, Encoding(8, None)) == ident


def test_check_existing_refuses_another_cell_count():
    with pytest.raises(InputShapeError, match="describes 10 cells but the matrix has 11"):
        dataset.check_existing(_raw(_identity(n_cells=10)), None, 11, Encoding(8, 6))


def test_check_existing_refuses_another_compression():
    ident = _raw(_identity(encoding=Encoding(8, 6)))
    with pytest.raises(InvalidOptionError, match="compression=6"):
        dataset.check_existing(ident, None, 10, Encoding(8, None))
    # the obs manifest, when there, is what the viewer reads
    obs = _raw(dataset.obs_manifest(10, None))
    assert dataset.check_existing(ident, obs, 10, Encoding(8, None)) is not None
    with pytest.raises(InvalidOptionError):
        dataset.check_existing(ident, obs, 10, Encoding(8, 6))


def test_with_genes_updates_a_copy():
    ident = _identity(n_genes=0)
    updated = dataset.with_genes(ident, 25, 16)
    assert updated["stats"]["n_genes"] == 25
    assert updated["export_settings"]["var_quantization"] == 16
    assert ident["stats"]["n_genes"] == 0


def test_dumps_refuses_nan():
    assert json.loads(dataset.dumps(_identity())) == _identity()
    with pytest.raises(ValueError):
        dataset.dumps({"x": float("nan")})
