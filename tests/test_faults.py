"""Faults on the way: a worker process killed mid-export, S3 throttling and 5xx errors."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import dask.array as da
import numpy as np
import pytest

from dask_cellucid import prepare
from dask_cellucid.errors import StorageError
from dask_cellucid.storage import _local, _retry
from dask_cellucid.testing import export_files, random_matrix

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import FaultyProxy, S3Bucket

N_CELLS, N_GENES, PER_BLOCK = 300, 32, 4
GENES = [f"G{j}" for j in range(N_GENES)]
ARGS: dict[str, Any] = {
    "var": GENES,
    "var_quantization": 8,
    "compression": 6,
    "genes_per_block": PER_BLOCK,
    "progress": False,
}
# botocore retries throttling and 5xx on its own (and s3fs retries SlowDown); with
# botocore's retries off, only the exporter's own stand between a 500 and failure.
NO_LIBRARY_RETRIES = {"config_kwargs": {"retries": {"total_max_attempts": 1}}}


def _kill_worker_once(
    block: np.ndarray, marker: str, at: int, block_info: Any = None
) -> np.ndarray:
    """Chunk function: the first worker to compute block ``at`` dies on the spot."""
    if block_info[None]["chunk-location"][1] == at and not os.path.exists(marker):
        with open(marker, "w"):
            pass
        os._exit(1)
    return block


@pytest.mark.distributed
def test_worker_killed_mid_export_the_export_completes_with_the_same_bytes(
    dask_client: Any, tmp_path: Path
) -> None:
    X = random_matrix(N_CELLS, N_GENES, seed=21).toarray()
    marker = str(tmp_path / "killed")
    deadly = da.from_array(X, chunks=(-1, PER_BLOCK)).map_blocks(
        _kill_worker_once, marker, 5, meta=np.empty((0, 0), X.dtype)
    )
    try:
        result = prepare(deadly, out_dir=tmp_path / "cluster", scheduler=dask_client, **ARGS)
    finally:
        dask_client.wait_for_workers(2, timeout=120)  # the nanny restarts the dead one
    assert os.path.exists(marker), "no worker was killed: the test proved nothing"
    assert result.n_genes_written == N_GENES
    prepare(X, out_dir=tmp_path / "threads", scheduler="threads", **ARGS)
    assert export_files(tmp_path / "cluster") == export_files(tmp_path / "threads")


@pytest.mark.s3
def test_throttling_and_server_errors_are_retried(
    faulty_s3: tuple[FaultyProxy, S3Bucket], tmp_path: Path
) -> None:
    proxy, bucket = faulty_s3
    X = random_matrix(N_CELLS, N_GENES, seed=22)
    proxy.fail_next("PUT", [503, None, 500, None] * 3)
    prepare(X, out_dir=bucket.url(), storage_options=bucket.storage_options, **ARGS)
    assert proxy.injected == {503: 3, 500: 3}
    prepare(X, out_dir=tmp_path / "local", **ARGS)
    assert bucket.objects("out") == export_files(tmp_path / "local")


@pytest.mark.s3
def test_the_exporter_retries_with_backoff_when_the_client_library_does_not(
    faulty_s3: tuple[FaultyProxy, S3Bucket],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_retry, "_BACKOFF", 0.01)  # keep the test fast; same code path
    proxy, bucket = faulty_s3
    opts = {"endpoint_url": bucket.endpoint, **NO_LIBRARY_RETRIES}
    X = random_matrix(N_CELLS, N_GENES, seed=23)
    proxy.fail_next("PUT", [500, 500, None, 500])
    prepare(X, out_dir=bucket.url(), storage_options=opts, scheduler="synchronous", **ARGS)
    assert proxy.injected == {500: 3}
    retries = [r for r in caplog.records if "retry" in r.getMessage()]
    assert retries, "the errors were absorbed below the exporter: the test proved nothing"
    assert all(r.levelname == "WARNING" for r in retries)
    prepare(X, out_dir=tmp_path / "local", **ARGS)
    assert bucket.objects("out") == export_files(tmp_path / "local")


@pytest.mark.s3
def test_persistent_errors_fail_the_export_without_a_manifest_then_it_resumes(
    faulty_s3: tuple[FaultyProxy, S3Bucket], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_retry, "_BACKOFF", 0.01)
    proxy, bucket = faulty_s3
    opts = {"endpoint_url": bucket.endpoint, **NO_LIBRARY_RETRIES}
    X = random_matrix(N_CELLS, N_GENES, seed=24)
    # let the journal head and three blocks through (3 x (4 payloads + 1 record)),
    # then fail every attempt at every object after them
    proxy.fail_after("PUT", 1 + 3 * (PER_BLOCK + 1), 500)
    with pytest.raises(OSError, match="re-run the same export") as info:
        prepare(X, out_dir=bucket.url(), storage_options=opts, scheduler="synchronous", **ARGS)
    assert isinstance(info.value, StorageError)
    assert proxy.injected[500] == _retry.ATTEMPTS * PER_BLOCK  # each payload, every attempt
    written = bucket.objects("out")
    assert "var_manifest.json" not in written
    assert len([k for k in written if k.startswith("var/")]) == 3 * PER_BLOCK

    proxy.heal()
    before = len(proxy.put_paths)
    result = prepare(X, out_dir=bucket.url(), storage_options=opts, scheduler="synchronous", **ARGS)
    assert result.n_genes_written == N_GENES - 3 * PER_BLOCK
    payload_puts = [p for p in proxy.put_paths[before:] if "/var/" in p]
    assert len(payload_puts) == N_GENES - 3 * PER_BLOCK
    prepare(X, out_dir=tmp_path / "local", **ARGS)
    assert bucket.objects("out") == export_files(tmp_path / "local")


@pytest.mark.skipif(_local._syncfs is None, reason="the background flush needs syncfs")
def test_a_write_back_error_fails_the_export_without_a_manifest_then_it_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The disk reports the error on the background flush, after the block tasks
    # returned: the export must still fail before naming anything, with no
    # journal record of a block whose flush failed.
    import ctypes
    import errno

    X = random_matrix(N_CELLS, N_GENES, seed=22).toarray()
    real_syncfs, flushes = _local._syncfs, []

    def failing_syncfs(fd: int) -> int:
        flushes.append(fd)
        ctypes.set_errno(errno.EIO)
        return -1

    monkeypatch.setattr(_local, "_SYNCFS_MIN_FILES", 1)
    monkeypatch.setattr(_local, "_syncfs", failing_syncfs)
    out = tmp_path / "out"
    with pytest.raises(OSError, match="syncfs") as info:
        prepare(X, out_dir=out, scheduler="threads", num_workers=2, **ARGS)
    assert info.value.errno == errno.EIO and flushes
    assert not (out / "var_manifest.json").exists()
    assert not list((out / ".dask-cellucid" / "blocks").glob("*.json"))
    assert (out / ".dask-cellucid" / "export.json").exists()  # the journal itself was begun

    monkeypatch.setattr(_local, "_syncfs", real_syncfs)
    result = prepare(X, out_dir=out, scheduler="threads", num_workers=2, **ARGS)
    assert result.n_genes_written == N_GENES
    prepare(X, out_dir=tmp_path / "fresh", scheduler="threads", **ARGS)
    assert export_files(out) == export_files(tmp_path / "fresh")
