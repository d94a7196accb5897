"""Peak memory stays bounded when exporting a file several times larger than the budget.

Each export runs in a fresh Python process, which reports how much its peak
resident set size grew during the export: after a warm-up export of a tiny
file (so imports and thread pools are already counted), the kernel's peak-RSS
mark (``VmHWM``) is reset to the current RSS, and read again at the end.
(``ru_maxrss`` would not do: it keeps the parent's RSS across fork and exec.) The CSR file
holds 128 MB of stored values (values + indices), four times the 32 MiB budget;
the stated limit is a growth of 2.5 x the budget (80 MiB).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads peak RSS from /proc/self/status"
)

N_CELLS, N_GENES, DENSITY = 16_000, 4_000, 0.25
BUDGET = 32 * 2**20
BLOCK_MEMORY = 4 * 2**20
# The stated limit: growth of the peak RSS during the export, whatever the file size.
LIMIT = BUDGET * 5 // 2

_CHILD = textwrap.dedent(
    """
    import json, sys, warnings
    warnings.simplefilter("ignore")
    import dask
    from dask_cellucid import prepare

    def status(key):  # kB -> bytes; VmHWM is the peak RSS of this process image
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024

    big, tiny, out, strategy = sys.argv[1:5]
    kw = dict(var_quantization=8, compression=1, scheduler="threads", num_workers=2,
              block_memory={block}, progress=False)
    prepare(tiny, out_dir=out + "-warmup", max_memory={budget}, **kw)
    before = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:  # reset VmHWM to the current RSS
        f.write("5")
    with dask.config.set({{"cellucid.csr-strategy": strategy}}):
        result = prepare(big, out_dir=out, max_memory={budget}, **kw)
    after = status("VmHWM")
    print(json.dumps({{"growth": after - before, "peak": after, "genes": result.n_genes}}))
    """
)


def _write(path: Path, X: sp.spmatrix) -> Path:
    obs = pd.DataFrame(index=pd.Index([f"c{i}" for i in range(X.shape[0])]))
    var = pd.DataFrame(index=pd.Index([f"g{j}" for j in range(X.shape[1])]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ad.AnnData(X, obs=obs, var=var).write_h5ad(path)
    return path


@pytest.fixture(scope="module")
def big_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("big")
    rng = np.random.default_rng(0)
    rows, cols = np.nonzero(rng.random((N_CELLS, N_GENES), dtype=np.float32) < DENSITY)
    data = rng.random(rows.size, dtype=np.float32) * 10
    X = sp.csr_matrix((data, (rows, cols.astype(np.int32))), shape=(N_CELLS, N_GENES))
    del rows, cols, data
    stored = X.data.nbytes + X.indices.nbytes
    assert stored > 3 * BUDGET, "the file must be several times the budget"
    return {
        "csr": _write(d / "csr.h5ad", X),
        "csc": _write(d / "csc.h5ad", X.tocsc()),
        "tiny": _write(
            d / "tiny.h5ad", sp.random(50, 20, density=0.3, format="csr", random_state=1)
        ),
    }


def _peak_growth(files: dict[str, Path], which: str, strategy: str, out: Path) -> dict[str, int]:
    code = _CHILD.format(budget=BUDGET, block=BLOCK_MEMORY)
    proc = subprocess.run(
        [sys.executable, "-c", code, str(files[which]), str(files["tiny"]), str(out), strategy],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["genes"] == N_GENES
    return report


@pytest.mark.slow
@pytest.mark.parametrize(
    ("which", "strategy"), [("csr", "auto"), ("csc", "auto")], ids=["csr", "csc"]
)
def test_peak_memory_bounded(
    tmp_path: Path, big_files: dict[str, Path], which: str, strategy: str
) -> None:
    """CSR (too big for the budget, so spilled to scratch) and CSC (read by columns)."""
    report = _peak_growth(big_files, which, strategy, tmp_path / "out")
    assert report["growth"] < LIMIT, (
        f"peak RSS grew by {report['growth'] / 2**20:.0f} MiB exporting a "
        f"{which} file with max_memory={BUDGET / 2**20:.0f} MiB (limit {LIMIT / 2**20:.0f} MiB)"
    )


@pytest.mark.slow
def test_holding_the_matrix_would_break_the_limit(
    tmp_path: Path, big_files: dict[str, Path]
) -> None:
    """The measurement can fail: keeping every CSC piece in memory exceeds the limit."""
    report = _peak_growth(big_files, "csr", "memory", tmp_path / "out")
    assert report["growth"] > LIMIT, report
