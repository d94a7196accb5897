"""Seeded benchmark datasets, generated once and cached on disk.

Realistic in the ways that matter to an exporter: per-gene detection rates
spread log-normally over orders of magnitude (rare markers to housekeeping
genes), marker genes enriched in one cluster, log1p-normalised values with
per-cell size factors, about 1 % fully dense genes, a few all-zero genes and
a few genes with NaN cells. Stored as CSR float32, as scanpy leaves ``adata.X``.

The same ``Spec`` always gives the same matrix (bit for bit): generation only
draws from ``numpy.random.default_rng(seed)`` in a fixed order.

Usage::

    python -m benchmarks.data --size M        # generate and cache, print a summary
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import scipy.sparse as sp

# Bump when the generator changes, so stale caches are not reused.
GENERATOR_VERSION = 2


@dataclass(frozen=True)
class Spec:
    """One dataset: shape, mean density and seed."""

    n_cells: int
    n_genes: int
    density: float = 0.08
    seed: int = 0
    n_clusters: int = 12

    @property
    def n_all_zero(self) -> int:
        return max(1, self.n_genes // 500)

    @property
    def n_nan(self) -> int:
        return max(1, self.n_genes // 500)

    @property
    def n_dense(self) -> int:
        return max(1, self.n_genes // 100)

    @property
    def name(self) -> str:
        return f"{self.n_cells}x{self.n_genes}-d{self.density:g}-s{self.seed}"

    def key(self) -> str:
        raw = json.dumps({**asdict(self), "v": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha256(raw.encode()).hexdigest()[:12]


SIZES: dict[str, Spec] = {
    "XS": Spec(2_000, 200),  # the CI smoke test
    "S": Spec(20_000, 2_000, 0.08),
    "M": Spec(100_000, 2_000, 0.08),
    "L": Spec(200_000, 20_000, 0.06),
}

# Scaling points around M: how time grows with cells (genes fixed) and with genes.
SCALING_CELLS = (25_000, 50_000, 100_000, 200_000)
SCALING_GENES = (500, 1_000, 2_000, 4_000)


def scaling_specs(base: Spec) -> list[tuple[str, Spec]]:
    """``(axis, spec)`` pairs: cells varied at ``base.n_genes``, genes varied at ``base.n_cells``."""
    out = [("cells", replace(base, n_cells=n)) for n in SCALING_CELLS]
    out += [("genes", replace(base, n_genes=g)) for g in SCALING_GENES]
    return out


def cache_dir() -> Path:
    """``$DASK_CELLUCID_BENCH_CACHE``, or ``~/.cache/dask-cellucid-bench``."""
    root = (
        os.environ.get("DASK_CELLUCID_BENCH_CACHE")
        or Path.home() / ".cache" / "dask-cellucid-bench"
    )
    return Path(root)


def _rates(spec: Spec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-gene detection rate, marker flag and home cluster."""
    g = spec.n_genes
    rate = np.exp(rng.normal(0.0, 1.5, g))  # ~2 orders of magnitude between 5th and 95th pct
    marker = rng.random(g) < 0.3
    home = rng.integers(0, spec.n_clusters, g)
    special = rng.choice(g, spec.n_dense + spec.n_all_zero + spec.n_nan, replace=False)
    dense = special[: spec.n_dense]
    zero = special[spec.n_dense : spec.n_dense + spec.n_all_zero]
    nan = special[spec.n_dense + spec.n_all_zero :]
    marker[dense] = False
    # Scale the free genes so the expected overall density is spec.density.
    free = np.ones(g, bool)
    free[dense] = free[zero] = False
    want = spec.density * g - spec.n_dense
    c = 1.0 / spec.n_clusters  # a marker's rate is x6 (at most 0.95) in its home cluster
    k = 1.0
    for _ in range(50):
        r = np.clip(rate * k, 1e-4, 0.95)
        eff = np.where(marker, c * np.minimum(0.95, 6 * r) + (1 - c) * r, r)
        k *= want / eff[free].sum()
    rate = np.clip(rate * k, 1e-4, 0.95)
    rate[dense] = 1.0
    rate[zero] = 0.0
    return rate, marker, home, nan


