"""A store checked against the contract, from its consolidated metadata and ``X/indptr``.

Every problem found is reported (an empty list: the store follows the contract).
Reads what the browser reads to open the store, and nothing else.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from dask_cellucid.storage import Target

from .read import StoreReader
from .spec import CONSOLIDATED, DEFLATE_LEVEL, SLICED_CHUNK, strip_chunks, vector_chunk

if TYPE_CHECKING:
    import os
    from collections.abc import Mapping

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,179}$")
_ZLIB = {"id": "zlib", "level": DEFLATE_LEVEL}


def _shuffled(meta: Mapping[str, Any]) -> bool:
    filters = meta.get("filters") or []
    size = np.dtype(meta["dtype"]).itemsize
    return filters == [{"id": "shuffle", "elementsize": size}]


def validate(
    path_or_url: str | os.PathLike[str] | Target,
    storage_options: Mapping[str, Any] | None = None,
    *,
    chunk: int = SLICED_CHUNK,
) -> list[str]:
    """Every way the store at ``path_or_url`` departs from the contract."""
    target = Target.of(path_or_url, storage_options)
    raw = target.read(CONSOLIDATED)
    if raw is None:
        return [f"no {CONSOLIDATED}: the browser cannot open the store"]
    meta = json.loads(raw).get("metadata", {})
    problems: list[str] = []

    def attrs(key: str) -> dict[str, Any]:
        return meta.get(f"{key}/.zattrs" if key else ".zattrs") or {}

    if attrs("").get("encoding-type") != "anndata":
        problems.append("the root is not encoded as an anndata group")
    problems += [
        f"{key} is not a dataframe"
        for key in ("obs", "var")
        if attrs(key).get("encoding-type") != "dataframe"
    ]
    problems += [
        f"{key} is not a dict group"
        for key in ("obsm", "obsp", "varm", "varp", "layers", "uns")
        if attrs(key).get("encoding-type") != "dict"
    ]
    record = {
        k.split("/")[2]: v
        for k, v in meta.items()
        if k.startswith("uns/cellucid/") and k.count("/") == 3
    }
    if not record:
        problems.append("uns/cellucid is missing")
    x = attrs("X")
    kind = x.get("encoding-type")
    if kind == "csc_matrix":
        n_cells, _ = x["shape"]
        data, indices = meta.get("X/data/.zarray"), meta.get("X/indices/.zarray")
        if data is None or indices is None or meta.get("X/indptr/.zarray") is None:
            return [*problems, "X lacks data, indices or indptr"]
        nnz = data["shape"][0]
        if data["chunks"] != [vector_chunk(nnz, chunk)] or indices["chunks"] != data["chunks"]:
            problems.append(f"X/data and X/indices are not in chunks of {chunk:,} values")
        n_chunks = -(-nnz // data["chunks"][0]) if nnz else 0
        present = set(target.sizes("X/data"))
        absent = [i for i in range(n_chunks) if f"X/data/{i}" not in present]
        if absent:
            shown = ", ".join(f"X/data/{i}" for i in absent[:5])
            more = f" and {len(absent) - 5:,} more" if len(absent) > 5 else ""
            problems.append(
                f"{len(absent):,} chunk(s) of X/data are missing: {shown}{more} "
                "(the genes they hold read as zeros)"
            )
        if data["compressor"] != _ZLIB or data.get("filters"):
            problems.append("X/data is not zlib 6 without a filter")
        if indices["compressor"] != _ZLIB or not _shuffled(indices):
            problems.append("X/indices is not shuffled then zlib 6")
        if np.dtype(data["dtype"]) not in (np.float32, np.float64):
            problems.append(f"X/data is {data['dtype']}, not float32")
        want = "int64" if n_cells > 2**31 - 1 else "int32"
        if np.dtype(indices["dtype"]) != np.dtype(want):
            problems.append(f"X/indices is {indices['dtype']}, not {want}")
        try:
            ptr = StoreReader(target).indptr
        except Exception as err:
            problems.append(f"X/indptr cannot be read: {err}")
        else:
            if ptr[0] != 0 or ptr[-1] != nnz or np.any(np.diff(ptr) < 0):
                problems.append("X/indptr does not run from 0 to nnz without decreasing")
    elif kind == "array":
        arr = meta.get("X/.zarray", {})
        shape = tuple(arr.get("shape", (0, 0)))
        if tuple(arr.get("chunks", ())) != strip_chunks(*shape):
            problems.append("dense X is not in full-height column strips")
        if arr.get("compressor") != _ZLIB:
            problems.append("dense X is not zlib 6")
    else:
        problems.append(f"X is encoded as {kind!r}, not csc_matrix or array")
    return problems


@dataclass
class StoreValidationReport:
    """What :func:`dask_cellucid.validate` found in a Cellucid-ready AnnData store.

    Attributes
    ----------
    url
        The store checked.
    problems
        Every way the store departs from the contract (it is not valid if any).
    n_cells, n_genes
        The shape of ``X`` (0 when the metadata could not be read).
    """

    url: str
    problems: list[str] = field(default_factory=list)
    n_cells: int = 0
    n_genes: int = 0

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def __str__(self) -> str:
        what = (
            f"Cellucid-ready store, {self.n_genes:,} genes x {self.n_cells:,} cells"
            if self.n_cells or self.n_genes
            else "Cellucid-ready store, no readable metadata"
        )
        head = f"validate {self.url} ({what}): "
        if self.ok:
            return head + "OK, no problem found."
        return "\n".join(
            [head + f"{len(self.problems)} problem(s):", *(f"  - {p}" for p in self.problems)]
        )


def validate_store(
    path_or_url: str | os.PathLike[str] | Target,
    storage_options: Mapping[str, Any] | None = None,
    *,
    chunk: int = SLICED_CHUNK,
) -> StoreValidationReport:
    """:func:`validate` as a report, with the shape of ``X`` when it can be read."""
    target = Target.of(path_or_url, storage_options)
    report = StoreValidationReport(url=target.url)
    try:
        report.problems = validate(target, chunk=chunk)
    except Exception as err:  # a damaged document: say so, as a problem
        report.problems = [f"the store cannot be read: {type(err).__name__}: {err}"]
        return report
    if not report.problems or CONSOLIDATED not in report.problems[0]:
        try:
            meta = json.loads(target.read(CONSOLIDATED) or b"{}").get("metadata", {})
            x = meta.get("X/.zattrs", {})
            shape = x.get("shape") or meta.get("X/.zarray", {}).get("shape") or (0, 0)
            report.n_cells, report.n_genes = int(shape[0]), int(shape[1])
        except Exception:
            pass
    return report


__all__ = ["StoreValidationReport", "validate", "validate_store"]
