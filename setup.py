"""The C extensions (deflate encoders; a CSR column group to CSC); the rest is pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("dask_cellucid.deflate_kernels", ["src/dask_cellucid/deflate_kernels.c"]),
        Extension("dask_cellucid.sparse_kernels", ["src/dask_cellucid/sparse_kernels.c"]),
    ]
)
