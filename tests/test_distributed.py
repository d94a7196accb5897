"""Exports on a real distributed cluster (2 worker processes, shared per session)."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING, Any

import dask
import dask.array as da
import numpy as np
import pytest
import scipy.sparse as sp

from dask_cellucid import prepare
from dask_cellucid.testing import assert_export_equal, export_files, random_matrix

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import S3Bucket

pytestmark = pytest.mark.distributed
distributed = pytest.importorskip("distributed")

N_CELLS, N_GENES = 400, 30
GENES = [f"G{j}" for j in range(N_GENES)]
ARGS: dict[str, Any] = {
    "var": GENES,
    "var_quantization": 8,
    "compression": 6,
    "genes_per_block": 4,
    "progress": False,
}


def _sparse_dask(X: sp.csr_matrix) -> da.Array:
    """A Dask array with scipy.sparse chunks that do not match the export's blocks."""
    return da.from_array(X, chunks=(N_CELLS // 2, 7), asarray=False).map_blocks(
        sp.csr_matrix, meta=sp.csr_matrix((0, 0), dtype=X.dtype)
    )


def test_cluster_export_to_s3_matches_threaded_export(
    dask_client: Any, s3_bucket: S3Bucket, tmp_path: Path
) -> None:
    X = random_matrix(N_CELLS, N_GENES, seed=11, negative=True)
    # The client is current, so scheduler=None picks it; even with P2P asked for,
    # the sparse chunks are rechunked by tasks (P2P can crash on scipy.sparse).
    with dask_client.as_current(), dask.config.set({"array.rechunk.method": "p2p"}):
        export = prepare(
            _sparse_dask(X),
            out_dir=s3_bucket.url(),
            storage_options=s3_bucket.storage_options,
            compute=False,
            **ARGS,
        )
        blocks = export.source.column_blocks(export.plan.source_columns, export.plan.block_sizes)
        assert not [k for k in dict(blocks.__dask_graph__()) if "p2p" in str(k)]
        assert blocks.numblocks == (1, len(export.plan.block_sizes))
        export.execute(progress=False)
    prepare(X, out_dir=tmp_path / "threads", scheduler="threads", **ARGS)

    # Spawned workers built their own S3 clients from the pickled storage options.
    assert s3_bucket.objects("out") == export_files(tmp_path / "threads")


def test_scheduler_given_as_client_address_cluster_or_current_gives_the_same_bytes(
    dask_client: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    X = random_matrix(N_CELLS, N_GENES, seed=12).toarray()
    prepare(X, out_dir=tmp_path / "threads", **ARGS)
    ways = {
        "client": dask_client,
        "address": dask_client.scheduler.address,
        "cluster": dask_client.cluster,
    }
    for name, scheduler in ways.items():
        prepare(X, out_dir=tmp_path / name, scheduler=scheduler, **ARGS)
    with dask_client.as_current():
        prepare(X, out_dir=tmp_path / "current", scheduler="distributed", **ARGS)
    for name in [*ways, "current"]:
        assert_export_equal(tmp_path / name, tmp_path / "threads")
    # "distributed" used the current client instead of starting a cluster ...
    assert "starting a LocalCluster" not in caplog.text
    # ... and connecting by address or cluster object did not close the cluster
    assert dask_client.submit(np.add, 1, 2).result() == 3


def test_progress_under_distributed_counts_every_gene(
    dask_client: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    X = random_matrix(N_CELLS, N_GENES, seed=13)
    kw = {**ARGS, "progress": True}
    prepare(X, out_dir=tmp_path / "p", scheduler=dask_client, **kw)
    err = capsys.readouterr().err
    assert f"{N_GENES}/{N_GENES}" in err
    assert "Exporting genes" in err


def test_distributed_without_a_client_starts_and_closes_a_local_cluster(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ValueError, match="No clients found"):
        distributed.default_client()
    X = random_matrix(N_CELLS, N_GENES, seed=14)
    prepare(X, out_dir=tmp_path / "lc", scheduler="distributed", num_workers=1, **ARGS)
    prepare(X, out_dir=tmp_path / "threads", **ARGS)
    assert_export_equal(tmp_path / "lc", tmp_path / "threads")
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("dask_cellucid")]
    assert any("starting a LocalCluster" in m for m in messages)
    assert any("LocalCluster closed" in m for m in messages)
    with pytest.raises(ValueError, match="No clients found"):
        distributed.default_client()


def test_unknown_scheduler_is_refused_before_writing(tmp_path: Path) -> None:
    X = random_matrix(20, 3)
    with pytest.raises(ValueError, match="scheduler='thread' is not one of"):
        prepare(X, out_dir=tmp_path / "x", scheduler="thread", **{**ARGS, "var": list("abc")})
    assert not (tmp_path / "x").exists()


def test_unguarded_script_gets_an_error_that_names_the_fix(tmp_path: Path) -> None:
    # Spawned worker processes re-import the user's script; without the guard the
    # script would start clusters from inside them.
    script = tmp_path / "unguarded.py"
    script.write_text(
        "from dask_cellucid import prepare\n"
        "from dask_cellucid.testing import random_matrix\n"
        f"prepare(random_matrix(50, 3), var=['a', 'b', 'c'], out_dir={str(tmp_path / 'o')!r},\n"
        "        scheduler='distributed', num_workers=1, progress=False)\n"
    )
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode != 0
    assert "if __name__ == '__main__':" in proc.stderr.splitlines()[-1]
    assert not (tmp_path / "o" / "var_manifest.json").exists()
