"""``verify``: every exported gene against its source, one Dask task per block.

The exports are real (our writer and cellucid 0.9.2's), the damage is done to
their bytes on disk, and the expected errors are worked out from the codes
changed, not from what verify printed before.
"""

from __future__ import annotations

import gzip
import json
import warnings
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from dask.callbacks import Callback

from dask_cellucid import ExportWarning, InvalidOptionError, VerificationError, prepare, verify
from dask_cellucid.testing import random_matrix

N_CELLS, N_GENES = 150, 12
NAMES = [f"g{j}" for j in range(N_GENES)]


def _matrix() -> np.ndarray:
    x = random_matrix(N_CELLS, N_GENES, density=0.3, seed=4, negative=True, nan=True).toarray()
    x[:, 1] = 2.0  # constant
    x[:, 2] = np.nan  # nothing finite
    return x


def _export(out: Path, x: Any = None, names: list[str] | None = None, **kw: Any) -> Path:
    opts: dict[str, Any] = {"var_quantization": 8, "compression": 6, "genes_per_block": 5}
    opts.update(kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExportWarning)
        prepare(_matrix() if x is None else x, names or NAMES, out_dir=out, **opts)
    return out


def _codes(path: Path) -> np.ndarray:
    raw = path.read_bytes()
    return np.frombuffer(gzip.decompress(raw) if path.suffix == ".gz" else raw, np.uint8).copy()


def _put_codes(path: Path, codes: np.ndarray) -> None:
    data = codes.tobytes()
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)


INPUTS = [
    pytest.param(lambda a: a, id="numpy"),
    pytest.param(sp.csr_matrix, id="csr"),
    pytest.param(lambda a: da.from_array(a, chunks=(70, 5)), id="dask"),
]


@pytest.mark.parametrize("make", INPUTS)
@pytest.mark.parametrize("layout", ["key", "index"])
@pytest.mark.parametrize("bits", [8, 16, None])
def test_exact_export_passes(tmp_path: Path, make: Any, layout: str, bits: int | None) -> None:
    x = _matrix()
    out = _export(tmp_path / "o", make(x), layout=layout, var_quantization=bits)
    report = verify(out, make(x), NAMES)
    assert report.ok, str(report)
    assert len(report.genes) == N_GENES
    assert report.missing == report.extra == []
    if bits is None:
        assert report.max_error == 0.0
    else:
        assert 0.4 < report.max_error <= 0.5 + 1e-6  # nearest rounding: half a step at worst
    assert "OK: every exported gene matches" in str(report)


@pytest.mark.parametrize("compression", [None, 6])
def test_one_code_changed_in_one_cell(tmp_path: Path, compression: int | None) -> None:
    x = _matrix()
    out = _export(tmp_path / "o", x, compression=compression)
    suffix = ".gz" if compression else ""
    path = out / "var" / f"g7.values.u8{suffix}"
    codes = _codes(path)
    cell = int(np.flatnonzero(codes < 254)[3])
    codes[cell] += 1
    _put_codes(path, codes)

    report = verify(out, x, NAMES)
    assert not report.ok
    wrong = report.wrong
    assert [g.gene_id for g in wrong] == ["g7"]
    assert wrong[0].n_wrong == 1
    assert wrong[0].n_nan_mismatch == 0
    assert 0.5 < wrong[0].max_error <= 1.5  # one code off: between half and one and a half steps
    table = report.to_frame()
    assert list(table.index) == NAMES
    assert table.loc["g7", "n_wrong"] == 1
    assert table["ok"].sum() == N_GENES - 1
    text = str(report)
    assert "gene 'g7': 1 cell(s) off by more than 0.5 step" in text
    assert "FAILED: 1 wrong gene(s)" in text


def test_payloads_swapped_between_two_genes(tmp_path: Path) -> None:
    x = _matrix()
    out = _export(tmp_path / "o", x, layout="index")
    a, b = out / "var" / "4.values.u8.gz", out / "var" / "9.values.u8.gz"
    ra, rb = a.read_bytes(), b.read_bytes()
    a.write_bytes(rb)
    b.write_bytes(ra)
    report = verify(out, x, NAMES)
    assert sorted(g.gene_id for g in report.wrong) == ["g4", "g9"]
    assert all(g.n_wrong > 10 for g in report.wrong)


