"""Differential test of the default ``key`` layout against cellucid 0.0.9 (tagged v0.9.0).

cellucid 0.0.9 conflicts with the cellucid 0.9.2 the suite uses, so it lives in
its own virtual environment, ``.venv-oracle-009`` at the repository root, which the
``oracle_009`` fixture (conftest.py) builds on first use and later runs reuse. When it
cannot be built (no network) the tests skip, except under CI, where that is a failure.

0.0.9 truncates in float32 (no nudge), so its codes may differ from our
``rounding="floor"`` by one at exact boundaries; its gzip headers carry a file
name and a time. So: the same manifest and file names, codes within one.
"""

from __future__ import annotations

import gzip
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from dask_cellucid import ExportWarning, prepare
from dask_cellucid.testing import random_matrix

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.filterwarnings("ignore:1 gene\\(s\\) are zero in every cell")
@pytest.mark.parametrize(("bits", "level"), [(8, 6), (16, None), (None, 6)])
def test_key_layout_matches_cellucid_009(tmp_path: Path, oracle_009: Path, bits, level) -> None:
    X = random_matrix(400, 12, density=0.3, seed=11, negative=True)
    X = X.tolil()
    X[:, 3] = 0  # all zero: constant -> [0, 1]
    X[:, 5] = 4.0  # dense constant -> [4, 5]
    X[:7, 8] = np.nan  # NaN -> marker
    X = X.tocsr()
    genes = [
        "CD3E",
        "HLA-DRB1",
        "A/B",
        "MT.CO1",
        "x y",
        "Gene.1",
        "_lead",
        "IGKV1-5",
        "n1",
        "n2",
        "n3",
        "n4",
    ]
    src = tmp_path / "x.npz"
    np.savez(src, data=X.data, indices=X.indices, indptr=X.indptr, shape=X.shape, genes=genes)
    subprocess.run(
        [
            str(oracle_009),
            str(ROOT / "tests" / "oracles" / "cellucid009_export.py"),
            str(src),
            str(tmp_path / "ref"),
            str(bits).lower(),
            str(level).lower(),
        ],
        check=True,
        timeout=600,
    )
    with pytest.warns(ExportWarning, match="NaN or Inf"):
        prepare(
            X,
            genes,
            out_dir=tmp_path / "ours",
            var_gene_id_column="index",
            rounding="floor",
            var_quantization=bits,
            compression=level,
        )
    ref = json.loads((tmp_path / "ref" / "var_manifest.json").read_text())
    ours = json.loads((tmp_path / "ours" / "var_manifest.json").read_text())
    assert ours == ref
    ref_files = sorted(p.name for p in (tmp_path / "ref" / "var").iterdir())
    assert sorted(p.name for p in (tmp_path / "ours" / "var").iterdir()) == ref_files
    dtype = {None: "<f4", 8: "<u1", 16: "<u2"}[bits]
    for name in ref_files:
        a = (tmp_path / "ref" / "var" / name).read_bytes()
        b = (tmp_path / "ours" / "var" / name).read_bytes()
        if level:
            a, b = gzip.decompress(a), gzip.decompress(b)
        a, b = np.frombuffer(a, dtype), np.frombuffer(b, dtype)
        if bits is None:
            assert a.tobytes() == b.tobytes()
        else:
            assert np.abs(a.astype(int) - b.astype(int)).max() <= 1, name
            assert ((a == 2**bits - 1) == (b == 2**bits - 1)).all(), name
