"""Zarr v3 and the single-file ``.zarr.zip``: written, read back by anndata, zarr and us.

The byte-for-byte comparison with cellucid 0.9.5 is in ``test_store_oracle.py``;
here: the default (libdeflate) chunks decode with zarr's own codecs, a
``.zarr.zip`` is laid out as the contract says, replaces only a file, leaves no
staging behind, and every reader of the package (read_gene, validate, verify,
detect) opens both forms.
"""

from __future__ import annotations

import gzip
import os
import zipfile

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import zarr

from dask_cellucid import read_genes, validate, verify
from dask_cellucid.errors import InvalidOptionError, TargetExistsError
from dask_cellucid.formats.detect import detect
from dask_cellucid.formats.store import archive
from dask_cellucid.formats.store.read import StoreReader
from dask_cellucid.formats.store.validate import validate as store_validate
from dask_cellucid.store_api import prepare_store

N_CELLS, N_GENES = 150, 23


def _args(seed=0, dense=False, **kw):
    rng = np.random.default_rng(seed)
    m = sp.random(N_CELLS, N_GENES, density=0.3, format="csr", random_state=seed)
    m = (m * 10).astype(np.float32)
    obs = pd.DataFrame(
        {"kind": rng.choice(["a", "b"], N_CELLS), "score": rng.normal(size=N_CELLS)},
        index=[f"c{i}" for i in range(N_CELLS)],
    )
    var = pd.DataFrame({"mean": rng.random(N_GENES)}, index=[f"G{j}" for j in range(N_GENES)])
    out = {
        "gene_expression": m.toarray() if dense else m,
        "obs": obs,
        "var": var,
        "embeddings": {"X_umap": rng.normal(size=(N_CELLS, 2))},
        "dataset_id": "v3-test",
        "dataset_name": "V3 test",
        "scheduler": "threads",
        "chunk_values": 64,
    }
    out.update(kw)
    return out


def _open(path):
    if str(path).endswith(".zarr.zip"):
        return zarr.open_group(zarr.storage.ZipStore(str(path), mode="r"), mode="r")
    return zarr.open_group(str(path), mode="r")


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("name", ["out.zarr", "out.zarr.zip"])
def test_v3_default_codec_reads_back_with_zarr_and_anndata(tmp_path, dense, name):
    args = _args(dense=dense)
    fmt = "zarr.zip" if name.endswith(".zip") else "zarr"
    out = tmp_path / name
    prepare_store(out, format=fmt, zarr_format=3, **args)  # codec "auto": libdeflate if any
    assert sorted(os.listdir(tmp_path)) == [name]  # no staging folder or partial archive
    root = _open(out)
    assert root.metadata.zarr_format == 3
    adata = ad.io.read_elem(root)
    x = adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X)
    want = args["gene_expression"]
    np.testing.assert_array_equal(x, want.toarray() if sp.issparse(want) else want)
    assert list(adata.var_names) == list(args["var"].index)
    assert adata.uns["cellucid"]["id"] == "v3-test"
    if not dense:
        # the chunks: gzip members (numcodecs' GZip decodes them) and blosc frames
        codecs = [c["name"] for c in root["X/data"].metadata.to_dict()["codecs"]]
        assert codecs == ["bytes", "gzip"]
        codecs = [c["name"] for c in root["X/indices"].metadata.to_dict()["codecs"]]
        assert codecs == ["bytes", "blosc"]
    assert store_validate(str(out), chunk=64) == []
    assert detect(str(out)) == "store"
    got = read_genes(str(out))
    np.testing.assert_array_equal(np.stack(list(got.values()), axis=1), x)


def test_v3_chunks_are_gzip_with_zero_time(tmp_path):
    out = tmp_path / "out.zarr"
    prepare_store(out, zarr_format=3, codec="zlib", **_args())
    raw = (out / "X" / "data" / "c" / "0").read_bytes()
    assert raw[:4] == b"\x1f\x8b\x08\x00" and raw[4:8] == b"\0\0\0\0"
    assert len(gzip.decompress(raw)) == 64 * 4
    assert not (out / ".zmetadata").exists()
    assert "consolidated_metadata" in (out / "zarr.json").read_text()


