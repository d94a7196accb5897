"""Is an AnnData genes x cells? A check on its names, for every kind of AnnData input.

The shapes of a transposed AnnData agree with each other (``X`` is genes x
cells, ``obs`` lists genes and ``var`` cells), so no shape check sees it. Its
names do: ``var_names`` that look like cell barcodes (``AAACCTGAGAAACCAT-1``)
while ``obs_names`` do not, or ``obs_names`` that are Ensembl gene ids while
``var_names`` are not. The same check runs on an AnnData in memory, a backed
one and a file (:func:`check_names` on a sample of each axis's names).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from dask_cellucid.errors import InputShapeError

if TYPE_CHECKING:
    from collections.abc import Sequence

#: Names looked at per axis (the first ones: cheap to read from a file).
SAMPLE = 500
# A run of 10+ bases, alone or between separators: 10x/Visium/Drop-seq barcodes with
# their usual prefixes and suffixes (sample_AAAC...-1). No gene symbol looks like it.
_BARCODE = re.compile(r"(?:^|[^A-Za-z])[ACGTN]{10,}(?:$|[^A-Za-z])")
_ENSEMBL_GENE = re.compile(r"^ENS[A-Z]*G\d{11}(?:\.\d+)?$")
# "mostly": a few odd names (controls, spike-ins) do not hide the pattern
_MOST, _FEW = 0.9, 0.1


def _share(names: Sequence[str], pattern: re.Pattern[str]) -> float:
    return sum(bool(pattern.search(n)) for n in names) / len(names) if names else 0.0


def _examples(names: Sequence[str]) -> str:
    return ", ".join(repr(n) for n in names[:2]) + (", ..." if len(names) > 2 else "")


def check_names(obs_names: Sequence[str], var_names: Sequence[str], what: str, fix: str) -> None:
    """Refuse an AnnData whose names say it is genes x cells.

    ``obs_names``/``var_names`` are samples (strings) of each axis's names,
    ``what`` names the matrix for the message (``"X of 'data.h5ad'"``), and
    ``fix`` says how to transpose it.
    """
    obs = [str(n) for n in obs_names[:SAMPLE]]
    var = [str(n) for n in var_names[:SAMPLE]]
    if not obs or not var:
        return
    if _share(var, _BARCODE) >= _MOST and _share(obs, _BARCODE) <= _FEW:
        why = (
            f"its var_names look like cell barcodes ({_examples(var)}) and its obs_names "
            f"do not ({_examples(obs)})"
        )
    elif _share(obs, _ENSEMBL_GENE) >= _MOST and _share(var, _ENSEMBL_GENE) <= _FEW:
        why = (
            f"its obs_names are gene ids ({_examples(obs)}) and its var_names are not "
            f"({_examples(var)})"
        )
    else:
        return
    msg = (
        f"{what} looks transposed (genes x cells): {why}. Rows must be cells and columns "
        f"genes: {fix}"
    )
    raise InputShapeError(msg)


def decoded(values: Sequence[object]) -> list[str]:
    """Names as read from a file (h5py hands out bytes)."""
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]
