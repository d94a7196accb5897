"""A store checked against the contract, from its consolidated metadata and ``X/indptr``.

Every problem found is reported (an empty list: the store follows the contract).
Reads what the browser reads to open the store, and nothing else. Zarr v2 and
v3, a folder or a ``.zarr.zip``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from dask_cellucid.storage import Target

from .archive import store_target
from .read import StoreReader, array_info, consolidated_metadata, node_attrs
from .spec import (
    CONSOLIDATED,
    DEFLATE_LEVEL,
    SLICED_CHUNK,
    V3_METADATA,
    chunk_name,
    strip_chunks,
    vector_chunk,
)

if TYPE_CHECKING:
    import os
    from collections.abc import Mapping

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,179}$")
_ZLIB = {"id": "zlib", "level": DEFLATE_LEVEL}


_NO_METADATA = (
    f"no {CONSOLIDATED} (zarr v2) nor a root {V3_METADATA} with consolidated metadata "
    "(zarr v3): the browser cannot open the store"
)


def _deflated(info: Mapping[str, Any], zarr_format: int) -> bool:
    """zlib 6 without a filter (v2), ``gzip`` 6 (v3)."""
    doc = info["doc"]
    if zarr_format == 2:
        return doc.get("compressor") == _ZLIB and not doc.get("filters")
    codecs = doc.get("codecs") or []
    return [c.get("name") for c in codecs] == ["bytes", "gzip"] and codecs[1].get(
        "configuration", {}
    ).get("level") == DEFLATE_LEVEL


def _shuffled(info: Mapping[str, Any], zarr_format: int) -> bool:
    """Shuffle then zlib 6 (v2), ``blosc`` zlib 6 with byte shuffle (v3)."""
    doc = info["doc"]
    size = np.dtype(info["dtype"]).itemsize
    if zarr_format == 2:
        filters = doc.get("filters") or []
        return doc.get("compressor") == _ZLIB and filters == [
            {"id": "shuffle", "elementsize": size}
        ]
    codecs = doc.get("codecs") or []
    if [c.get("name") for c in codecs] != ["bytes", "blosc"]:
        return False
    config = codecs[1].get("configuration") or {}
    return (
        config.get("cname") == "zlib"
        and config.get("clevel") == DEFLATE_LEVEL
        and config.get("shuffle") == "shuffle"
    )


def validate(
    path_or_url: str | os.PathLike[str] | Target,
    storage_options: Mapping[str, Any] | None = None,
    *,
    chunk: int = SLICED_CHUNK,
) -> list[str]:
    """Every way the store at ``path_or_url`` departs from the contract."""
    target = store_target(path_or_url, storage_options)
    found = consolidated_metadata(target)
    if found is None:
        return [_NO_METADATA]
    zarr_format, meta = found
    problems: list[str] = []

    def attrs(key: str) -> dict[str, Any]:
        return node_attrs(meta, zarr_format, key)

    def array(key: str) -> dict[str, Any] | None:
        return array_info(meta, zarr_format, key)

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
    if attrs("uns/cellucid").get("encoding-type") != "dict":
        problems.append("uns/cellucid is missing")
    deflated, shuffled = (
        ("zlib 6 without a filter", "shuffled then zlib 6")
        if zarr_format == 2
        else ("gzip 6", "blosc (zlib 6, shuffle)")
    )
    x = attrs("X")
    kind = x.get("encoding-type")
    if kind == "csc_matrix":
        n_cells, _ = x["shape"]
        data, indices = array("X/data"), array("X/indices")
        if data is None or indices is None or array("X/indptr") is None:
            return [*problems, "X lacks data, indices or indptr"]
        nnz = data["shape"][0]
        if data["chunks"] != [vector_chunk(nnz, chunk)] or indices["chunks"] != data["chunks"]:
            problems.append(f"X/data and X/indices are not in chunks of {chunk:,} values")
        n_chunks = -(-nnz // data["chunks"][0]) if nnz else 0
        present = set(target.sizes("X/data"))
        keys = [f"X/data/{chunk_name((i,), zarr_format)}" for i in range(n_chunks)]
        absent = [k for k in keys if k not in present]
        if absent:
            shown = ", ".join(absent[:5])
            more = f" and {len(absent) - 5:,} more" if len(absent) > 5 else ""
            problems.append(
                f"{len(absent):,} chunk(s) of X/data are missing: {shown}{more} "
                "(the genes they hold read as zeros)"
            )
        if not _deflated(data, zarr_format):
            problems.append(f"X/data is not {deflated}")
        if not _shuffled(indices, zarr_format):
            problems.append(f"X/indices is not {shuffled}")
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
        arr = array("X")
        if arr is None:
            return [*problems, "X is no array"]
        shape = tuple(arr["shape"])
        if tuple(arr["chunks"]) != strip_chunks(*shape):
            problems.append("dense X is not in full-height column strips")
        if not _deflated(arr, zarr_format):
            problems.append(f"dense X is not {deflated}")
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
        target = store_target(target)
        report.problems = validate(target, chunk=chunk)
    except Exception as err:  # a damaged document: say so, as a problem
        report.problems = [f"the store cannot be read: {type(err).__name__}: {err}"]
        return report
    if not report.problems or report.problems[0] != _NO_METADATA:
        try:
            found = consolidated_metadata(target)
            if found is not None:
                zarr_format, meta = found
                arr = array_info(meta, zarr_format, "X") or {}
                shape = node_attrs(meta, zarr_format, "X").get("shape") or arr.get("shape")
                report.n_cells, report.n_genes = int(shape[0]), int(shape[1])
        except Exception:
            pass
    return report


__all__ = ["StoreValidationReport", "validate", "validate_store"]