def test_zip_layout_chunks_first_metadata_last_stored_fixed_time(tmp_path):
    out = tmp_path / "out.zarr.zip"
    prepare_store(out, format="zarr.zip", **_args())
    with zipfile.ZipFile(out) as z:
        infos = z.infolist()
    names = [i.filename for i in infos]
    assert names[-1] == ".zmetadata"
    meta = [n.rsplit("/", 1)[-1] in archive.METADATA_NAMES for n in names]
    assert meta == sorted(meta)  # every chunk before every document
    assert {i.compress_type for i in infos} == {zipfile.ZIP_STORED}
    assert {i.date_time for i in infos} == {archive.ZIP_EPOCH}
    data = [n for n in names if n.startswith("X/data/") and n[7:].isdigit()]
    assert data == [f"X/data/{i}" for i in range(len(data))]  # grid order, numerically


def test_zip_force_replaces_a_file_only(tmp_path):
    out = tmp_path / "out.zarr.zip"
    prepare_store(out, format="zarr.zip", **_args())
    with pytest.raises(TargetExistsError, match="force=True"):
        prepare_store(out, format="zarr.zip", **_args())
    second = _args(seed=3)
    prepare_store(out, format="zarr.zip", force=True, **second)
    assert sorted(os.listdir(tmp_path)) == ["out.zarr.zip"]
    np.testing.assert_array_equal(
        StoreReader(out).read_gene(4), second["gene_expression"].toarray()[:, 4]
    )
    folder = tmp_path / "dir.zarr.zip"
    folder.mkdir()
    with pytest.raises(TargetExistsError, match="is a folder"):
        prepare_store(folder, format="zarr.zip", force=True, **_args())
    assert os.listdir(folder) == []


def test_identity_fields_from_arguments_and_from_data(tmp_path):
    identity = {
        "dataset_description": "",
        "citation_text": "Someone et al.",
        "citation_url": "https://example.org/paper",
        "source_name": "A lab",
    }
    out = tmp_path / "a.zarr"
    prepare_store(out, **_args(), **identity)
    record = ad.read_zarr(out).uns["cellucid"]
    assert record["description"] == ""
    assert dict(record["citation"]) == {
        "text": "Someone et al.",
        "url": "https://example.org/paper",
    }
    assert dict(record["source"]) == {"name": "A lab"}
    # data= fills them from uns['cellucid']; an explicit argument replaces one
    adata = ad.read_zarr(out)
    again = tmp_path / "b.zarr.zip"
    prepare_store(
        again,
        format="zarr.zip",
        zarr_format=3,
        data=adata,
        source_url="https://example.org/lab",
        scheduler="threads",
    )
    root = _open(again)
    record = ad.io.read_elem(root["uns"])["cellucid"]
    assert record["citation"]["url"] == "https://example.org/paper"
    assert dict(record["source"]) == {"name": "A lab", "url": "https://example.org/lab"}


def test_verify_and_validate_a_zip_and_a_damaged_zip(tmp_path):
    args = _args()
    out = tmp_path / "out.zarr.zip"
    prepare_store(out, format="zarr.zip", zarr_format=3, verify=True, **args)
    report = verify(str(out), args["gene_expression"], args["var"])
    assert report.ok, str(report)
    bad = tmp_path / "bad.zarr.zip"
    bad.write_bytes(b"not a zip")
    report = validate(str(bad))
    assert not report.ok and "ZIP" in str(report)
    with pytest.raises(InvalidOptionError, match="ZIP"):
        StoreReader(bad)


def test_entry_order_and_what_is_packed():
    names = [
        "zarr.json",
        "X/data/c/10",
        "X/zarr.json",
        "X/data/c/9",
        "obs/_index/c/0",
        "uns/cellucid/id/c",
        "X/c/0/1",
        "X/c/0/0",
    ]
    assert sorted(names, key=archive.entry_order) == [
        "X/c/0/0",
        "X/c/0/1",
        "X/data/c/9",
        "X/data/c/10",
        "obs/_index/c/0",
        "uns/cellucid/id/c",
        "X/zarr.json",
        "zarr.json",
    ]
    assert not archive.is_store_file(".dask-cellucid/export.json")
    assert not archive.is_store_file("X/data/c/.0.123.tmp")
    assert archive.is_store_file(".zattrs")
    assert archive.store_root(["a/b/zarr.json", "a/zarr.json", "a/c/0"]) == "a"
    assert archive.store_root([".zgroup", "X/.zgroup"]) == ""
    assert archive.store_root(["X/c/0"]) is None
