"""Helpers for testing exports, shipped so users can test their pipelines too."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from .formats.folder import manifest as mf
from .formats.folder.spec import DTYPES, MANIFEST_NAME, field_locations

if TYPE_CHECKING:
    import os


def export_files(folder: str | os.PathLike[str]) -> dict[str, bytes]:
    """Every file of a local export folder, by relative path (journal excluded)."""
    root = Path(folder)
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.relative_to(root).as_posix().startswith(".dask-cellucid")
    }


def assert_export_equal(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> None:
    """Assert two local export folders hold the same files with the same bytes."""
    fa, fb = export_files(a), export_files(b)
    assert sorted(fa) == sorted(fb), f"file lists differ: {sorted(set(fa) ^ set(fb))[:10]}"
    differ = [k for k in fa if fa[k] != fb[k]]
    assert not differ, f"{len(differ)} files differ, e.g. {differ[:5]}"


def assert_matches_dense_export(
    x: sp.spmatrix | sp.sparray,
    var: Any,
    folder: str | os.PathLike[str],
    **options: Any,
) -> None:
    """Assert that exporting sparse ``x`` gives the bytes its dense copy gives,
    and leaves ``x``'s arrays as they were.

    Both exports go under ``folder`` (``dense/`` and ``sparse/``), with the same
    ``options`` for :func:`dask_cellucid.prepare`.
    """
    from .api import prepare

    before = {a: getattr(x, a).copy() for a in ("data", "indices", "indptr") if hasattr(x, a)}
    root = Path(folder)
    prepare(x.toarray(), var, out_dir=root / "dense", **options)
    prepare(x, var, out_dir=root / "sparse", **options)
    assert_export_equal(root / "dense", root / "sparse")
    for name, values in before.items():
        assert np.array_equal(getattr(x, name), values), f"the export changed the input's {name}"


def read_payloads(folder: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The manifest and every gene's raw (undecoded) payload, gunzipped by the stdlib."""
    root = Path(folder)
    doc = mf.loads((root / MANIFEST_NAME).read_bytes())
    dtype = np.dtype(DTYPES[doc["_varSchema"]["dtype"]].numpy)
    out = {}
    for loc in field_locations(doc):
        raw = (root / loc.path).read_bytes()
        if loc.path.endswith(".gz"):
            raw = gzip.decompress(raw)
        out[loc.gene_id] = np.frombuffer(raw, dtype)
    return doc, out


def random_matrix(
    n_cells: int,
    n_genes: int,
    *,
    density: float = 0.1,
    seed: int = 0,
    negative: bool = False,
    nan: bool = False,
) -> sp.csr_matrix:
    """A small random CSR float32 matrix with log1p-like values."""
    rng = np.random.default_rng(seed)
    X = sp.random(
        n_cells, n_genes, density=density, format="csr", random_state=rng, dtype=np.float32
    )
    X.data = np.log1p(X.data * 20).astype(np.float32)
    if negative:
        X.data -= 1.5
    if nan and X.nnz:
        X.data[rng.choice(X.nnz, max(1, X.nnz // 50), replace=False)] = np.nan
    return X
