"""Interrupted stores: no consolidated metadata until every chunk is there; a re-run finishes.

Real interruptions: a read that fails mid-write, a process killed by SIGKILL,
and a cluster worker process that dies (locally and to the moto S3 server).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from dask_cellucid.formats.store.read import StoreReader
from dask_cellucid.formats.store.validate import validate
from dask_cellucid.storage import Target
from dask_cellucid.store_api import prepare_store

N_CELLS, N_GENES, PER_BLOCK, CHUNK = 200, 32, 4, 32
GENES = [f"G{j}" for j in range(N_GENES)]


class NetworkLost(ConnectionError):
    pass


def _matrix(seed: int = 3) -> np.ndarray:
    m = sp.random(N_CELLS, N_GENES, density=0.3, format="csr", random_state=seed, dtype=np.float64)
    return (m * 10).astype(np.float32).toarray()


def _args(n_cells: int = N_CELLS, **kw: Any) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    args = {
        "var": pd.DataFrame(index=GENES),
        "embeddings": {"X_umap": rng.normal(size=(n_cells, 2))},
        "dataset_id": "resume-test",
        "dataset_name": "Resume test",
        "chunk_values": CHUNK,
        "progress": False,
    }
    return {**args, **kw}


# Reads fail only while this is switched on, and only the second time a column
# block is read (the first is the counting pass, the second the writing pass): the
# switch lives outside the graph, so a re-run computes the very same Dask expression.
_NETWORK = {"down": False, "fail_at": -1, "reads": Counter()}


def _fail_on_second_read(block: Any, block_info: Any = None) -> Any:
    at = block_info[None]["chunk-location"][1]
    if _NETWORK["down"]:
        _NETWORK["reads"][at] += 1
        if at == _NETWORK["fail_at"] and _NETWORK["reads"][at] >= 2:
            msg = "connection to the data store lost"
            raise NetworkLost(msg)
    return block


def _sparse_blocks(X: np.ndarray, name: str | None = None) -> da.Array:
    """``X`` as a Dask array of CSR blocks (a fixed ``name`` keeps its token across runs)."""
    base = da.from_array(X, chunks=(-1, PER_BLOCK), name=name)
    return base.map_blocks(sp.csr_matrix, meta=sp.csr_matrix((0, 0), dtype=X.dtype))


def _lazy(X: np.ndarray) -> da.Array:
    # a fixed name: the same input token on every run, as for a file on disk
    return _sparse_blocks(X, "resume-test-matrix").map_blocks(
        _fail_on_second_read, meta=sp.csr_matrix((0, 0), dtype=X.dtype)
    )


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _chunk_stats(root: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime) of every chunk of X: a rewrite changes at least the mtime."""
    return {
        p.relative_to(root).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in (root / "X").rglob("*")
        if p.is_file() and not p.name.startswith(".")
    }


def _interrupt(X: np.ndarray, out: Path, fail_at: int = 5, **kw: Any) -> Path:
    """Run until the writing pass's read of block ``fail_at`` fails; return the staging folder."""
    _NETWORK.update(down=True, fail_at=fail_at, reads=Counter())
    try:
        with pytest.raises(NetworkLost):
            prepare_store(out, gene_expression=_lazy(X), **_args(scheduler="synchronous", **kw))
    finally:
        _NETWORK["down"] = False
    staging = out.parent / f".{out.name}.partial"
    assert not out.exists(), "a failed run left a store at out_path"
    assert (staging / ".dask-cellucid" / "store.json").exists()
    assert not (staging / ".zmetadata").exists()
    return staging


@pytest.mark.parametrize("resume_on", ["threads", "cluster"])
def test_interrupted_store_is_finished_by_a_rerun_reusing_the_written_chunks(
    tmp_path: Path, resume_on: str, request: pytest.FixtureRequest
) -> None:
    X = _matrix()
    out = tmp_path / "out.zarr"
    staging = _interrupt(X, out)
    written = _chunk_stats(staging)
    assert written, "the interruption left no chunk to reuse"

    scheduler = request.getfixturevalue("dask_client") if resume_on == "cluster" else resume_on
    result = prepare_store(out, gene_expression=_lazy(X), **_args(scheduler=scheduler))
    assert 0 < result.n_tasks_reused < result.n_tasks
    assert "reused from an earlier run" in str(result)
    after = _chunk_stats(out)
    kept = [k for k in written if after.get(k) == written[k]]
    assert kept, "no chunk of the interrupted run was reused"
    assert not staging.exists()
    assert not (out / ".dask-cellucid").exists()

    prepare_store(
        tmp_path / "fresh.zarr", gene_expression=sp.csr_matrix(X), **_args(scheduler="threads")
    )
    assert _files(out) == _files(tmp_path / "fresh.zarr")


