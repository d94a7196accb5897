"""Exports straight to object storage: a real S3 API (moto's server) on loopback."""

from __future__ import annotations

import json
import traceback
from typing import TYPE_CHECKING

import pytest

from dask_cellucid import prepare
from dask_cellucid.errors import StorageError
from dask_cellucid.storage import DEFAULT_POOL, Target
from dask_cellucid.testing import export_files, random_matrix

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import FaultyProxy, S3Bucket

pytestmark = [
    pytest.mark.s3,
    # some inputs hold NaN on purpose: the warning about them is expected
    pytest.mark.filterwarnings("ignore::dask_cellucid.errors.ExportWarning"),
]
s3fs = pytest.importorskip("s3fs")

N_CELLS, N_GENES = 300, 23
GENES = [f"G{j}" if j % 5 else f"g/{j}" for j in range(N_GENES)]  # some ids need sanitizing
SECRET = "wJalrXUtnFEMI-not-a-real-secret-K7MDENG"


def _args(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "var": GENES,
        "var_quantization": 8,
        "compression": 6,
        "genes_per_block": 4,
        "progress": False,
    }
    base.update(kw)
    return base


def _read_back(bucket: S3Bucket, prefix: str = "out") -> dict[str, bytes]:
    """Every object under the prefix, read with a fresh s3fs (journal excluded)."""
    fs = s3fs.S3FileSystem(endpoint_url=bucket.endpoint, skip_instance_cache=True)
    root = f"{bucket.bucket}/{prefix}"
    return {
        p[len(root) + 1 :]: fs.cat_file(p)
        for p in fs.find(root)
        if not p[len(root) + 1 :].startswith(".dask-cellucid")
    }


@pytest.mark.parametrize("layout", ["key", "index"])
def test_s3_export_matches_local_export_byte_for_byte(
    s3_bucket: S3Bucket, tmp_path: Path, layout: str
) -> None:
    X = random_matrix(N_CELLS, N_GENES, seed=3, nan=True)
    umap = random_matrix(N_CELLS, 2, density=1.0, seed=4).toarray()
    kw = _args(layout=layout, X_umap_2d=umap, dataset_id="demo")
    prepare(X, out_dir=s3_bucket.url(), storage_options=s3_bucket.storage_options, **kw)
    prepare(X, out_dir=tmp_path / "local", **kw)

    local = export_files(tmp_path / "local")
    remote = _read_back(s3_bucket)
    assert sorted(remote) == sorted(local)
    assert len([k for k in remote if k.startswith("var/")]) == N_GENES
    assert [k for k in remote if remote[k] != local[k]] == []
    # the journal is gone once the manifest is written
    assert not [o for o in s3_bucket.objects("out") if o.startswith(".dask-cellucid")]


def test_objects_carry_octet_stream_and_no_content_encoding(s3_bucket: S3Bucket) -> None:
    X = random_matrix(N_CELLS, N_GENES, seed=5)
    prepare(X, out_dir=s3_bucket.url(), storage_options=s3_bucket.storage_options, **_args())
    keys = [o["Key"] for o in s3_bucket.boto.list_objects_v2(Bucket=s3_bucket.bucket)["Contents"]]
    assert len(keys) == N_GENES + 1
    for key in keys:
        head = s3_bucket.boto.head_object(Bucket=s3_bucket.bucket, Key=key)
        assert "ContentEncoding" not in head, key
        if key.endswith(".json"):
            assert head["ContentType"] == "application/json", key
        else:
            assert key.endswith(".values.u8.gz"), key
            assert head["ContentType"] == "application/octet-stream", key
            # what a browser would fetch: the raw gzip member, not inflated
            body = s3_bucket.boto.get_object(Bucket=s3_bucket.bucket, Key=key)["Body"].read()
            assert body[:2] == b"\x1f\x8b"


def test_storage_options_reach_s3fs_and_secrets_stay_hidden(
    faulty_s3: tuple[FaultyProxy, S3Bucket], caplog: pytest.LogCaptureFixture
) -> None:
    proxy, bucket = faulty_s3
    options = {
        "key": "AKIAEXAMPLEKEY",
        "secret": SECRET,
        "endpoint_url": bucket.endpoint,
        "client_kwargs": {"region_name": "us-east-1"},
        "config_kwargs": {"max_pool_connections": 3},
    }
    X = random_matrix(N_CELLS, N_GENES, seed=6)
    result = prepare(X, out_dir=bucket.url(), storage_options=options, **_args())
    # the explicit endpoint was used: every request went through the proxy
    assert proxy.seen["PUT"] >= N_GENES + 1
    target = Target.from_url(bucket.url(), options)
    assert target.pool_size == 3
    assert Target.from_url(bucket.url()).pool_size == DEFAULT_POOL
    shown = [
        repr(target),
        str(result),
        repr(result),
        caplog.text,
        json.dumps(result.manifest),
        *map(repr, bucket.objects("out").values()),
    ]
    assert not [s for s in shown if SECRET in s]

    # a failing export does not show them either
    proxy.fail_next("PUT", [403])
    with pytest.raises(StorageError) as info:
        prepare(X, out_dir=bucket.url("other"), storage_options=options, **_args())
    text = "".join(traceback.format_exception(info.value))
    assert "AccessDenied" in text or "Access Denied" in text
    assert SECRET not in text
    assert SECRET not in caplog.text


def test_storage_options_with_a_local_path_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="storage_options were given for the local path"):
        prepare(
            random_matrix(10, 3),
            out_dir=tmp_path / "x",
            storage_options={"anon": True},
            **_args(var=["a", "b", "c"]),
        )
    assert not (tmp_path / "x").exists()


def test_existing_s3_export_is_refused_then_replaced_with_force(s3_bucket: S3Bucket) -> None:
    X = random_matrix(N_CELLS, N_GENES, seed=7)
    Y = random_matrix(N_CELLS, N_GENES, seed=8)
    opts = s3_bucket.storage_options
    prepare(X, out_dir=s3_bucket.url(), storage_options=opts, **_args())
    first = s3_bucket.objects("out")
    with pytest.raises(FileExistsError, match="force=True"):
        prepare(Y, out_dir=s3_bucket.url(), storage_options=opts, **_args())
    assert s3_bucket.objects("out") == first
    prepare(Y, out_dir=s3_bucket.url(), storage_options=opts, **_args(force=True))
    second = s3_bucket.objects("out")
    assert sorted(second) == sorted(first)
    assert second != first


def test_forked_processes_build_their_own_s3_clients(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    # The parent has used s3fs (its event loop thread is running) before the fork:
    # a child that reused that async client would hang or fail.
    dask = pytest.importorskip("dask")
    X = random_matrix(N_CELLS, N_GENES, seed=9)
    opts = s3_bucket.storage_options
    assert Target.from_url(s3_bucket.url(), opts).read("nothing-here") is None
    with dask.config.set({"multiprocessing.context": "fork"}):
        prepare(
            X,
            out_dir=s3_bucket.url(),
            storage_options=opts,
            scheduler="processes",
            num_workers=2,
            **_args(),
        )
    prepare(X, out_dir=tmp_path / "local", **_args())
    assert s3_bucket.objects("out") == export_files(tmp_path / "local")
