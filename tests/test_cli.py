"""The ``dask-cellucid`` command, run as users run it (a real subprocess)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from dask_cellucid import read_gene


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("dask-cellucid") or sys.executable
    cmd = [exe, *args] if exe.endswith("dask-cellucid") else [exe, "-m", "dask_cellucid.cli", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_demo_export_makes_a_folder_that_opens(tmp_path: Path) -> None:
    proc = run("export", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    root = tmp_path / "cellucid-demo"
    assert f"Folder: {root}" in proc.stdout and "validate" in proc.stdout
    assert "cellucid serve" in proc.stdout
    assert "Traceback" not in proc.stderr
    ident = json.loads((root / "dataset_identity.json").read_text())
    manifest = json.loads((root / "var_manifest.json").read_text())
    assert ident["stats"]["n_cells"] == manifest["n_points"] == 20_000
    assert ident["stats"]["n_genes"] == len(manifest["fields"]) == 2_000
    assert manifest["quantization"] == 8 and manifest["compression"] == 6
    assert len(list((root / "var").iterdir())) == 2_000
    from dask_cellucid.datasets import demo

    data = demo()
    col = data.X[:, 17].toarray().ravel()
    step = (col.max() - col.min()) / 254
    assert np.abs(read_gene(root, data.var.index[17]) - col).max() <= step / 2 + 1e-6

    again = run("export", cwd=tmp_path)  # refuses to overwrite, without a traceback
    assert again.returncode == 2 and "force" in again.stderr and "Traceback" not in again.stderr


def test_options_reach_the_export(tmp_path: Path) -> None:
    proc = run(
        "export",
        "-o",
        "out",
        "--genes",
        "GENE00003,GENE00001",
        "--quantization",
        "16",
        "--compression",
        "none",
        "--layout",
        "index",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "out" / "var_manifest.json").read_text())
    assert manifest["quantization"] == 16 and manifest["compression"] is None
    assert [f[:2] for f in manifest["fields"]] == [[0, "GENE00003"], [1, "GENE00001"]]


def test_bad_arguments_exit_2_with_a_message(tmp_path: Path) -> None:
    proc = run("export", "-o", "out", "--quantization", "12", cwd=tmp_path)
    assert proc.returncode == 2 and "8, 16 or none" in proc.stderr
    proc = run("export", "-o", "out", "--genes", "NOT_A_GENE", cwd=tmp_path)
    assert proc.returncode == 2 and "NOT_A_GENE" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()
