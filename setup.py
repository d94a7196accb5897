"""The one C extension (the sparse-aware gzip encoder's loops); the rest is pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "dask_cellucid.formats.folder.sparse_deflate",
            ["src/dask_cellucid/formats/folder/sparse_deflate.c"],
        )
    ]
)
