"""The ``dask-cellucid`` command, run as users run it (a real subprocess)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dask_cellucid import read_gene, validate
from dask_cellucid.cli import DEMO_DIR, main


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

    # The README's first command runs twice: the demo replaces its own earlier export.
    (root / "var" / "leftover.values.u8.gz").write_bytes(b"stale")
    again = run("export", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"Replacing the demo export an earlier run wrote to {DEMO_DIR}." in again.stdout
    assert "Traceback" not in again.stderr
    assert not (root / "var" / "leftover.values.u8.gz").exists()
    assert validate(root).ok
    assert json.loads((root / "dataset_identity.json").read_text()) == ident


def test_demo_never_silently_replaces_another_folder(tmp_path: Path) -> None:
    """Only a folder our demo wrote is replaced; any other is refused, in flags."""
    other = tmp_path / "mine"
    assert run("export", "-o", "mine", "--genes", "GENE00001", cwd=tmp_path).returncode == 0
    ident = json.loads((other / "dataset_identity.json").read_text())
    (other / "dataset_identity.json").write_text(json.dumps({**ident, "id": "my-dataset"}))
    before = sorted(p.name for p in (other / "var").iterdir())
    proc = run("export", "-o", "mine", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Replacing" not in proc.stdout and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()  # one line, in the command's words
    assert line.startswith("error: ") and "Pass --force" in line and "--embedding none" in line
    assert "force=True" not in line and "X_umap" not in line
    assert sorted(p.name for p in (other / "var").iterdir()) == before
    assert json.loads((other / "dataset_identity.json").read_text())["id"] == "my-dataset"

    (tmp_path / "genes-only").mkdir()
    proc = run(
        "export", "-o", "genes-only", "--embedding", "none", "--genes", "GENE00002", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    again = run(
        "export", "-o", "genes-only", "--embedding", "none", "--genes", "GENE00002", cwd=tmp_path
    )
    assert again.returncode == 2  # no identity of the demo in it: refused
    assert "Pass --force to replace it, or choose another OUT." in again.stderr
    assert "force=True" not in again.stderr and "out_dir" not in again.stderr


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
    # what it chose, in one line before it exports; sizes of small exports in kB
    lines = proc.stdout.splitlines()
    assert lines[0] == (
        "Exporting the built-in demo (20,000 cells x 2,000 genes): 16-bit, no gzip, index "
        "layout, the demo's own embedding (2d and 3d)."
    )
    assert re.search(r"Exported 2 genes x 20,000 cells to .*: 78\.1 kB of payloads", lines[1])
    assert "pip install 'cellucid==0.9.2' && cellucid serve out" in proc.stdout


def test_the_defaults_it_chose_are_printed(tmp_path: Path) -> None:
    proc = run("export", "-o", "out", "--genes", "GENE00003", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()[0]
    assert first.startswith("Exporting the built-in demo") and "8-bit, gzip 6, key layout" in first
    assert "0.0 MiB" not in proc.stdout and "kB of payloads" in proc.stdout
    # the viewer of each layout, said plainly
    assert "pip install 'cellucid==0.0.9' && cellucid serve out" in proc.stdout
    assert "tagged v0.9.0" in proc.stdout and "0.9.5" in proc.stdout


def test_export_help_says_how_its_defaults_differ_from_the_api(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "defaults differ from the Python API" in out
    assert "8-bit values with gzip level 6" in out and "float32, no gzip" in out
    assert "--quantization none --compression none --embedding none" in out
    assert "pip install 'cellucid==0.0.9' (the release tagged v0.9.0)" in out
    assert "pip install 'cellucid==0.9.2'" in out and "0.9.5" in out


@pytest.mark.parametrize(
    ("api", "shell"),
    [
        (
            "/x/out already holds a gene export (var_manifest.json). Pass force=True to replace "
            "it, or choose another out_dir.",
            "/x/out already holds a gene export (var_manifest.json). Pass --force to replace "
            "it, or choose another OUT.",
        ),
        (
            "Pass force=True to replace its embedding and identity, or leave out X_umap_* to "
            "only add genes to it.",
            "Pass --force to replace its embedding and identity, or pass --embedding none to "
            "only add genes to it.",
        ),
        (
            "Check the spelling and var_gene_id_column (symbols vs Ensembl ids), or pass "
            "missing_genes='warn' to skip them.",
            "Check the spelling and --gene-id-column (symbols vs Ensembl ids), or leave them "
            "out of --genes.",
        ),
        (
            "var_gene_id_column='sym' is not a column of var.",
            "--gene-id-column sym is not a column of var.",
        ),
        ("check gene_identifiers and var.", "check --genes and var."),
        ("max_memory='lots' is not a memory size", "--max-memory lots is not a memory size"),
        (
            "storage_options were given for the local path 'out'; drop them, or give a URL",
            "--storage-option was given for the local path 'out'; drop it, or give a URL",
        ),
        (
            "Pass them with storage_options={'key': ..., 'secret': ...} (or "
            "storage_options={'profile': NAME})",
            "Pass them with --storage-option key=... --storage-option secret=... (or "
            "--storage-option profile=NAME)",
        ),
        (
            "Check input_storage_options={'endpoint_url': ...}: the address",
            "Check --input-storage-option endpoint_url=...: the address",
        ),
        (
            "so use_raw cannot be used. Drop use_raw (--use-raw) to export X",
            "so --use-raw cannot be used. Drop --use-raw to export X",
        ),
        ("Pick a layer with layer= (--layer).", "Pick a layer with --layer."),
        (
            "num_workers=0 must be a positive whole number",
            "--workers 0 must be a positive whole number",
        ),
        ("Pass make_unique=True to rename repeats", "Pass --make-unique to rename repeats"),
        ("or use layout='index', where", "or use --layout index, where"),
        (
            "asks for compression=None; Pass compression=6, or force=True with",
            "asks for --compression none; Pass --compression 6, or --force with",
        ),
        ("verify with tolerance=1 (--tolerance 1).", "verify with --tolerance 1."),
        ("try --use-raw (use_raw=True)", "try --use-raw"),
        ("try --layer counts (layer='counts')", "try --layer counts"),
        ("try without --use-raw (use_raw=False)", "try without --use-raw"),
        ("X_umap_2d holds NaN or Inf", "the embedding (--embedding) holds NaN or Inf"),
        (  # paths are left alone
            "/data/out_dir/use_raw already holds a gene export; choose another out_dir.",
            "/data/out_dir/use_raw already holds a gene export; choose another OUT.",
        ),
    ],
)
def test_messages_name_the_commands_flags(api: str, shell: str) -> None:
    """The library's messages, translated in one place for the shell."""
    from dask_cellucid.cli import _for_shell

    assert _for_shell(api) == shell


def test_verbose_shows_the_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["export", "-o", "out", "--genes", "NOT_A_GENE"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("error: ")
    for argv in (["-v", "export"], ["export", "-v"]):  # before or after the command
        assert main([*argv, "-o", "out", "--genes", "NOT_A_GENE"]) == 2
        err = capsys.readouterr().err
        assert "Traceback (most recent call last)" in err and "GeneIdError" in err
        assert err.strip().splitlines()[-1].startswith("error: ")
    assert not (tmp_path / "out").exists()


def test_bad_arguments_exit_2_with_a_message(tmp_path: Path) -> None:
    proc = run("export", "-o", "out", "--quantization", "12", cwd=tmp_path)
    assert proc.returncode == 2 and "8, 16 or none" in proc.stderr
    proc = run("export", "-o", "out", "--genes", "NOT_A_GENE", cwd=tmp_path)
    assert proc.returncode == 2 and "NOT_A_GENE" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_a_long_gene_list_is_a_list_not_a_file_name() -> None:
    # longer than any file name may be: is_file() raises "File name too long"
    from dask_cellucid.cli import _parse_genes

    genes = [f"GENE{j:05d}" for j in range(3000)]
    assert _parse_genes(",".join(genes)) == genes
