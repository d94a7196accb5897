"""prepare_store to object storage (moto): chunks first, consolidated metadata last, same bytes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from dask_cellucid.errors import TargetExistsError
from dask_cellucid.formats.store.read import StoreReader
from dask_cellucid.formats.store.validate import validate
from dask_cellucid.storage import Target
from dask_cellucid.store_api import prepare_store

pytestmark = [pytest.mark.s3]


def _args(seed=0):
    rng = np.random.default_rng(seed)
    m = sp.random(80, 12, density=0.3, format="csr", random_state=seed, dtype=np.float32)
    var = pd.DataFrame(index=[f"G{j}" for j in range(12)])
    return {
        "gene_expression": m,
        "var": var,
        "embeddings": {"X_umap": rng.normal(size=(80, 2))},
        "dataset_id": "s3-test",
        "dataset_name": "S3 test",
        "chunk_values": 32,
        "scheduler": "threads",
    }


def test_s3_store_matches_local_store(s3_bucket, tmp_path):
    args = _args()
    prepare_store(tmp_path / "local.zarr", **args)
    url = s3_bucket.url("out.zarr")
    prepare_store(url, storage_options=s3_bucket.storage_options, **args)
    objects = s3_bucket.objects("out.zarr")
    local = {
        p.relative_to(tmp_path / "local.zarr").as_posix(): p.read_bytes()
        for p in (tmp_path / "local.zarr").rglob("*")
        if p.is_file()
    }
    assert objects == local
    target = Target.from_url(url, s3_bucket.storage_options)
    assert validate(target, chunk=32) == []
    reader = StoreReader(target)
    dense = args["gene_expression"].toarray()
    for j in range(dense.shape[1]):
        np.testing.assert_array_equal(reader.read_gene(j), dense[:, j])


def test_s3_rerun_needs_force_and_replaces(s3_bucket):
    url = s3_bucket.url("again.zarr")
    prepare_store(url, storage_options=s3_bucket.storage_options, **_args())
    with pytest.raises(TargetExistsError):
        prepare_store(url, storage_options=s3_bucket.storage_options, **_args())
    second = _args(seed=4)
    prepare_store(url, storage_options=s3_bucket.storage_options, force=True, **second)
    reader = StoreReader(Target.from_url(url, s3_bucket.storage_options))
    np.testing.assert_array_equal(reader.read_gene(3), second["gene_expression"].toarray()[:, 3])


def test_s3_v3_store_matches_local_v3_store(s3_bucket, tmp_path):
    args = {**_args(), "zarr_format": 3}
    prepare_store(tmp_path / "local.zarr", **args)
    url = s3_bucket.url("v3.zarr")
    prepare_store(url, storage_options=s3_bucket.storage_options, **args)
    local = {
        p.relative_to(tmp_path / "local.zarr").as_posix(): p.read_bytes()
        for p in (tmp_path / "local.zarr").rglob("*")
        if p.is_file()
    }
    assert s3_bucket.objects("v3.zarr") == local
    target = Target.from_url(url, s3_bucket.storage_options)
    assert validate(target, chunk=32) == []


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_s3_zip_is_the_local_zip_uploaded_whole(s3_bucket, tmp_path, zarr_format):
    args = {**_args(), "zarr_format": zarr_format, "format": "zarr.zip"}
    prepare_store(tmp_path / "local.zarr.zip", **args)
    url = s3_bucket.url("one.zarr.zip")
    options = s3_bucket.storage_options
    prepare_store(url, storage_options=options, **args)
    keys = [
        o["Key"]
        for page in s3_bucket.boto.get_paginator("list_objects_v2").paginate(
            Bucket=s3_bucket.bucket
        )
        for o in page.get("Contents", [])
    ]
    assert keys == ["one.zarr.zip"]  # the staging prefix is gone
    body = s3_bucket.boto.get_object(Bucket=s3_bucket.bucket, Key="one.zarr.zip")["Body"].read()
    assert body == (tmp_path / "local.zarr.zip").read_bytes()
    assert validate(url, options, chunk=32) == []
    reader = StoreReader(url, options)
    dense = args["gene_expression"].toarray()
    for j in range(dense.shape[1]):
        np.testing.assert_array_equal(reader.read_gene(j), dense[:, j])
    with pytest.raises(TargetExistsError):
        prepare_store(url, storage_options=options, **args)
    second = {**_args(seed=5), "zarr_format": zarr_format, "format": "zarr.zip"}
    prepare_store(url, storage_options=options, force=True, **second)
    np.testing.assert_array_equal(
        StoreReader(url, options).read_gene(2), second["gene_expression"].toarray()[:, 2]
    )
