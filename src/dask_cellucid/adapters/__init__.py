"""Inputs -> :class:`Source`: a matrix that can hand out gene-column blocks as Dask.

:func:`as_source` turns whatever the user passed into a :class:`Source`: NumPy,
scipy.sparse and Dask arrays (``_memory``), an ``AnnData`` in memory or backed,
or a path/URL to an .h5ad file or .zarr store (``_anndata``, read lazily by
``_backed`` within ``max_memory``). Each source knows its shape, dtype,
sparsity and (when the input carries it) ``var``, and builds a Dask array of
``(n_cells, w)`` blocks in the plan's gene order. Nothing is read until the
graph runs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from dask_cellucid.errors import InvalidOptionError, UnsupportedInputError

from ._anndata import (
    from_anndata,
    from_path,
    is_anndata,
    other_matrices,
    read_annotations,
    read_obsm,
)
from ._backed import FileSource
from ._base import Source
from ._memory import memory_source

__all__ = [
    "FileSource",
    "Source",
    "as_source",
    "from_path",
    "other_matrices",
    "read_annotations",
    "read_obsm",
]


def as_source(
    obj: Any,
    *,
    layer: str | None = None,
    use_raw: bool = False,
    max_memory: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Source:
    """Wrap the user's matrix as a :class:`Source`.

    Parameters
    ----------
    obj
        A NumPy, scipy.sparse or Dask matrix; an ``AnnData`` (in memory or
        backed); a path or fsspec URL to an .h5ad file or a .zarr store; or a
        :class:`Source` built by hand.
    layer, use_raw
        Pick ``layers[layer]`` or ``raw.X`` of an AnnData input instead of
        ``X``. In-memory matrices take neither.
    max_memory
        Bytes an out-of-core reader may hold at once, already parsed by
        :func:`dask_cellucid.options.resolve_memory` (default: its default).
    storage_options
        fsspec options for a URL input (``input_storage_options`` of ``prepare``).
    """
    if storage_options is not None and not isinstance(storage_options, Mapping):
        msg = (
            "input_storage_options must be a dict of fsspec options, got "
            f"{type(storage_options).__name__}."
        )
        raise InvalidOptionError(msg)
    if isinstance(obj, str | os.PathLike):
        return from_path(
            obj,
            layer=layer,
            use_raw=use_raw,
            max_memory=max_memory,
            storage_options=dict(storage_options or {}),
        )
    if storage_options:
        msg = (
            "input_storage_options apply to an input given as a URL; gene_expression here is "
            f"a {type(obj).__name__}. Drop them, or pass the URL of the .h5ad/.zarr file."
        )
        raise InvalidOptionError(msg)
    if is_anndata(obj):
        return from_anndata(obj, layer=layer, use_raw=use_raw, max_memory=max_memory)
    if layer is not None or use_raw:
        msg = (
            "layer= and use_raw= pick a matrix inside an AnnData; gene_expression here is a "
            f"{type(obj).__name__}. Pass the AnnData (or its path), or drop them."
        )
        raise UnsupportedInputError(msg)
    if isinstance(obj, Source):
        return obj
    return memory_source(obj)
