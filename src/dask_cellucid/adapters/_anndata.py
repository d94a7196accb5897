"""AnnData inputs: an ``AnnData`` (in memory or backed) or a path/URL to .h5ad or .zarr.

``layer=`` and ``use_raw=`` pick the matrix (``X``, ``layers[name]``, ``raw.X``);
``var`` comes with it (``raw.var`` for ``use_raw``). Files are never loaded:
:class:`~._backed.FileSource` reads them block by block inside the graph's
tasks, within ``max_memory``.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

import dask
import numpy as np
import pandas as pd

from dask_cellucid import options
from dask_cellucid.errors import InputShapeError, InvalidOptionError, UnsupportedInputError

from ._backed import STRATEGIES, FileSource
from ._files import (
    check_input_access,
    detect_format,
    element_path,
    get,
    has,
    inspect_file,
    open_root,
    read_frame,
)
from ._memory import memory_source
from ._orientation import SAMPLE, check_names

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._base import Source

log = logging.getLogger(__name__)


def is_anndata(obj: Any) -> bool:
    return any(
        c.__name__ == "AnnData" and c.__module__.startswith("anndata") for c in type(obj).__mro__
    )


def _strategy() -> str:
    value = str(dask.config.get("cellucid.csr-strategy", "auto"))
    if value not in STRATEGIES:
        msg = (
            f"dask config cellucid.csr-strategy={value!r} (env DASK_CELLUCID__CSR_STRATEGY) "
            f"must be one of {', '.join(STRATEGIES)}."
        )
        raise InvalidOptionError(msg)
    return value


def _input_url(path: Any, storage_options: Mapping[str, Any] | None) -> tuple[str, Any]:
    """An input's URL (a local path made absolute) and its format, its storage probed."""
    from dask_cellucid.storage.target import resolve_url

    url = resolve_url(
        path, storage_options, option="input_storage_options", example="s3://bucket/data.h5ad"
    )
    fmt = detect_format(url)
    check_input_access(url, storage_options)
    return url, fmt


def from_path(
    path: str | os.PathLike[str],
    *,
    layer: str | None = None,
    use_raw: bool = False,
    max_memory: int | None = None,
    storage_options: dict[str, Any] | None = None,
) -> FileSource:
    """A lazily read matrix of an .h5ad file or .zarr store (local path or fsspec URL)."""
    url, fmt = _input_url(path, storage_options)
    info = inspect_file(url, fmt, layer=layer, use_raw=use_raw, storage_options=storage_options)
    check_dtype(info.dtype, f"{info.ref.elem} in {url!r}")
    budget = options.resolve_memory(max_memory)
    source = FileSource(
        None,
        var=info.var,
        description=f"{info.ref.elem} of {url} ({info.encoding})",
        info=info,
        max_memory=budget,
        strategy=_strategy(),  # type: ignore[arg-type]
        scratch_dir=dask.config.get("cellucid.scratch", None),
    )
    source.check_budget()
    return source


def check_dtype(dtype: np.dtype[Any], what: str) -> None:
    from ._memory import check_numeric

    check_numeric(dtype, what)


def from_anndata(
    adata: Any, *, layer: str | None = None, use_raw: bool = False, max_memory: int | None = None
) -> Source:
    """The matrix of an AnnData object picked by ``layer``/``use_raw``, with its var."""
    elem = element_path(layer, use_raw=use_raw)
    if getattr(adata, "isbacked", False):
        if adata.is_view:
            msg = (
                "gene_expression is a view (a subset) of a backed AnnData; its file holds the "
                "full matrix. Pass the full backed AnnData (or its path) and choose genes with "
                "gene_identifiers=list(view.var_names); a subset of cells needs "
                "view.to_memory() or writing the subset to a new file."
            )
            raise UnsupportedInputError(msg)
        source = from_path(adata.filename, layer=layer, use_raw=use_raw, max_memory=max_memory)
        var = adata.raw.var if use_raw else adata.var
        if len(var) == source.shape[1]:
            source.var = var
        return source
    if use_raw:
        if adata.raw is None:
            msg = (
                "the AnnData has no raw (adata.raw is None); drop use_raw to export X, or "
                "pick a layer."
            )
            raise InvalidOptionError(msg)
        matrix, var = adata.raw.X, adata.raw.var
    elif layer is not None:
        if layer not in adata.layers:
            have = list(adata.layers.keys())
            msg = (
                f"the AnnData has no layer {layer!r}. Its layers: {have if have else 'none'}. "
                "Pick one of those, or drop layer= to export X."
            )
            raise InvalidOptionError(msg)
        matrix, var = adata.layers[layer], adata.var
    else:
        matrix, var = adata.X, adata.var
    if matrix is None:
        msg = "the AnnData has no X (adata.X is None); pick a layer with layer=."
        raise UnsupportedInputError(msg)
    if not isinstance(var, pd.DataFrame):
        msg = (
            f"the AnnData's var is a {type(var).__name__}, not a pandas DataFrame (a lazily "
            "read AnnData?). Pass adata.to_memory() or the file's path instead."
        )
        raise UnsupportedInputError(msg)
    source = memory_source(matrix)
    source.description = f"{elem} of an in-memory AnnData ({source.description})"
    if source.shape[1] != len(var) and source.shape[0] == len(var):
        msg = (
            f"{elem} has shape {source.shape} but the AnnData has {len(var)} genes: the matrix "
            "is genes x cells. Set it to its transpose so that rows are cells."
        )
        raise InputShapeError(msg)
    check_names(
        list(adata.obs_names[:SAMPLE]),
        list(var.index[:SAMPLE]),
        f"{elem} of the AnnData",
        "pass adata.T.",
    )
    source.var = var
    return source


