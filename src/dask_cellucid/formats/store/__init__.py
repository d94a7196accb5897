"""The Cellucid-ready AnnData store (zarr v2 or v3, a folder or one ``.zarr.zip``), as
cellucid 0.9.5's ``prepare`` writes it.

The format's own module map (this file imports none of them):

- ``spec``: chunk sizes, dtypes, codecs, :class:`StoreOptions`;
- ``segments``: chunk-aligned segments of ``X/data`` from ``indptr`` (pure);
- ``kernels``: a block to canonical CSC, per-gene statistics, chunk bytes (pure NumPy);
- ``elements``: ``obs``, ``var``, ``obsm``, ``uns`` and the metadata, built in memory
  with zarr-python and anndata;
- ``writer``: :class:`StoreWriter` (check, begin, jobs, finish) and the block task;
- ``archive``: the ``.zarr.zip``: packed from the finished folder, read in place;
- ``read``: one gene read as the browser reads it;
- ``validate``: a store checked against the contract.
"""
