"""The one C extension (deflate encoders for sparse genes and float chunks); the rest is pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("dask_cellucid.deflate_kernels", ["src/dask_cellucid/deflate_kernels.c"]),
    ]
)
