"""Which format a path holds: :func:`detect`, the one place that tells them apart.

It sits at the formats level, inside neither format, so that neither imports
the other: it knows each format only by the names of its marker files.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from dask_cellucid.storage import Target

from .folder.spec import MANIFEST_NAME
from .store.spec import CONSOLIDATED, V3_METADATA, ZIP_SUFFIX

if TYPE_CHECKING:
    import os
    from collections.abc import Mapping

Kind = Literal["folder", "store"]


def detect(
    path_or_url: str | os.PathLike[str] | Target,
    storage_options: Mapping[str, Any] | None = None,
) -> Kind:
    """``"store"`` for a Cellucid-ready AnnData store, else ``"folder"`` (an export folder).

    A store is a file named ``*.zarr.zip`` (the single-file store), a folder
    with consolidated metadata (``.zmetadata``, zarr v2) or a root
    ``zarr.json`` (zarr v3), or a folder with a name ending in ``.zarr`` that
    holds no ``var_manifest.json`` (an unfinished or damaged store is still
    judged as a store). Anything else, including a path that does not exist,
    is an export folder: what the folder functions did before stores existed.
    """
    target = Target.of(path_or_url, storage_options)
    name = target.display_url.rstrip("/").rsplit("/", 1)[-1].lower()
    if name.endswith(ZIP_SUFFIX):
        return "store"
    if target.exists(CONSOLIDATED) or target.exists(V3_METADATA):
        return "store"
    if name.endswith(".zarr") and not target.exists(MANIFEST_NAME):
        return "store"
    return "folder"


__all__ = ["Kind", "detect"]
