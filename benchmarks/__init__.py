"""Benchmarks of dask-cellucid against the reference writer: see README.md."""
