"""Read an export back the way the viewer does: for checks, tests and notebooks."""

from __future__ import annotations

import gzip
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from . import kernels, manifest as mf
from .errors import GeneIdError
from .naming import sanitize_key
from .sink import Target
from .types import MANIFEST_NAME, VAR_DIR


def _target(path: str | os.PathLike[str] | Target, storage_options: Mapping[str, Any] | None) -> Target:
    return path if isinstance(path, Target) else Target.from_url(path, storage_options)


def read_manifest(
    path: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The parsed ``var_manifest.json`` of an export folder (local path or URL)."""
    raw = _target(path, storage_options).read(MANIFEST_NAME)
    if raw is None:
        msg = f"{path} has no {MANIFEST_NAME}: not a finished gene export."
        raise FileNotFoundError(msg)
    return mf.loads(raw)


def _locate(doc: Mapping[str, Any], gene: str) -> tuple[str, list[Any]]:
    layout = mf.layout_of(doc)
    pattern = doc["_varSchema"]["pathPattern"]
    for field in doc["fields"]:
        if layout == "key" and field[0] == gene:
            return pattern.replace("{key}", sanitize_key(gene)), field[1:]
        if layout == "index" and field[1] == gene:
            return pattern.replace("{index}", str(field[0])), field[2:]
    msg = f"gene {gene!r} is not in this export's manifest."
    raise GeneIdError(msg)


def decode_payload(raw: bytes, doc: Mapping[str, Any], bounds: Sequence[float], gz: bool) -> np.ndarray:
    """Payload bytes -> float32 values, exactly as the viewer decodes them."""
    if gz:
        raw = gzip.decompress(raw)
    schema = doc["_varSchema"]
    dtype = np.dtype({"float32": "<f4", "uint8": "<u1", "uint16": "<u2"}[schema["dtype"]])
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
    genes: Sequence[str],
    storage_options: Mapping[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """Decode several genes: ``{gene_id: float32 vector of n_cells}``.

    Quantized values are dequantized with the viewer's formula and the
    missing marker becomes NaN.
    """
    target = _target(path, storage_options)
    doc = read_manifest(target)  # type: ignore[arg-type]
    out = {}
    for gene in genes:
        rel, bounds = _locate(doc, gene)
        raw = target.read(rel)
        if raw is None:
            msg = f"{rel} (gene {gene!r}) is named by the manifest but missing."
            raise FileNotFoundError(msg)
        out[gene] = decode_payload(raw, doc, bounds, rel.endswith(".gz"))
    return out


def read_gene(
    path: str | os.PathLike[str], gene: str, storage_options: Mapping[str, Any] | None = None
) -> np.ndarray:
    """Decode one gene of an export as the viewer would (float32, NaN = missing)."""
    return read_genes(path, [gene], storage_options)[gene]


__all__ = ["VAR_DIR", "decode_payload", "read_gene", "read_genes", "read_manifest"]