def test_a_rerun_with_other_workers_and_budget_still_reuses_chunks(tmp_path: Path) -> None:
    # the cut into segment tasks follows the threads and max_memory; the journal is
    # kept per chunk, so a re-run cut differently still reuses what was written
    X = _matrix()
    out = tmp_path / "out.zarr"
    _interrupt(X, out)
    result = prepare_store(
        out, gene_expression=_lazy(X), **_args(scheduler="threads", num_workers=2)
    )
    assert result.n_tasks_reused > 0
    prepare_store(
        tmp_path / "fresh.zarr", gene_expression=sp.csr_matrix(X), **_args(scheduler="threads")
    )
    assert _files(out) == _files(tmp_path / "fresh.zarr")


def test_a_rerun_with_other_data_starts_over(tmp_path: Path) -> None:
    out = tmp_path / "out.zarr"
    _interrupt(_matrix(), out)
    other = _matrix(seed=11)
    other_lazy = _sparse_blocks(other, "another-matrix")
    result = prepare_store(out, gene_expression=other_lazy, **_args(scheduler="threads"))
    assert result.n_tasks_reused == 0
    reader = StoreReader(str(out))
    for j in range(N_GENES):
        np.testing.assert_array_equal(reader.read_gene(j), other[:, j])


def test_dense_input_resumes_by_column_strips(tmp_path: Path) -> None:
    # dense X: full-height column strips of 2^18 values, here 4 genes each
    n_cells = 2**16
    X = np.random.default_rng(5).normal(size=(n_cells, N_GENES)).astype(np.float32)
    out = tmp_path / "dense.zarr"
    base = da.from_array(X, chunks=(-1, PER_BLOCK), name="dense-resume-matrix")
    lazy = base.map_blocks(_fail_on_second_read, meta=np.empty((0, 0), X.dtype))
    _NETWORK.update(down=True, fail_at=5, reads=Counter())
    try:
        with pytest.raises(NetworkLost):
            prepare_store(out, gene_expression=lazy, **_args(n_cells, scheduler="synchronous"))
    finally:
        _NETWORK["down"] = False
    result = prepare_store(out, gene_expression=lazy, **_args(n_cells, scheduler="threads"))
    assert result.n_tasks_reused > 0
    reader = StoreReader(str(out))
    for j in range(N_GENES):
        np.testing.assert_array_equal(reader.read_gene(j), X[:, j])


_KILLER = """
import os, signal, sys
import dask.array as da
import numpy as np
import pandas as pd
import scipy.sparse as sp
from dask_cellucid import prepare

READS = []

def die(block, at):
    # the second pass (writing) is killed after `at` of its reads
    READS.append(1)
    if "KILL" in os.environ and len(READS) > {n_blocks} + at:
        os.kill(os.getpid(), signal.SIGKILL)
    return block

if __name__ == "__main__":
    X = np.load(sys.argv[1])
    meta = sp.csr_matrix((0, 0), dtype=X.dtype)
    x = da.from_array(X, chunks=(-1, {per_block}), name="killed-matrix").map_blocks(
        sp.csr_matrix, meta=meta).map_blocks(die, {at}, meta=meta)
    emb = np.random.default_rng(0).normal(size=(X.shape[0], 2))
    prepare(sys.argv[2], format="zarr", gene_expression=x, var=pd.DataFrame(index={genes!r}),
            embeddings={{"X_umap": emb}}, dataset_id="killed", dataset_name="Killed",
            chunk_values={chunk}, scheduler="threads", num_workers=2, progress=False)
"""


def test_process_killed_mid_write_leaves_no_store_and_a_rerun_finishes_it(tmp_path: Path) -> None:
    X = _matrix(seed=8)
    np.save(tmp_path / "X.npy", X)
    script = tmp_path / "export.py"
    n_blocks = N_GENES // PER_BLOCK
    script.write_text(
        textwrap.dedent(_KILLER).format(
            n_blocks=n_blocks, per_block=PER_BLOCK, at=n_blocks - 2, genes=GENES, chunk=CHUNK
        )
    )
    out = tmp_path / "out.zarr"
    cmd = [sys.executable, str(script), str(tmp_path / "X.npy"), str(out)]
    env = {**os.environ, "KILL": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False, env=env)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    staging = tmp_path / ".out.zarr.partial"
    assert not out.exists()
    assert not (staging / ".zmetadata").exists()
    assert _chunk_stats(staging), "the process died before writing a chunk"

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert not staging.exists()
    prepare_store(
        tmp_path / "fresh.zarr",
        gene_expression=sp.csr_matrix(X),
        **_args(dataset_id="killed", dataset_name="Killed", scheduler="threads"),
    )
    assert _files(out) == _files(tmp_path / "fresh.zarr")


