"""Seeded synthetic single-cell data: the CLI's demo and the benchmarks' inputs.

Realistic in the ways that matter to an exporter: cells in clusters with an
embedding, per-gene detection rates spread over orders of magnitude, marker
genes, log1p-normalised values, CSR storage (as scanpy leaves it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp


@dataclass(frozen=True)
class SyntheticData:
    """A generated dataset: ``X`` is CSR float32 ``(n_cells, n_genes)``."""

    X: sp.csr_matrix
    var: pd.DataFrame
    obs: pd.DataFrame
    umap_2d: np.ndarray
    umap_3d: np.ndarray


def synthetic(
    n_cells: int = 20_000,
    n_genes: int = 1_000,
    *,
    density: float = 0.08,
    n_clusters: int = 12,
    n_all_zero: int = 0,
    n_nan: int = 0,
    seed: int = 0,
) -> SyntheticData:
    """Generate a dataset; the same arguments always give the same data.

    Parameters
    ----------
    density
        Mean fraction of non-zero values; per-gene detection rates are spread
        log-normally around it (rare markers to near-dense housekeeping genes).
    n_all_zero, n_nan
        Genes made all zero, and genes given a few NaN cells (bad preprocessing).
    """
    rng = np.random.default_rng(seed)
    cluster = rng.integers(0, n_clusters, n_cells)
    centers2 = rng.normal(0, 6, (n_clusters, 2))
    centers3 = rng.normal(0, 6, (n_clusters, 3))
    umap_2d = (centers2[cluster] + rng.normal(0, 1, (n_cells, 2))).astype(np.float32)
    umap_3d = (centers3[cluster] + rng.normal(0, 1, (n_cells, 3))).astype(np.float32)

    # detection rate per gene: log-normal around `density`, some near-dense genes
    rate = np.exp(rng.normal(0, 1.3, n_genes))
    rate *= density / rate.mean()
    rate = np.clip(rate, 2e-4, 0.97)
    home = rng.integers(0, n_clusters, n_genes)
    marker = rng.random(n_genes) < 0.3
    scale = np.exp(rng.normal(0, 0.3, n_cells))  # size factors

    indptr = np.zeros(n_genes + 1, np.int64)
    rows, vals = [], []
    for j in range(n_genes):
        p = np.full(n_cells, rate[j])
        if marker[j]:
            p[cluster == home[j]] = min(0.95, rate[j] * 6)
        hit = np.flatnonzero(rng.random(n_cells) < p)
        counts = 1 + rng.poisson(np.exp(rng.normal(0.5, 0.8)), hit.size)
        rows.append(hit)
        vals.append(np.log1p(counts * scale[hit]).astype(np.float32))
        indptr[j + 1] = indptr[j] + hit.size
    X = sp.csc_matrix(
        (np.concatenate(vals), np.concatenate(rows), indptr), shape=(n_cells, n_genes)
    ).tocsr()
    if n_all_zero or n_nan:
        X = X.tolil()
        for j in rng.choice(n_genes, n_all_zero + n_nan, replace=False)[:n_all_zero]:
            X[:, j] = 0
        X = X.tocsr()
        X.eliminate_zeros()
        nan_genes = rng.choice(n_genes, n_nan, replace=False) if n_nan else []
        X = X.tolil()
        for j in nan_genes:
            X[rng.choice(n_cells, min(5, n_cells), replace=False), j] = np.nan
        X = X.tocsr()
    names = [f"GENE{j:05d}" for j in range(n_genes)]
    var = pd.DataFrame(
        {"gene_ids": [f"ENSG{j:011d}" for j in range(n_genes)], "marker": marker},
        index=pd.Index(names, name="gene_symbols"),
    )
    obs = pd.DataFrame(
        {"cluster": pd.Categorical([f"c{c}" for c in cluster])},
        index=pd.Index([f"cell{i}" for i in range(n_cells)]),
    )
    return SyntheticData(X.astype(np.float32), var, obs, umap_2d, umap_3d)


def demo() -> SyntheticData:
    """The CLI's built-in demo: 20,000 cells x 2,000 genes, about 8 % non-zero."""
    return synthetic(20_000, 2_000, density=0.08, seed=0)
