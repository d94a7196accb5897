"""The rest of a folder the viewer opens (spec section 4): points, obs manifest, identity.

Builds the JSON documents and embedding payloads; knows nothing of storage.
When a folder already exists (written by cellucid's own ``prepare`` without
genes, say), :func:`check_existing` checks that our genes fit it and
:func:`with_genes` updates its identity consistently.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import numpy as np

from dask_cellucid import codecs
from dask_cellucid.errors import InputShapeError, InvalidOptionError

from .spec import FORMAT, Encoding, Layout

if TYPE_CHECKING:
    from collections.abc import Mapping

IDENTITY_NAME = "dataset_identity.json"
OBS_MANIFEST_NAME = "obs_manifest.json"
DATASET_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
CREATED_AT_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
# The cellucid release whose reader each layout pairs with (spec table).
_DATA_VERSION = {"key": "0.9.0", "index": "0.9.2"}


def dataset_id_from(name: str) -> str:
    """A valid dataset id made from a folder name (``my data/`` -> ``my_data``)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-")
    return cleaned if cleaned and DATASET_ID_PATTERN.match(cleaned) else "dataset"


def normalize_embedding(coords: Any, label: str) -> np.ndarray:
    """Centre and scale into [-1, 1] with one scale for all axes; float32 out."""
    arr = np.asarray(coords, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] == 0:
        msg = f"{label} must be a 2-D array of shape (n_cells, d), got shape {arr.shape}."
        raise InputShapeError(msg)
    if not np.isfinite(arr).all():
        msg = f"{label} holds NaN or Inf; the viewer needs a finite position for every cell."
        raise InputShapeError(msg)
    lo, hi = arr.min(axis=0), arr.max(axis=0)
    span = float((hi - lo).max())
    if span <= 0:
        msg = f"{label} puts every cell at the same point; it cannot be scaled for display."
        raise InputShapeError(msg)
    return ((arr - (lo + hi) / 2) * (2.0 / span)).astype("<f4")


def embedding_files(
    embeddings: Mapping[int, Any], n_cells: int, encoding: Encoding
) -> dict[str, bytes]:
    """``points_<d>d.bin[.gz]`` for each given dimension."""
    files = {}
    for dim, coords in sorted(embeddings.items()):
        label = f"X_umap_{dim}d"
        shape = np.shape(coords)
        if shape != (n_cells, dim):
            msg = f"{label} has shape {shape}; expected ({n_cells}, {dim}) for {n_cells} cells."
            raise InputShapeError(msg)
        pts = normalize_embedding(coords, label)
        raw = pts.tobytes()
        if encoding.compression:
            files[f"points_{dim}d.bin.gz"] = codecs.gzip_member(
                raw, encoding.compression, encoding.codec
            )
        else:
            files[f"points_{dim}d.bin"] = raw
    return files


def obs_manifest(n_cells: int, compression: int | None) -> dict[str, Any]:
    """The zero-field obs manifest, exactly as the spec lists it."""
    return {
        "_format": FORMAT,
        "n_points": n_cells,
        "centroid_outlier_quantile": None,
        "latent_key": None,
        "compression": compression or None,
        "_obsSchemas": {},
        "_continuousFields": [],
        "_categoricalFields": [],
    }


def identity(
    *,
    dataset_id: str,
    name: str,
    description: str,
    n_cells: int,
    n_genes: int,
    dims: list[int],
    encoding: Encoding,
    layout: Layout,
    created_at: str | None = None,
) -> dict[str, Any]:
    """A version-2 ``dataset_identity.json`` for a folder with genes and no obs fields."""
    if not DATASET_ID_PATTERN.match(dataset_id):
        msg = f"dataset_id={dataset_id!r} must match [A-Za-z0-9][A-Za-z0-9._-]*, e.g. 'pbmc3k'."
        raise InvalidOptionError(msg)
    gz = ".gz" if encoding.compression else ""
    doc: dict[str, Any] = {
        "version": 2,
        "id": dataset_id,
        "name": name,
        "description": description,
        "cellucid_data_version": _DATA_VERSION[layout],
        "stats": {
            "n_cells": n_cells,
            "n_genes": n_genes,
            "n_obs_fields": 0,
            "n_categorical_fields": 0,
            "n_continuous_fields": 0,
            "has_connectivity": False,
            "n_edges": None,
        },
        "embeddings": {
            "available_dimensions": sorted(dims),
            "default_dimension": 3 if 3 in dims else max(dims),
            "files": {f"{d}d": f"points_{d}d.bin{gz}" for d in sorted(dims)},
        },
        "obs_fields": [],
        "export_settings": {
            "compression": encoding.compression or None,
            "var_quantization": encoding.bits,
            "obs_continuous_quantization": None,
            "obs_categorical_dtype": "uint8",
        },
    }
    if created_at is not None:
        if not CREATED_AT_PATTERN.match(created_at):
            msg = f"created_at={created_at!r} must look like '2026-01-31T12:00:00Z' (UTC)."
            raise InvalidOptionError(msg)
        doc["created_at"] = created_at
    return doc


def check_existing(
    identity_raw: bytes | None, obs_raw: bytes | None, n_cells: int, encoding: Encoding
) -> dict[str, Any] | None:
    """Check our genes fit a folder another writer made; return its identity to update.

    Raises before anything is written if the cell count or the compression
    disagree (the viewer reads one compression setting for the whole folder).
    """
    if identity_raw is None:
        return None
    doc = json.loads(identity_raw)
    stats = doc.get("stats", {})
    if stats.get("n_cells") not in (None, n_cells):
        msg = (
            f"the folder's dataset_identity.json describes {stats['n_cells']} cells but the "
            f"matrix has {n_cells}. Export to a new folder, or pass the matrix of this dataset."
        )
        raise InputShapeError(msg)
    theirs = (doc.get("export_settings") or {}).get("compression", "absent")
    if obs_raw is not None:
        theirs = json.loads(obs_raw).get("compression", theirs)
    ours = encoding.compression or None
    if theirs != "absent" and theirs != ours:
        msg = (
            f"the folder was exported with compression={theirs!r} and this export asks for "
            f"compression={ours!r}; the viewer needs one setting for the whole folder. Pass "
            f"compression={theirs!r}, or force=True with an embedding to rewrite the folder."
        )
        raise InvalidOptionError(msg)
    return doc


def with_genes(doc: Mapping[str, Any], n_genes: int, bits: int | None) -> dict[str, Any]:
    """The identity of an existing folder, updated for the genes just written."""
    out = json.loads(json.dumps(doc))
    out.setdefault("stats", {})["n_genes"] = n_genes
    if isinstance(out.get("export_settings"), dict):
        out["export_settings"]["var_quantization"] = bits
    return out


def dumps(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, indent=2, allow_nan=False).encode("utf-8")