def read_obsm(
    path: str, key: str, storage_options: dict[str, Any] | None = None
) -> np.ndarray | None:
    """An embedding ``obsm[key]`` of an .h5ad/.zarr file (small; read eagerly), or None."""
    from anndata.io import read_elem

    url, fmt = _input_url(path, storage_options)
    with open_root(url, fmt, storage_options) as root:
        if not has(root, f"obsm/{key}"):
            log.info("%s has no obsm[%r]; writing genes only", url, key)
            return None
        value = read_elem(get(root, f"obsm/{key}"))
    coords = np.asarray(value.to_numpy() if hasattr(value, "to_numpy") else value)
    if coords.ndim != 2 or not np.issubdtype(coords.dtype, np.number):
        log.warning(
            "obsm[%r] has shape %s and dtype %s; not an embedding, skipped",
            key,
            coords.shape,
            coords.dtype,
        )
        return None
    return coords


def read_annotations(path: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything of an .h5ad/.zarr file but its matrices: ``obs``, ``var``, the numeric
    ``obsm`` arrays (``embeddings``) and ``obsp['connectivities']`` when present.

    Small, read eagerly; ``X``, ``layers`` and ``raw`` are not touched (the
    export reads ``X`` out of core from the path).
    """
    from anndata.io import read_elem

    url, fmt = _input_url(path, storage_options)
    out: dict[str, Any] = {}
    with open_root(url, fmt, storage_options) as root:
        for key in ("obs", "var"):
            if has(root, key):
                out[key] = read_frame(get(root, key))
        embeddings: dict[str, np.ndarray] = {}
        if has(root, "obsm"):
            for key in get(root, "obsm"):
                value = read_elem(get(root, f"obsm/{key}"))
                if isinstance(value, pd.DataFrame) or not hasattr(value, "dtype"):
                    continue
                coords = np.asarray(value)
                if coords.ndim == 2 and np.dtype(coords.dtype).kind in "iuf":
                    embeddings[str(key)] = coords
        out["embeddings"] = embeddings
        if has(root, "obsp/connectivities"):
            out["connectivities"] = read_elem(get(root, "obsp/connectivities"))
    return out


def other_matrices(
    obj: Any,
    *,
    layer: str | None = None,
    use_raw: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> list[tuple[str, str, str]]:
    """The matrices of an AnnData input other than the one ``layer``/``use_raw`` pick.

    One ``(what, flag, argument)`` per matrix, e.g. ``("adata.raw", "--use-raw",
    "use_raw=True")``: for :func:`dask_cellucid.verify`'s hint when every gene
    differs. Empty for a bare matrix, or when the input cannot be opened.
    """
    try:
        if is_anndata(obj):
            has_x, has_raw = obj.X is not None, obj.raw is not None
            layers = [str(k) for k in obj.layers]
        elif isinstance(obj, str | os.PathLike):
            url = os.fspath(obj)
            if "://" not in url:
                url = os.path.abspath(os.path.expanduser(url))
            with open_root(url, detect_format(url), storage_options) as root:
                has_x, has_raw = has(root, "X"), has(root, "raw/X")
                layers = sorted(root["layers"].keys()) if has(root, "layers") else []
        else:
            return []
    except Exception:  # only a hint: never fail the report for it
        log.debug("could not list the other matrices of the source", exc_info=True)
        return []
    out = []
    if has_x and use_raw:
        out.append(("adata.X", "without --use-raw", "use_raw=False"))
    elif has_x and layer is not None:
        out.append(("adata.X", "without --layer", "layer=None"))
    if has_raw and not use_raw:
        out.append(("adata.raw", "--use-raw", "use_raw=True"))
    out += [(f"adata.layers[{k!r}]", f"--layer {k}", f"layer={k!r}") for k in layers if k != layer]
    return out[:6]
