"""The Cellucid-ready store against cellucid 0.9.5's ``prepare(format="zarr")``, in one run.

Two cases, each run in a fresh process per writer (so peak RSS is that
writer's own), the writers interleaved, ``--repeats`` times:

``M``
    The 100,000 x 2,000 matrix (8 % non-zero, CSR float32, NaN-free) read
    from an ``.h5ad`` into memory before the clock starts; both write a
    ``.zarr`` store from it. Reported: wall time, peak RSS, store bytes.
``backed``
    A backed CSR ``.h5ad`` per ``--backed PATH`` (``benchmarks/outofcore.py make``
    writes them), ours with ``--max-memory`` (default 600MB); cellucid 0.9.5 on
    the same file with ``--oracle-backed``. Two sizes show whether peak RSS
    stays flat as the matrix grows.

Usage::

    python -m benchmarks.store --repeats 3
    python -m benchmarks.store --skip-m --backed /data/oc250k/csr.h5ad /data/oc500k/csr.h5ad

cellucid 0.9.5 runs in its own virtual environment (``--oracle-venv``,
default ``.venv-oracle-095``, which the test suite builds on demand; or
``python -m venv .venv-oracle-095 && .venv-oracle-095/bin/pip install
cellucid==0.9.5``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from . import data

ROOT = Path(__file__).resolve().parents[1]

# One script for both writers: load the input (before the clock), write, and
# print the seconds and this process's peak RSS as JSON.
_CHILD = r"""
import json, resource, sys, time
import anndata as ad
import numpy as np

writer, path, out, backed, max_memory = sys.argv[1:6]
adata = ad.read_h5ad(path, backed="r" if backed == "1" else None)
if writer == "ours":
    import dask_cellucid as dc
    kw = {"max_memory": max_memory} if max_memory else {}
    call = lambda: dc.prepare(out, format="zarr", data=adata, dataset_id="bench",
                              dataset_name="bench", progress=False, **kw)
else:
    import cellucid
    call = lambda: cellucid.prepare(out, format="zarr", data=adata, dataset_id="bench",
                                    dataset_name="bench")
t0 = time.perf_counter()
call()
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"seconds": seconds, "peak_rss": peak}))
"""


def m_h5ad() -> Path:
    """M as a NaN-free CSR ``.h5ad`` with a UMAP, cached beside the matrix."""
    import anndata as ad
    import numpy as np
    import pandas as pd

    spec = data.SIZES["M"]
    path = data.cache_dir() / f"{spec.name}-{spec.key()}.store-bench.h5ad"
    if not path.exists():
        X = data.finite_copy(data.load(spec))
        X.eliminate_zeros()
        n_cells, n_genes = X.shape
        umap = np.random.default_rng(0).normal(size=(n_cells, 2)).astype(np.float32)
        a = ad.AnnData(
            X=X,
            obs=pd.DataFrame(index=[f"cell{i}" for i in range(n_cells)]),
            var=pd.DataFrame(index=data.gene_names(n_genes)),
            obsm={"X_umap": umap},
        )
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        a.write_h5ad(tmp)
        os.replace(tmp, path)
    return path


def _store_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run_one(python: str, writer: str, path: Path, *, backed: bool, max_memory: str) -> dict:
    """One write in a fresh process; its seconds, peak RSS and store bytes."""
    work = Path(tempfile.mkdtemp(prefix="store-bench-", dir=os.environ.get("TMPDIR")))
    out = work / "out.zarr"
    try:
        proc = subprocess.run(
            [python, "-c", _CHILD, writer, str(path), str(out), "1" if backed else "0", max_memory],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            msg = f"{writer} failed on {path}:\n{proc.stderr[-3000:]}"
            raise RuntimeError(msg)
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        row["bytes"] = _store_bytes(out)
        return row
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _summary(rows: list[dict]) -> dict:
    return {
        "seconds_median": statistics.median(r["seconds"] for r in rows),
        "seconds_all": [round(r["seconds"], 2) for r in rows],
        "peak_rss_MiB": round(max(r["peak_rss"] for r in rows) / 2**20),
        "bytes": rows[0]["bytes"],
    }


def compare(
    path: Path,
    writers: dict[str, str],
    *,
    repeats: int,
    backed: bool,
    max_memory: str = "",
) -> dict[str, dict]:
    """Interleaved runs of every writer on ``path``."""
    rows: dict[str, list[dict]] = {w: [] for w in writers}
    for _ in range(repeats):
        for writer, python in writers.items():
            rows[writer].append(run_one(python, writer, path, backed=backed, max_memory=max_memory))
    return {w: _summary(r) for w, r in rows.items()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--oracle-venv", default=str(ROOT / ".venv-oracle-095"))
    ap.add_argument("--skip-m", action="store_true", help="skip the in-memory M case")
    ap.add_argument("--backed", nargs="*", default=[], help="backed CSR .h5ad files")
    ap.add_argument("--max-memory", default="600MB", help="ours, for the backed files")
    ap.add_argument(
        "--oracle-backed", action="store_true", help="also run cellucid 0.9.5 on the backed files"
    )
    args = ap.parse_args(argv)
    oracle = str(Path(args.oracle_venv) / "bin" / "python")
    if not Path(oracle).exists():
        sys.exit(
            f"no cellucid 0.9.5 at {oracle}: python -m venv {args.oracle_venv} && "
            f"{args.oracle_venv}/bin/pip install cellucid==0.9.5"
        )
    report: dict[str, object] = {"load_before": os.getloadavg()}
    if not args.skip_m:
        path = m_h5ad()
        res = compare(
            path, {"ours": sys.executable, "cellucid": oracle}, repeats=args.repeats, backed=False
        )
        res["speedup"] = res["cellucid"]["seconds_median"] / res["ours"]["seconds_median"]
        res["bytes_ratio"] = res["ours"]["bytes"] / res["cellucid"]["bytes"]
        report["M"] = res
        print(json.dumps({"M": res}, indent=1), flush=True)
    for f in args.backed:
        writers = {"ours": sys.executable}
        if args.oracle_backed:
            writers["cellucid"] = oracle
        res = compare(
            Path(f), writers, repeats=args.repeats, backed=True, max_memory=args.max_memory
        )
        res["file_bytes"] = Path(f).stat().st_size
        report[f"backed {f}"] = res
        print(json.dumps({f: res}, indent=1), flush=True)
    report["load_after"] = os.getloadavg()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
