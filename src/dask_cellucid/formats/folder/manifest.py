"""``var_manifest.json``: built from the plan and the block results (spec section 3).

Knows the two layouts' rules for what goes in the manifest, including how the
bounds of constant and empty genes are written; knows nothing of storage.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from .spec import FORMAT, VAR_DIR, Encoding, FolderOptions, GeneEntry, Layout, layout_of

if TYPE_CHECKING:
    from dask_cellucid.types import Plan

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

MANIFEST_KEYS = (
    "_format",
    "n_points",
    "var_gene_id_column",
    "compression",
    "quantization",
    "_varSchema",
    "fields",
)


def written_bounds(entry: GeneEntry, layout: Layout) -> tuple[float, float]:
    """Bounds as the layout's reader wants them (spec section 2).

    ``key``: min < max always (constant ``[v, v+1]``, empty ``[0, 1]``).
    ``index``: constant ``[v, v]``, empty ``[0, 0]``.
    """
    if not entry.has_finite:
        return (0.0, 1.0) if layout == "key" else (0.0, 0.0)
    if entry.lo == entry.hi and layout == "key":
        return entry.lo, entry.lo + 1.0
    return entry.lo, entry.hi


def var_schema(encoding: Encoding, layout: Layout) -> dict[str, Any]:
    placeholder = "{key}" if layout == "key" else "{index}"
    schema: dict[str, Any] = {
        "kind": "continuous",
        "pathPattern": f"{VAR_DIR}/{placeholder}{encoding.suffix}",
        "ext": encoding.ext,
        "dtype": encoding.dtype,
        "quantized": encoding.bits is not None,
    }
    if encoding.bits is not None:
        schema["quantizationBits"] = encoding.bits
    return schema


def _field(entry: GeneEntry, options: FolderOptions) -> list[Any]:
    layout = options.layout
    head: list[Any] = [entry.gene_id] if layout == "key" else [entry.position, entry.gene_id]
    if options.encoding.bits is None:
        return head
    return [*head, *(_json_number(b) for b in written_bounds(entry, layout))]


def _json_number(x: float) -> float | int:
    if not math.isfinite(x):
        msg = f"bound {x!r} is not finite; this is a bug in dask-cellucid"
        raise AssertionError(msg)
    return float(x)


def build(plan: Plan, entries: Iterable[GeneEntry]) -> dict[str, Any]:
    """The manifest as a dict, fields in export order."""
    ordered = sorted(entries, key=lambda e: e.position)
    if [e.position for e in ordered] != list(range(plan.n_genes)):
        msg = "block results do not cover every exported gene exactly once"
        raise AssertionError(msg)
    options: FolderOptions = plan.options
    return {
        "_format": FORMAT,
        "n_points": plan.n_cells,
        "var_gene_id_column": options.var_gene_id_column,
        "compression": options.encoding.compression or None,
        "quantization": options.encoding.bits,
        "_varSchema": var_schema(options.encoding, options.layout),
        "fields": [_field(e, options) for e in ordered],
    }


def dumps(manifest: Mapping[str, Any]) -> bytes:
    """Strict JSON (no NaN/Infinity tokens), compact like the reference writer."""
    return json.dumps(manifest, allow_nan=False).encode("utf-8")


def loads(raw: bytes | str) -> dict[str, Any]:
    """Parse a manifest, refusing the non-standard NaN/Infinity tokens."""

    def _refuse(token: str) -> float:
        msg = f"manifest holds the non-JSON number {token}"
        raise ValueError(msg)

    return json.loads(raw, parse_constant=_refuse)


__all__ = ["MANIFEST_KEYS", "build", "dumps", "layout_of", "loads", "var_schema", "written_bounds"]
