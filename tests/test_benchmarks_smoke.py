"""The benchmark suite (benchmarks/) runs end to end and writes its table.

A smoke run on a tiny dataset: it checks that every kind of case runs (the
reference writer, dask-cellucid, the codec limit, the I/O floor), that the
report is written, and that what the suite measures besides time is right
(file counts, decode errors). No timing is asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dask_cellucid import prepare

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks import check, data  # noqa: E402


@pytest.fixture
def bench_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("DASK_CELLUCID_BENCH_CACHE", str(cache))
    return cache


def test_generator_is_seeded_and_realistic(bench_cache: Path) -> None:
    spec = data.SIZES["XS"]
    a, b = data.generate(spec), data.load(spec)
    assert np.array_equal(a.data, b.data, equal_nan=True)
    assert np.array_equal(a.indices, b.indices)
    assert np.array_equal(a.indptr, b.indptr)
    assert data.load(spec).nnz == a.nnz  # second load comes from the cache
    other = data.generate(data.Spec(spec.n_cells, spec.n_genes, seed=1))
    assert not np.array_equal(other.indices[:100], a.indices[:100])
    d = data.describe(a)
    assert 0.06 < d["density"] < 0.10
    assert d["gene_density_p95"] > 20 * d["gene_density_p5"]  # orders of magnitude apart
    assert d["n_dense_genes"] >= 1 and d["n_all_zero_genes"] >= 1 and d["n_nan_genes"] >= 1
    finite = a.data[np.isfinite(a.data)]
    assert finite.min() > 0 and finite.max() < 10  # log1p of counts


@pytest.mark.filterwarnings("ignore::dask_cellucid.errors.ExportWarning")
@pytest.mark.parametrize(("rounding", "low", "high"), [("nearest", 0.4, 0.5), ("floor", 0.9, 1.0)])
def test_decode_error_is_measured_in_steps(
    tmp_path: Path, bench_cache: Path, rounding: str, low: float, high: float
) -> None:
    X = data.load(data.SIZES["XS"])
    out = tmp_path / "export"
    prepare(
        X,
        var=data.gene_names(X.shape[1]),
        out_dir=out,
        var_quantization=8,
        compression=6,
        rounding=rounding,
        progress=False,
    )
    got = check.check_output(out, X.tocsc())
    assert got["files"] == X.shape[1] + 1
    assert got["marker_mismatches"] == 0
    # float32 storage of the decoded value may add a hair at 8 bits
    assert low < got["max_err_steps"] <= high + 1e-4


def test_suite_runs_and_writes_its_table(tmp_path: Path, bench_cache: Path) -> None:
    report, raw = tmp_path / "bench.md", tmp_path / "bench.json"
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.run",
        "--size",
        "XS",
        "--repeats",
        "1",
        "--no-scaling",
        "--settings",
        "u8-gzip6,f32",
        "--codecs",
        "auto",
        "--no-fsync-variant",
        "--out",
        str(report),
        "--json",
        str(raw),
        "--workdir",
        str(tmp_path / "work"),
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]

    text = report.read_text()
    assert text.startswith("# Benchmarks")
    assert "python -m benchmarks.run --size M --out docs/benchmarks.md" in text
    for row in (
        "| reference (cellucid 0.9.2) |",
        "| **dask-cellucid, default**",
        "| codec limit (auto) |",
        "| I/O floor (same float32 files",
        "| dask-cellucid, default, CSC input (no transposition) |",
    ):
        assert row in text
    assert "### Targets" in text

    cases = {c["label"] + "/" + c["setting"]: c for c in json.loads(raw.read_text())["cases"]}
    n_genes = data.SIZES["XS"].n_genes
    ours8 = cases["dask-cellucid, codec=auto/u8-gzip6"]["output"]
    ref8 = cases["reference (cellucid 0.9.2)/u8-gzip6"]["output"]
    assert ours8["files"] == ref8["files"] == n_genes + 1
    assert ours8["max_err_steps"] <= 0.5 + 1e-4 < ref8["max_err_steps"] <= 1.0
    # the same matrix handed over as CSC is the same export
    csc8 = cases["dask-cellucid, default, CSC input (no transposition)/u8-gzip6"]["output"]
    assert csc8["bytes"] == ours8["bytes"] and csc8["max_err_steps"] == ours8["max_err_steps"]
    assert cases["dask-cellucid, codec=auto/f32"]["output"]["exact"]
    for c in cases.values():
        run_ = c["runs"][0]
        assert run_["seconds"] > 0 and run_["peak_rss"] > 2**20


def test_store_benchmark_runs_a_backed_file_and_reports_bytes(tmp_path: Path) -> None:
    # ours only (cellucid 0.9.5 needs its own venv): a fresh process, a backed file
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp
    from benchmarks import store

    n, g = 300, 20
    X = sp.random(n, g, density=0.2, format="csr", random_state=0, dtype=np.float32)
    path = tmp_path / "small.h5ad"
    ad.AnnData(
        X=X,
        var=pd.DataFrame(index=[f"G{j}" for j in range(g)]),
        obsm={"X_umap": np.zeros((n, 2), np.float32)},
    ).write_h5ad(path)
    res = store.compare(path, {"ours": sys.executable}, repeats=1, backed=True, max_memory="64MB")
    assert res["ours"]["bytes"] > X.nnz  # values and indices, compressed, plus metadata
    assert res["ours"]["peak_rss_MiB"] > 0
    assert len(res["ours"]["seconds_all"]) == 1


def test_density_sweep_runs_and_prints_its_table(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import density

    density.main(["--cells", "2000", "--genes", "2"])
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| uint8")]
    assert len(rows) == len(density.DENSITIES)
    # every size ratio is a positive number: both encoders wrote something
    assert all(float(r.split("|")[3]) > 0 for r in rows)
