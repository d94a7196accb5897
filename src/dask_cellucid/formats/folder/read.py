"""Read an export back the way the viewer does: for checks, tests and notebooks."""

from __future__ import annotations

import gzip
from typing import TYPE_CHECKING, Any

import numpy as np

from dask_cellucid.errors import GeneIdError
from dask_cellucid.storage import Target

from . import kernels
from . import manifest as mf
from .spec import DTYPES, MANIFEST_NAME, VAR_DIR, field_locations

if TYPE_CHECKING:
    import os
    from collections.abc import Mapping, Sequence


def _target(
    path: str | os.PathLike[str] | Target, storage_options: Mapping[str, Any] | None
) -> Target:
    return Target.of(path, storage_options)


def read_manifest(
    path: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The parsed ``var_manifest.json`` of an export folder (local path or URL)."""
    raw = _target(path, storage_options).read(MANIFEST_NAME)
    if raw is None:
        msg = f"{path} has no {MANIFEST_NAME}: not a finished gene export."
        raise FileNotFoundError(msg)
    return mf.loads(raw)


def _locations(doc: Mapping[str, Any]) -> dict[str, tuple[str, list[Any]]]:
    """Gene id -> (payload path, bounds) for every field; the first wins on a repeat."""
    out: dict[str, tuple[str, list[Any]]] = {}
    for loc in field_locations(doc):
        out.setdefault(loc.gene_id, (loc.path, list(loc.bounds)))
    return out


def decode_payload(
    raw: bytes,
    doc: Mapping[str, Any],
    bounds: Sequence[float],
    gz: bool,  # noqa: FBT001
) -> np.ndarray:
    """Payload bytes -> float32 values, exactly as the viewer decodes them.

    ``gz`` says the bytes are gzip (the file name ends in ``.gz``); ``bounds``
    are the gene's ``[min, max]`` from the manifest (unused for float32).
    """
    if gz:
        raw = gzip.decompress(raw)
    schema = doc["_varSchema"]
    dtype = np.dtype(DTYPES[schema["dtype"]].numpy)
    codes = np.frombuffer(raw, dtype=dtype)
    if codes.size != doc["n_points"]:
        msg = f"payload holds {codes.size} values, the manifest says n_points={doc['n_points']}"
        raise ValueError(msg)
    if not schema["quantized"]:
        return codes.astype(np.float32)
    lo, hi = bounds
    return kernels.decode(codes, float(lo), float(hi), schema["quantizationBits"])


def read_genes(
    path: str | os.PathLike[str],
    genes: Sequence[str] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """Decode several genes: ``{gene_id: float32 vector of n_cells}``.

    Quantized values are dequantized with the viewer's formula
    (``min + code * (max - min) / max_code`` in float64, stored as float32) and
    the missing marker becomes NaN; float32 payloads come back as written.

    Parameters
    ----------
    path
        The export folder: a local path or any fsspec URL.
    genes
        Gene ids as in the manifest; ``None`` reads every gene, in export order.
    storage_options
        fsspec options for a URL.

    Raises
    ------
    GeneIdError
        A requested gene is not in the manifest.
    FileNotFoundError
        The folder has no manifest, or a payload it names is missing.
    """
    target = _target(path, storage_options)
    doc = read_manifest(target)  # type: ignore[arg-type]
    where = _locations(doc)
    wanted = list(where) if genes is None else [str(g) for g in genes]
    absent = [g for g in wanted if g not in where]
    if absent:
        msg = (
            f"{len(absent)} gene(s) are not in this export's manifest: {absent[:10]}. Check "
            "the spelling, and read_manifest(path)['fields'] for the ids it holds."
        )
        raise GeneIdError(msg)
    rels = list(dict.fromkeys(where[g][0] for g in wanted))
    raws = target.read_many(rels) if rels else {}
    out = {}
    for gene in wanted:
        rel, bounds = where[gene]
        raw = raws[rel]
        if raw is None:
            msg = f"{rel} (gene {gene!r}) is named by the manifest but missing."
            raise FileNotFoundError(msg)
        out[gene] = decode_payload(raw, doc, bounds, rel.endswith(".gz"))
    return out


def read_gene(
    path: str | os.PathLike[str], gene: str, storage_options: Mapping[str, Any] | None = None
) -> np.ndarray:
    """Decode one gene of an export as the viewer would (float32, NaN = missing).

    Examples
    --------
    >>> values = read_gene("exports/pbmc", "CD3E")  # doctest: +SKIP
    >>> values.dtype, values.shape  # doctest: +SKIP
    (dtype('float32'), (2700,))
    """
    return read_genes(path, [gene], storage_options)[gene]


__all__ = ["VAR_DIR", "decode_payload", "read_gene", "read_genes", "read_manifest"]