def test_nan_mismatch(tmp_path: Path) -> None:
    x = _matrix()
    out = _export(tmp_path / "o", x, compression=None)
    path = out / "var" / "g5.values.u8"
    codes = _codes(path)
    finite_cell = int(np.flatnonzero(np.isfinite(x[:, 5]))[0])
    codes[finite_cell] = 255  # the missing marker where the source has a value
    _put_codes(path, codes)
    report = verify(out, x, NAMES)
    (g,) = report.wrong
    assert (g.gene_id, g.n_nan_mismatch, g.n_wrong) == ("g5", 1, 0)
    assert "1 cell(s) missing (NaN) in one of export and source" in str(report)


def test_wrong_bounds(tmp_path: Path) -> None:
    x = _matrix()
    out = _export(tmp_path / "o", x)
    doc = json.loads((out / "var_manifest.json").read_text())
    name, lo, hi = doc["fields"][6]
    doc["fields"][6] = [name, lo, hi * 1.5]
    (out / "var_manifest.json").write_text(json.dumps(doc))
    report = verify(out, x, NAMES)
    (g,) = report.wrong
    assert g.gene_id == "g6"
    assert not g.bounds_ok
    assert g.expected_bounds == (lo, hi)
    assert g.n_wrong > 0  # and so are the decoded values
    assert (
        f"bounds [{lo}, {hi * 1.5}] in the manifest, but the source values call for [{lo}, {hi}]"
        in str(report)
    )


def test_float32_is_compared_bit_for_bit(tmp_path: Path) -> None:
    x = _matrix()
    out = _export(tmp_path / "o", x, var_quantization=None, compression=None)
    path = out / "var" / "g3.values.f32"
    v = np.frombuffer(path.read_bytes(), "<f4").copy()
    cell = int(np.flatnonzero(v != 0)[0])
    v[cell] = np.nextafter(v[cell], np.float32(np.inf))  # one ulp
    path.write_bytes(v.tobytes())
    report = verify(out, x, NAMES)
    (g,) = report.wrong
    assert (g.gene_id, g.n_wrong) == ("g3", 1)
    assert 0 < g.max_error < 1e-5


def test_missing_and_extra_genes(tmp_path: Path) -> None:
    x = _matrix()
    out = _export(tmp_path / "o", x, gene_identifiers=["g3", "g0", "g8"])
    report = verify(out, x, NAMES)  # a subset export checks out against the genes it has
    assert report.ok and report.missing == [] and len(report.genes) == 3, str(report)
    report = verify(out, x, NAMES, gene_identifiers=NAMES)  # genes asked for must be there
    assert not report.ok
    assert report.missing == [g for g in NAMES if g not in ("g3", "g0", "g8")]
    assert report.wrong == []
    assert verify(out, x, NAMES, gene_identifiers=["g3", "g0", "g8"]).ok

    doc = json.loads((out / "var_manifest.json").read_text())
    doc["fields"][1][0] = "gX"
    (out / "var" / "g0.values.u8.gz").rename(out / "var" / "gX.values.u8.gz")
    (out / "var_manifest.json").write_text(json.dumps(doc))
    report = verify(out, x, NAMES, gene_identifiers=["g3", "g0", "g8"])
    assert report.extra == ["gX"]
    assert report.missing == ["g0"]
    assert "1 exported gene(s) are not in the source: 'gX'" in str(report)


def test_floor_rounding_needs_tolerance_one(tmp_path: Path) -> None:
    x = _matrix()
    out = _export(tmp_path / "o", x, rounding="floor")
    strict = verify(out, x, NAMES)
    assert not strict.ok
    assert 0.5 < strict.max_error < 1
    assert "tolerance=1" in str(strict)
    loose = verify(out, x, NAMES, tolerance=1)
    assert loose.ok, str(loose)
    assert "accepts truncation" in str(loose)


def test_cellucid_prepare_output(tmp_path: Path) -> None:
    cellucid = pytest.importorskip("cellucid")
    rng = np.random.default_rng(2)
    x = rng.gamma(1.0, 1.0, size=(80, 6)).astype(np.float32)
    x[rng.random(x.shape) < 0.5] = 0
    var = pd.DataFrame({"symbol": [f"S{j}" for j in range(6)]}, index=[f"E{j}" for j in range(6)])
    obs = pd.DataFrame({"score": rng.normal(size=80)}, index=[f"c{i}" for i in range(80)])
    cellucid.prepare(
        latent_space=rng.normal(size=(80, 3)),
        obs=obs,
        var=var,
        gene_expression=x,
        var_gene_id_column="symbol",
        out_dir=tmp_path / "ref",
        var_quantization=16,
        compression=6,
        obs_categorical_dtype="uint8",
        dataset_name="r",
        dataset_id="r",
        X_umap_2d=rng.normal(size=(80, 2)),
    )
    # the ids come from the column the manifest records, without being told
    assert verify(tmp_path / "ref", x, var, tolerance=1).ok
    assert not verify(tmp_path / "ref", x, var).ok  # the reference writer truncates