def generate(spec: Spec) -> sp.csr_matrix:
    """Build the matrix of ``spec`` (CSR float32); seconds for M, a few minutes for L."""
    rng = np.random.default_rng(spec.seed)
    n = spec.n_cells
    cluster = rng.integers(0, spec.n_clusters, n).astype(np.int16)
    size_factor = np.exp(rng.normal(0.0, 0.3, n)).astype(np.float32)
    rate, marker, home, nan_genes = _rates(spec, rng)
    mean_count = np.exp(rng.normal(0.3, 0.9, spec.n_genes))

    indptr = np.zeros(spec.n_genes + 1, np.int64)
    rows: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    u = np.empty(n, np.float32)
    for j in range(spec.n_genes):
        r = rate[j]
        if r >= 1.0:
            hit = np.arange(n, dtype=np.int32)
        elif r <= 0.0:
            hit = np.empty(0, np.int32)
        else:
            rng.random(out=u, dtype=np.float32)
            if marker[j]:
                p = np.where(cluster == home[j], np.float32(min(0.95, r * 6)), np.float32(r))
                hit = np.flatnonzero(u < p).astype(np.int32)
            else:
                hit = np.flatnonzero(u < r).astype(np.int32)
        counts = 1.0 + rng.poisson(mean_count[j], hit.size).astype(np.float32)
        v = np.log1p(counts * size_factor[hit] * np.float32(0.7))
        rows.append(hit)
        vals.append(v.astype(np.float32, copy=False))
        indptr[j + 1] = indptr[j] + hit.size
    data = np.concatenate(vals)
    for j in nan_genes:  # a few NaN cells in otherwise ordinary genes
        lo, hi = indptr[j], indptr[j + 1]
        if hi > lo:
            data[rng.choice(np.arange(lo, hi), min(5, hi - lo), replace=False)] = np.nan
    X = sp.csc_matrix((data, np.concatenate(rows), indptr), shape=(n, spec.n_genes))
    X = X.tocsr()
    X.sort_indices()
    return X


def load(spec: Spec, *, verbose: bool = False) -> sp.csr_matrix:
    """The matrix of ``spec``, from the cache if there, else generated and cached.

    The cache holds one ``.npy`` per CSR array, read straight into place: no
    transient second copy, so a case's peak RSS is its own work, not the load.
    """
    path = cache_dir() / f"{spec.name}-{spec.key()}"
    if not (path / "shape.json").exists():
        t0 = time.perf_counter()
        X = generate(spec)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        for name in ("data", "indices", "indptr"):
            np.save(tmp / f"{name}.npy", getattr(X, name))
        (tmp / "shape.json").write_text(json.dumps(list(X.shape)))
        try:
            os.replace(tmp, path)
        except OSError:  # another process cached it first
            shutil.rmtree(tmp, ignore_errors=True)
        if verbose:
            print(f"generated {spec.name} in {time.perf_counter() - t0:.1f} s -> {path}")
        return X
    shape = tuple(json.loads((path / "shape.json").read_text()))
    arrays = [np.load(path / f"{name}.npy") for name in ("data", "indices", "indptr")]
    X = sp.csr_matrix(tuple(arrays), shape=shape, copy=False)
    X.has_sorted_indices = True
    return X


def gene_names(n_genes: int) -> list[str]:
    return [f"GENE{j:05d}" for j in range(n_genes)]


def finite_copy(X: sp.csr_matrix) -> sp.csr_matrix:
    """``X`` with NaN/Inf stored values set to 0 (the reference writer refuses them)."""
    Y = X.copy()
    Y.data[~np.isfinite(Y.data)] = 0.0
    return Y


def describe(X: sp.spmatrix) -> dict[str, float]:
    csc = sp.csc_matrix(X)
    per_gene = np.diff(csc.indptr) / X.shape[0]
    finite = np.isfinite(csc.data)
    return {
        "n_cells": X.shape[0],
        "n_genes": X.shape[1],
        "density": X.nnz / (X.shape[0] * X.shape[1]),
        "gene_density_p5": float(np.percentile(per_gene, 5)),
        "gene_density_p50": float(np.percentile(per_gene, 50)),
        "gene_density_p95": float(np.percentile(per_gene, 95)),
        "n_dense_genes": int((per_gene == 1.0).sum()),
        "n_all_zero_genes": int((per_gene == 0).sum()),
        "n_nan_genes": len(
            np.unique(np.repeat(np.arange(X.shape[1]), np.diff(csc.indptr))[~finite])
        ),
        "max_value": float(np.nanmax(csc.data)) if csc.nnz else 0.0,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="S")
    args = ap.parse_args(argv)
    X = load(SIZES[args.size], verbose=True)
    print(json.dumps(describe(X), indent=1))


if __name__ == "__main__":
    main()
