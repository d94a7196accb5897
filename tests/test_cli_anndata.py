"""``dask-cellucid export FILE OUT`` on .h5ad and .zarr files, run as users run it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from dask_cellucid import prepare
from dask_cellucid.cli import main
from dask_cellucid.testing import assert_export_equal, random_matrix

N_CELLS, N_GENES = 120, 15


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("dask-cellucid") or sys.executable
    cmd = [exe, *args] if exe.endswith("dask-cellucid") else [exe, "-m", "dask_cellucid.cli", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def adata() -> ad.AnnData:
    a = ad.AnnData(
        random_matrix(N_CELLS, N_GENES, density=0.3, seed=4),
        obs=pd.DataFrame(index=[f"c{i}" for i in range(N_CELLS)]),
        var=pd.DataFrame(index=[f"G{j}" for j in range(N_GENES)]),
        layers={"counts": random_matrix(N_CELLS, N_GENES, density=0.4, seed=5)},
    )
    a.obsm["X_umap"] = np.random.default_rng(1).normal(size=(N_CELLS, 2)).astype(np.float32)
    return a


@pytest.fixture(scope="module")
def h5ad(adata: ad.AnnData, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "data.h5ad"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata.write_h5ad(path)
    return path


def test_export_h5ad_opens_in_viewer(tmp_path: Path, adata: ad.AnnData, h5ad: Path) -> None:
    """The file's X and its obsm['X_umap'] become a folder the viewer opens."""
    proc = run(
        "export", str(h5ad), "out", "--genes", "G3,G1,G7", "--max-memory", "64MiB", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    root = tmp_path / "out"
    ident = json.loads((root / "dataset_identity.json").read_text())
    assert ident["stats"]["n_cells"] == N_CELLS and ident["stats"]["n_genes"] == 3
    assert (root / "points_2d.bin.gz").exists()
    prepare(
        adata.X,
        adata.var,
        out_dir=tmp_path / "mem",
        var_quantization=8,
        compression=6,
        gene_identifiers=["G3", "G1", "G7"],
    )
    manifest = json.loads((root / "var_manifest.json").read_text())
    assert [f[0] for f in manifest["fields"]] == ["G3", "G1", "G7"]
    for gene in ("G3", "G1", "G7"):
        name = f"var/{gene}.values.u8.gz"
        assert (root / name).read_bytes() == (tmp_path / "mem" / name).read_bytes()


def test_layer_from_zarr(tmp_path: Path, adata: ad.AnnData) -> None:
    store = tmp_path / "data.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata.write_zarr(store)
    proc = run(
        "export",
        str(store),
        "out",
        "--layer",
        "counts",
        "--quantization",
        "16",
        "--compression",
        "none",
        "--embedding",
        "none",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    prepare(adata.layers["counts"], adata.var, out_dir=tmp_path / "mem", var_quantization=16)
    assert_export_equal(tmp_path / "out", tmp_path / "mem")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["missing.h5ad", "out"], "no such file"),
        (["notes.h5ad", "out"], "not an AnnData file"),
        (["{h5ad}", "out", "--layer", "spliced"], "no layer 'spliced'"),
        (["{h5ad}", "out", "--use-raw"], "has no raw"),
        (["{h5ad}", "out", "--max-memory", "lots"], "not a memory size"),
        (["{h5ad}", "out", "--genes", "G1,NOPE"], "NOPE"),
    ],
    ids=["missing", "not-anndata", "layer", "raw", "max-memory", "gene"],
)
def test_bad_input_exits_2(
    tmp_path: Path,
    h5ad: Path,
    args: list[str],
    expected: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In-process (fast): the message names the problem; nothing is written."""
    (tmp_path / "notes.h5ad").write_text("not a matrix\n")
    monkeypatch.chdir(tmp_path)
    code = main(["export", *[a.format(h5ad=h5ad) for a in args]])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and expected in err
    assert not (tmp_path / "out").exists()


def test_bad_input_has_no_traceback(tmp_path: Path) -> None:
    """The real command: exit code 2, one line of error, no traceback."""
    (tmp_path / "notes.h5ad").write_text("not a matrix\n")
    proc = run("export", "notes.h5ad", "out", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and "not an AnnData file" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_help_explains_inputs(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["export", "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    for words in (".h5ad", ".zarr", "--layer", "--use-raw", "--max-memory", "larger than memory"):
        assert words in out
