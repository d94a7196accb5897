"""Check an export folder: bytes, file count, and the largest decode error.

Any writer's folder (the reference's or dask-cellucid's) is read back with the
library's own reader (:func:`~dask_cellucid.formats.folder.spec.field_locations`
and :func:`~dask_cellucid.formats.folder.read.decode_payload`), which decodes as
the viewer does; the tests check that reader against the spec independently.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from . import data

if TYPE_CHECKING:
    from pathlib import Path

    import scipy.sparse as sp


def _dense_column(csc: sp.csc_matrix, j: int) -> np.ndarray:
    col = np.zeros(csc.shape[0], np.float32)
    a, b = csc.indptr[j], csc.indptr[j + 1]
    col[csc.indices[a:b]] = csc.data[a:b]
    return col


def check_output(
    folder: Path, csc: sp.csc_matrix, *, max_genes: int | None = None
) -> dict[str, Any]:
    """Bytes, file count, and the largest decode error (in quantization steps) of a gene export.

    ``csc`` is the matrix the writer was given. Decoding follows the viewer:
    ``lo + code * (hi - lo) / max_code`` in float64, stored as float32, the
    missing marker as NaN; the error of a cell is ``|decoded - value| / step``
    with ``step = (hi - lo) / max_code`` from the manifest. Constant and empty
    genes have no step and must decode exactly. With ``max_genes``, an evenly
    spaced sample is checked.
    """
    from dask_cellucid import read_manifest
    from dask_cellucid.formats.folder.kernels import max_code
    from dask_cellucid.formats.folder.read import decode_payload
    from dask_cellucid.formats.folder.spec import MANIFEST_NAME, VAR_DIR, field_locations

    doc = read_manifest(folder)
    quantized = doc["_varSchema"]["quantized"]
    files = [p for p in (folder / VAR_DIR).rglob("*") if p.is_file()]
    nbytes = sum(p.stat().st_size for p in files) + (folder / MANIFEST_NAME).stat().st_size
    fields = field_locations(doc)
    column = {g: j for j, g in enumerate(data.gene_names(csc.shape[1]))}
    picked = range(len(fields))
    if max_genes is not None and len(fields) > max_genes:
        picked = np.unique(np.linspace(0, len(fields) - 1, max_genes).astype(int)).tolist()
    max_err, bad_marker, inexact = 0.0, 0, 0
    top = max_code(doc["_varSchema"]["quantizationBits"]) if quantized else 0
    for i in picked:
        f = fields[i]
        raw = (folder / f.path).read_bytes()
        dec = decode_payload(raw, doc, f.bounds, f.path.endswith(".gz"))
        x = _dense_column(csc, column[f.gene_id])
        if not quantized:
            inexact += int(not np.array_equal(dec, x, equal_nan=True))
            continue
        finite, missing = np.isfinite(x), np.isnan(dec)  # the marker decodes to NaN
        bad_marker += int((missing != ~finite).sum())
        ok = finite & ~missing
        diff = np.abs(dec[ok].astype(np.float64) - x[ok].astype(np.float64))
        lo, hi = float(f.bounds[0]), float(f.bounds[1])
        step = (hi - lo) / top
        if diff.size == 0:
            continue
        if step == 0 or (x[ok].min() == x[ok].max()):
            inexact += int(diff.max() > 0)
            continue
        max_err = max(max_err, float(diff.max() / step))
    return {
        "bytes": nbytes,
        "files": len(files) + 1,
        "max_err_steps": max_err if quantized else None,
        "exact": inexact == 0,
        "marker_mismatches": bad_marker,
        "genes_checked": len(picked),
    }
