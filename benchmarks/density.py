"""Where the sparse-aware encoder stops paying: its size and speed against libdeflate, by density.

For each payload type and fraction of stored cells, ``--genes`` genes of
``--cells`` cells at random positions with log1p-like values (codes scaled to
the full range, never the code of zero), encoded by
``sparse_gzip.gzip_members_csc`` and by libdeflate level 6 on the dense
payloads, in the same process, one thread. ``sparse_gzip.SPARSE_DENSITY_LIMIT``
comes from this table: the largest density where the encoder is both smaller
and faster.

Usage::

    python -m benchmarks.density
"""

from __future__ import annotations

import argparse
import time

import numpy as np

DENSITIES = (0.01, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 1.0)


def genes(
    dtype: np.dtype, density: float, n_cells: int, n_genes: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[bytes]]:
    """``(codes, rows, indptr, dense payloads)`` of ``n_genes`` genes."""
    rows_l, codes_l, dense_l = [], [], []
    for _ in range(n_genes):
        k = int(n_cells * density)
        rows = np.sort(rng.choice(n_cells, k, replace=False))
        v = np.log1p(rng.geometric(0.3, k) * rng.uniform(0.5, 2, k))
        if dtype.kind == "f":
            codes = v.astype(np.float32)
        else:
            top = np.iinfo(dtype).max - 1  # the largest value code (the last is the marker)
            codes = np.maximum(np.round(v / v.max() * top), 1).astype(dtype)
        dense = np.zeros(n_cells, dtype)
        dense[rows] = codes
        rows_l.append(rows)
        codes_l.append(codes)
        dense_l.append(dense.tobytes())
    indptr = np.r_[0, np.cumsum([len(r) for r in rows_l])]
    return np.concatenate(codes_l), np.concatenate(rows_l), indptr, dense_l


def main(argv: list[str] | None = None) -> None:
    import deflate

    from dask_cellucid.formats.folder import sparse_gzip

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=100_000)
    ap.add_argument("--genes", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    print(
        "| payload | stored cells | bytes, sparse-aware / libdeflate-6 | speed, sparse-aware / libdeflate-6 |"
    )
    print("|---|---|---|---|")
    for dtype in map(np.dtype, (np.uint8, np.uint16, np.float32)):
        for density in DENSITIES:
            codes, rows, indptr, dense = genes(dtype, density, args.cells, args.genes, rng)
            t0 = time.perf_counter()
            ours = sparse_gzip.gzip_members_csc(codes, rows, indptr, args.cells, 0)
            t1 = time.perf_counter()
            ref = [deflate.deflate_compress(d, 6) for d in dense]
            t2 = time.perf_counter()
            size = sum(map(len, ours)) / (sum(map(len, ref)) + 18 * len(ref))  # + gzip framing
            print(f"| {dtype.name} | {density:.0%} | {size:.3f} | {(t2 - t1) / (t1 - t0):.2f}x |")


if __name__ == "__main__":
    main()
