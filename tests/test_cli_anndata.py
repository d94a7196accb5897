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

from conftest import write_anndata
from dask_cellucid import InputShapeError, prepare, verify
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
    assert proc.stdout.splitlines()[0] == (
        f"Exporting X of {h5ad}: 8-bit, gzip 6, key layout, embedding X_umap (2d)."
    )
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


# -- a transposed AnnData (genes x cells) is refused by the API and the command alike ------
def _pbmc() -> ad.AnnData:
    sc = pytest.importorskip("scanpy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sc.datasets.pbmc68k_reduced()  # ships in scanpy's wheel: no download


def _transposed(a: ad.AnnData) -> ad.AnnData:
    """What ``ad.AnnData(X.T)`` with obs = genes and var = cells gives: consistent shapes."""
    return ad.AnnData(np.asarray(a.X).T.copy(), obs=a.var.copy(), var=a.obs.copy())


def _synthetic_transposed(kind: str) -> ad.AnnData:
    rng = np.random.default_rng(3)
    n_genes, n_cells = 12, 40
    if kind == "barcodes":
        genes = ["CD3E", "MS4A1", "NKG7", "LYZ", "GNLY", "CD14", "FCGR3A", "PPBP", "CST3"]
        genes += ["HLA-DRA", "IL7R", "S100A8"]
        cells = ["".join(rng.choice(list("ACGT"), 16)) + "-1" for _ in range(n_cells)]
    else:
        genes = [f"ENSG{j:011d}" for j in range(n_genes)]
        cells = [f"cell_{i}" for i in range(n_cells)]
    x = rng.poisson(1.0, (n_genes, n_cells)).astype(np.float32)
    return ad.AnnData(x, obs=pd.DataFrame(index=genes), var=pd.DataFrame(index=cells))


def _inputs(a: ad.AnnData, tmp: Path) -> dict[str, object]:
    h5ad = write_anndata(a, tmp / "t.h5ad")
    return {
        "in memory": a,
        "h5ad path": h5ad,
        "zarr path": write_anndata(a, tmp / "t.zarr"),
        "backed": ad.read_h5ad(h5ad, backed="r"),
    }


@pytest.mark.parametrize("kind", ["pbmc68k_reduced", "barcodes", "ensembl"])
def test_transposed_anndata_is_refused_by_the_api(tmp_path: Path, kind: str) -> None:
    a = _transposed(_pbmc()) if kind == "pbmc68k_reduced" else _synthetic_transposed(kind)
    for name, inp in _inputs(a, tmp_path).items():
        with pytest.raises(InputShapeError, match=r"looks transposed \(genes x cells\)") as err:
            prepare(inp, out_dir=tmp_path / "out", progress=False)
        assert ("cell barcodes" if kind != "ensembl" else "are gene ids") in str(err.value), name
        assert "adata.T" in str(err.value), name
        assert not (tmp_path / "out").exists(), name


def test_transposed_file_is_refused_by_the_command(tmp_path: Path) -> None:
    a = _pbmc()
    h5ad = write_anndata(_transposed(a), tmp_path / "t.h5ad")
    proc = run("export", str(h5ad), "out", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "Exported" not in proc.stdout
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: X of ") and "looks transposed (genes x cells)" in line
    assert "'AAAGCCTGGCTAAC-1'" in line and "'HES4'" in line
    assert not (tmp_path / "out").exists()
    # the same data the right way round (barcodes in obs, genes in var) is exported
    h5ad = write_anndata(a, tmp_path / "pbmc.h5ad")
    proc = run("export", str(h5ad), "out", "--genes", "HES4,CD3E", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Exported 2 genes x 700 cells" in proc.stdout


# -- verify: subset exports, and a source read from another matrix ----------------------
def test_verify_a_subset_export(tmp_path: Path, adata: ad.AnnData, h5ad: Path) -> None:
    """An export of --genes verifies against the genes it has (API and command)."""
    proc = run("export", str(h5ad), "out", "--genes", "G3,G1,G7", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = run("verify", "out", str(h5ad), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK: every exported gene matches its source." in proc.stdout
    assert "the export holds 3 of the source's 15 genes" in proc.stdout
    for source in (h5ad, adata):
        report = verify(tmp_path / "out", source)
        assert report.ok and report.missing == [] and len(report.genes) == 3, str(report)
    # a gene list given to verify is still required in full
    report = verify(tmp_path / "out", adata, gene_identifiers=["G3", "G1", "G7", "G9"])
    assert not report.ok and report.missing == ["G9"]
    # a gene of the manifest that the source lacks is reported as extra
    other = adata[:, [f"G{j}" for j in range(N_GENES) if j != 7]].copy()
    report = verify(tmp_path / "out", other)
    assert not report.ok and report.extra == ["G7"] and report.missing == []


def test_verify_suggests_use_raw(tmp_path: Path) -> None:
    """An export of adata.raw, verified against adata.X (scaled): every gene differs."""
    a = _pbmc()
    h5ad = write_anndata(a, tmp_path / "pbmc.h5ad")
    genes = ",".join(a.raw.var_names[:40])
    proc = run("export", str(h5ad), "out", "--use-raw", "--genes", genes, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = run("verify", "out", str(h5ad), cwd=tmp_path)
    assert proc.returncode == 1
    assert "Every gene differs: was the export made from adata.raw? try --use-raw." in proc.stdout
    assert "use_raw=True" not in proc.stdout
    report = verify(tmp_path / "out", a)
    assert not report.ok
    assert "was the export made from adata.raw? try --use-raw (use_raw=True)" in str(report)
    assert run("verify", "out", str(h5ad), "--use-raw", cwd=tmp_path).returncode == 0
    assert verify(tmp_path / "out", h5ad, use_raw=True).ok


def test_verify_suggests_the_other_layer(tmp_path: Path, adata: ad.AnnData, h5ad: Path) -> None:
    assert run("export", str(h5ad), "out", "--layer", "counts", cwd=tmp_path).returncode == 0
    proc = run("verify", "out", str(h5ad), cwd=tmp_path)
    assert proc.returncode == 1
    assert "was the export made from adata.layers['counts']? try --layer counts." in proc.stdout
    report = verify(tmp_path / "out", adata)
    assert "try --layer counts (layer='counts')" in str(report)
    assert verify(tmp_path / "out", adata, layer="counts").ok
    # and the other way round: X exported, compared with a layer
    assert run("export", str(h5ad), "x", cwd=tmp_path).returncode == 0
    report = verify(tmp_path / "x", h5ad, layer="counts")
    assert "was the export made from adata.X? try without --layer (layer=None)" in str(report)
