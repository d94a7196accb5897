"""Interrupted exports: re-running the same export finishes it, redoing only what is missing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pytest

from dask_cellucid import prepare
from dask_cellucid.errors import TargetExistsError
from dask_cellucid.testing import assert_export_equal, export_files, random_matrix

N_CELLS, N_GENES, PER_BLOCK, FAIL_AT = 200, 32, 4, 5
# some inputs hold NaN on purpose: the warning about them is expected
pytestmark = pytest.mark.filterwarnings("ignore::dask_cellucid.errors.ExportWarning")
GENES = [f"G{j}" for j in range(N_GENES)]
ARGS: dict[str, Any] = {
    "var": GENES,
    "var_quantization": 8,
    "compression": 6,
    "genes_per_block": PER_BLOCK,
    "progress": False,
}


class NetworkLost(ConnectionError):
    pass


# The network "fails" only while this is set: the switch lives outside the graph,
# so the re-run computes the very same Dask expression (the same input token)
# without failing, as a user's re-run of the same script would.
_NETWORK_DOWN = {"now": False, "reads": 0}


def _fail_at(block: np.ndarray, at: int) -> np.ndarray:
    """Fail the read after ``at`` blocks were read, whichever order Dask reads them in."""
    if _NETWORK_DOWN["now"]:
        _NETWORK_DOWN["reads"] += 1
        if _NETWORK_DOWN["reads"] > at:
            msg = "connection to the data store lost"
            raise NetworkLost(msg)
    return block


def _failing(X: np.ndarray, at: int = FAIL_AT) -> da.Array:
    """``X`` as Dask, one chunk per block; reading block ``at`` fails while the network is down."""
    return da.from_array(X, chunks=(-1, PER_BLOCK)).map_blocks(
        _fail_at, at, meta=np.empty((0, 0), X.dtype)
    )


def _stat(folder: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime) of every payload: an atomic rewrite changes both."""
    return {
        p.name: (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in (folder / "var").iterdir()
        if not p.name.startswith(".")
    }


def _interrupt(X: np.ndarray, out: Path, **kw: Any) -> dict[str, tuple[int, int]]:
    _NETWORK_DOWN.update(now=True, reads=0)
    try:
        with pytest.raises(NetworkLost):
            prepare(_failing(X), out_dir=out, scheduler="synchronous", **{**ARGS, **kw})
    finally:
        _NETWORK_DOWN["now"] = False
    assert not (out / "var_manifest.json").exists()
    done = _stat(out)
    assert 0 < len(done) < N_GENES, "the interruption left nothing to resume"
    assert len(done) % PER_BLOCK == 0  # whole blocks only
    return done


@pytest.mark.parametrize("resume_on", ["synchronous", "threads", "cluster"])
def test_interrupted_export_resumes_writing_only_the_missing_blocks(
    tmp_path: Path, resume_on: str, request: pytest.FixtureRequest
) -> None:
    X = random_matrix(N_CELLS, N_GENES, seed=31, nan=True).toarray()
    out = tmp_path / "out"
    done = _interrupt(X, out)

    scheduler = request.getfixturevalue("dask_client") if resume_on == "cluster" else resume_on
    result = prepare(_failing(X), out_dir=out, scheduler=scheduler, **ARGS)
    assert result.n_genes == N_GENES
    assert result.n_genes_written == N_GENES - len(done)
    after = _stat(out)
    assert {k: after[k] for k in done} == done  # untouched: same inode, same mtime
    assert not (out / ".dask-cellucid").exists()

    prepare(X, out_dir=tmp_path / "fresh", **ARGS)
    assert_export_equal(out, tmp_path / "fresh")


def test_damaged_payloads_and_records_are_redone(tmp_path: Path) -> None:
    X = random_matrix(N_CELLS, N_GENES, seed=32).toarray()
    out = tmp_path / "out"
    done = _interrupt(X, out)
    records = sorted((out / ".dask-cellucid" / "blocks").iterdir())
    assert len(records) == len(done) // PER_BLOCK
    rows = [json.loads(r.read_text())["entries"] for r in records]
    assert len(rows) >= 3, "need three finished blocks to damage"
    # block A: one payload truncated (same name, wrong size); block B: one payload
    # deleted; block C: its record corrupted. Each is redone in full.
    truncated = out / "var" / f"{rows[0][1]['gene_id']}.values.u8.gz"
    truncated.write_bytes(truncated.read_bytes()[:-3])
    (out / "var" / f"{rows[1][0]['gene_id']}.values.u8.gz").unlink()
    records[2].write_text('{"fingerprint": ')

    result = prepare(_failing(X), out_dir=out, **ARGS)
    assert result.n_genes_written == N_GENES - len(done) + 3 * PER_BLOCK
    prepare(X, out_dir=tmp_path / "fresh", **ARGS)
    assert_export_equal(out, tmp_path / "fresh")


@pytest.mark.parametrize(
    ("change", "why"),
    [
        pytest.param({"compression": 9}, "settings", id="other-compression"),
        pytest.param({"var_quantization": 16}, "settings", id="other-bits"),
        pytest.param({"gene_identifiers": GENES[::-1]}, "genes", id="other-gene-order"),
        pytest.param({"gene_identifiers": GENES[:-1]}, "genes", id="fewer-genes"),
        pytest.param({"resume": False}, "resume", id="resume-off"),
    ],
)
def test_blocks_from_other_settings_or_genes_are_never_reused(
    tmp_path: Path, change: dict[str, Any], why: str
) -> None:
    X = random_matrix(N_CELLS, N_GENES, seed=33).toarray()
    out = tmp_path / "out"
    done = _interrupt(X, out)
    with pytest.raises(TargetExistsError, match="force=True"):
        prepare(_failing(X), out_dir=out, **{**ARGS, **change})
    assert _stat(out) == done  # refused before touching anything

    result = prepare(_failing(X), out_dir=out, **{**ARGS, **change, "force": True})
    assert result.n_genes_written == result.n_genes  # nothing reused
    prepare(X, out_dir=tmp_path / "fresh", **{**ARGS, **change})
    assert_export_equal(out, tmp_path / "fresh")


_KILLER = """
import os, signal, sys
import dask.array as da
import numpy as np
from dask_cellucid import prepare

READS = []

def die_at(block, at):
    # killed while reading the last block to be read, whichever it is
    READS.append(1)
    if "KILL_AT_BLOCK" in os.environ and len(READS) > at:
        os.kill(os.getpid(), signal.SIGKILL)
    return block

if __name__ == "__main__":
    X = np.load(sys.argv[1])
    x = da.from_array(X, chunks=(-1, {per_block})).map_blocks(
        die_at, {at}, meta=np.empty((0, 0), X.dtype))
    prepare(x, out_dir=sys.argv[2], var={genes!r}, var_quantization=8, compression=6,
            genes_per_block={per_block}, scheduler="threads", num_workers=2, progress=False)
"""


def test_process_killed_mid_export_is_finished_by_a_rerun(tmp_path: Path) -> None:
    X = random_matrix(N_CELLS, N_GENES, seed=34).toarray()
    np.save(tmp_path / "X.npy", X)
    script = tmp_path / "export.py"
    # killed while reading the last block: most others are finished by then
    last = N_GENES // PER_BLOCK - 1
    script.write_text(textwrap.dedent(_KILLER).format(per_block=PER_BLOCK, at=last, genes=GENES))
    out = tmp_path / "out"
    cmd = [sys.executable, str(script), str(tmp_path / "X.npy"), str(out)]
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "KILL_AT_BLOCK": "1"},
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert not (out / "var_manifest.json").exists()
    assert (out / ".dask-cellucid" / "export.json").exists()
    done = _stat(out)
    assert len(done) >= PER_BLOCK, "the process died before writing anything to resume"

    # the user re-runs the same script: the same input, so the finished blocks are kept
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    after = _stat(out)
    kept = [k for k in done if after.get(k) == done[k]]
    assert len(kept) >= len(done) - PER_BLOCK  # a block may have lacked its record
    assert not [p for p in os.listdir(out / "var") if p.endswith(".tmp")]
    prepare(X, out_dir=tmp_path / "fresh", **ARGS)
    assert export_files(out) == export_files(tmp_path / "fresh")