def _kill_worker_on_second_read(block: Any, marker: str, at: int, block_info: Any = None) -> Any:
    """The worker that reads block ``at`` a second time (the writing pass) dies on the spot."""
    if block_info[None]["chunk-location"][1] == at:
        first, killed = f"{marker}.read", f"{marker}.killed"
        if not os.path.exists(first):
            Path(first).touch()
        elif not os.path.exists(killed):
            Path(killed).touch()
            os._exit(1)
    return block


@pytest.mark.distributed
@pytest.mark.s3
def test_worker_killed_mid_write_to_s3_the_store_equals_the_local_one(
    dask_client: Any, s3_bucket: Any, tmp_path: Path
) -> None:
    X = _matrix(seed=21)
    marker = str(tmp_path / "worker")
    deadly = _sparse_blocks(X).map_blocks(
        _kill_worker_on_second_read, marker, 5, meta=sp.csr_matrix((0, 0), dtype=X.dtype)
    )
    url = s3_bucket.url("cluster.zarr")
    try:
        prepare_store(
            url,
            gene_expression=deadly,
            storage_options=s3_bucket.storage_options,
            **_args(scheduler=dask_client),
        )
    finally:
        dask_client.wait_for_workers(2, timeout=120)  # the nanny restarts the dead one
    assert os.path.exists(f"{marker}.killed"), "no worker was killed: the test proved nothing"
    prepare_store(
        tmp_path / "local.zarr", gene_expression=sp.csr_matrix(X), **_args(scheduler="threads")
    )
    assert s3_bucket.objects("cluster.zarr") == _files(tmp_path / "local.zarr")
    target = Target.from_url(url, s3_bucket.storage_options)
    assert validate(target, chunk=CHUNK) == []


@pytest.mark.s3
def test_interrupted_s3_store_has_no_consolidated_metadata_and_a_rerun_finishes_it(
    s3_bucket: Any, tmp_path: Path
) -> None:
    X = _matrix(seed=13)
    url = s3_bucket.url("unfinished.zarr")
    opts = s3_bucket.storage_options
    _NETWORK.update(down=True, fail_at=5, reads=Counter())
    try:
        with pytest.raises(NetworkLost):
            prepare_store(
                url,
                gene_expression=_lazy(X),
                storage_options=opts,
                **_args(scheduler="synchronous"),
            )
    finally:
        _NETWORK["down"] = False
    partial = s3_bucket.objects("unfinished.zarr")
    assert ".zmetadata" not in partial  # the browser cannot open it
    assert any(k.startswith("X/data/") for k in partial)
    target = Target.from_url(url, opts)
    assert target.exists(".dask-cellucid/store.json")

    # no force needed: it is an unfinished run of this same store
    result = prepare_store(
        url, gene_expression=_lazy(X), storage_options=opts, **_args(scheduler="threads")
    )
    assert result.n_tasks_reused > 0
    prepare_store(
        tmp_path / "local.zarr", gene_expression=sp.csr_matrix(X), **_args(scheduler="threads")
    )
    assert s3_bucket.objects("unfinished.zarr") == _files(tmp_path / "local.zarr")
    assert not target.exists(".dask-cellucid/store.json")


@pytest.mark.parametrize(
    ("name", "fmt"), [("out.zarr", "zarr"), ("out.zarr.zip", "zarr.zip")], ids=["v3", "v3-zip"]
)
def test_a_v3_store_and_a_zip_resume_too(tmp_path: Path, name: str, fmt: str) -> None:
    X = _matrix()
    out = tmp_path / name
    staging = _interrupt(X, out, zarr_format=3, format=fmt)
    assert any((staging / "X" / "data" / "c").iterdir())  # v3 chunk keys
    result = prepare_store(
        out, gene_expression=_lazy(X), **_args(scheduler="threads", zarr_format=3, format=fmt)
    )
    assert result.n_tasks_reused > 0
    assert not staging.exists()
    assert sorted(os.listdir(tmp_path)) == [name]
    fresh = tmp_path / "fresh" / name
    prepare_store(
        fresh,
        gene_expression=sp.csr_matrix(X),
        **_args(scheduler="threads", zarr_format=3, format=fmt),
    )
    if fmt == "zarr.zip":  # the journal never reaches the archive: the same bytes
        assert out.read_bytes() == fresh.read_bytes()
    else:
        assert _files(out) == _files(fresh)
    assert validate(str(out), chunk=CHUNK) == []