def test_one_task_per_block(tmp_path: Path) -> None:
    x = _matrix()
    out = _export(tmp_path / "o", x)

    class Count(Callback):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.keys: list[str] = []

        def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, id: Any) -> None:
            name = key[0] if isinstance(key, tuple) else key
            if isinstance(name, str) and name.startswith("cellucid-block-verify"):
                self.keys.append(name)

    with Count() as counter:
        report = verify(out, x, NAMES, scheduler="threads", genes_per_block=5)
    assert report.ok
    assert len(report.genes) == N_GENES
    assert len(counter.keys) == 3  # blocks of 5, 5 and 2 genes
    with Count() as counter:
        # by default sized as prepare sizes an export: 8 blocks per thread at least
        assert verify(out, x, NAMES, scheduler="synchronous", num_workers=1).ok
    assert len(counter.keys) == 6


def test_dimension_mismatch_is_reported(tmp_path: Path) -> None:
    x = _matrix()
    out = _export(tmp_path / "o", x)
    report = verify(out, x[:-1], NAMES)
    assert not report.ok
    assert f"n_points is {N_CELLS} but the source has {N_CELLS - 1} cells" in str(report)


def test_prepare_verify_true(tmp_path: Path) -> None:
    x = _matrix()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExportWarning)
        result = prepare(x, NAMES, out_dir=tmp_path / "a", var_quantization=8, verify=True)
        assert result.n_genes == N_GENES  # type: ignore[union-attr]
        prepare(
            x,
            NAMES,
            out_dir=tmp_path / "b",
            var_quantization=16,
            rounding="floor",
            compression=6,
            verify=True,
        )


def test_prepare_verify_argument_checks(tmp_path: Path) -> None:
    x = _matrix()
    with pytest.raises(InvalidOptionError, match="verify=True needs compute=True"):
        prepare(x, NAMES, out_dir=tmp_path, verify=True, compute=False)
    with pytest.raises(InvalidOptionError, match="verify must be True or False"):
        prepare(x, NAMES, out_dir=tmp_path, verify="yes")
    assert not any(tmp_path.iterdir())  # refused before anything was written
    with pytest.raises(InvalidOptionError, match="tolerance=-1"):
        verify(tmp_path, x, NAMES, tolerance=-1)


def test_prepare_verify_true_catches_a_source_that_changes(tmp_path: Path) -> None:
    # A source that gives other values each time it is read (an unseeded random
    # step upstream, a file rewritten meanwhile): what was written is not what
    # the source says now.
    def draw() -> np.ndarray:
        return np.random.default_rng().random((N_CELLS, 4), dtype=np.float32)

    x = da.from_delayed(dask.delayed(draw, pure=False)(), (N_CELLS, 4), np.float32)
    with pytest.raises(VerificationError, match=r"(?s)does not match its source.*FAILED: 4 wrong"):
        prepare(x, NAMES[:4], out_dir=tmp_path, var_quantization=8, verify=True)
    assert (tmp_path / "var_manifest.json").exists()


@pytest.mark.distributed
def test_verify_on_a_cluster(tmp_path: Path, dask_client: Any) -> None:
    x = _matrix()
    out = _export(tmp_path / "o", sp.csr_matrix(x))
    path = out / "var" / "g0.values.u8.gz"
    codes = _codes(path)
    codes[int(np.flatnonzero(codes == 0)[0])] = 9
    _put_codes(path, codes)
    report = verify(out, sp.csr_matrix(x), NAMES, scheduler=dask_client)
    assert [g.gene_id for g in report.wrong] == ["g0"]
    assert report.wrong[0].n_wrong == 1


def test_verify_h5ad_source_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    anndata = pytest.importorskip("anndata")
    from dask_cellucid.cli import main

    x = _matrix()
    path = tmp_path / "in.h5ad"
    anndata.AnnData(X=sp.csr_matrix(np.nan_to_num(x)), var=pd.DataFrame(index=NAMES)).write_h5ad(
        path
    )
    out = _export(tmp_path / "o", sp.csr_matrix(np.nan_to_num(x)))
    assert verify(out, str(path)).ok
    assert main(["verify", str(out), str(path)]) == 0
    assert "OK: every exported gene matches" in capsys.readouterr().out
    p = out / "var" / "g4.values.u8.gz"
    codes = _codes(p)
    codes[0] = 254 if codes[0] < 200 else 0
    _put_codes(p, codes)
    assert main(["verify", str(out), str(path)]) == 1
    assert "gene 'g4': 1 cell(s) off" in capsys.readouterr().out
