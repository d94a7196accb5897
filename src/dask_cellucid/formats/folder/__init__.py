"""The Cellucid export folder (``../shared/spec/export-format.md``).

| module | owns |
|---|---|
| ``spec`` | names, payload dtypes, encodings, field -> path |
| ``naming`` | gene ids -> file stems, collisions |
| ``kernels`` | block -> codes (pure NumPy) |
| ``manifest`` | ``var_manifest.json`` from the block records |
| ``dataset`` | points, obs manifest, dataset identity |
| ``journal`` | resume records |
| ``writer`` | begin / block task / finish for the engine |
| ``read``, ``validate``, ``verify`` | reading a folder back and checking it |

Importing this package loads none of them (the kernels stay importable
without Dask or fsspec).
"""
