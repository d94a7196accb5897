"""The sparse-aware gzip encoder in exports: chosen per gene, same values, same bytes everywhere."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from dask_cellucid import prepare, read_genes, validate, verify
from dask_cellucid.testing import assert_export_equal, export_files

pytestmark = pytest.mark.filterwarnings("ignore::dask_cellucid.ExportWarning")
N_CELLS, N_GENES = 3_000, 12
GENES = [f"G{j}" for j in range(N_GENES)]


def _matrix() -> sp.csr_matrix:
    rng = np.random.default_rng(7)
    densities = [0.0, 0.001, 0.01, 0.05, 0.1, 0.2, 0.3, 0.45, 0.6, 0.9, 1.0, 0.02]
    cols = []
    for d in densities:
        x = np.where(rng.random(N_CELLS) < d, np.log1p(rng.random(N_CELLS) * 20), 0.0)
        cols.append(x)
    X = np.stack(cols, axis=1).astype(np.float32)
    X[5, 3] = np.nan
    X[:, 11] -= 1.5 * (X[:, 11] != 0)  # negative values: the code of zero is not 0
    return sp.csr_matrix(X)


@pytest.mark.parametrize("bits", [8, 16, None])
@pytest.mark.parametrize("layout", ["key", "index"])
def test_sparse_encoder_gives_the_generic_codecs_values(
    tmp_path: Path, bits: int | None, layout: str
) -> None:
    X = _matrix()
    kw = {"var_quantization": bits, "compression": 6, "layout": layout}
    for codec in ("auto", "sparse", "libdeflate"):
        prepare(X, GENES, out_dir=tmp_path / codec, codec=codec, **kw)
        assert validate(tmp_path / codec).ok
        assert verify(tmp_path / codec, X, GENES).ok
    want = read_genes(tmp_path / "libdeflate")
    for codec in ("auto", "sparse"):
        got = read_genes(tmp_path / codec)
        for g in GENES:
            np.testing.assert_array_equal(got[g], want[g])
    # the payloads decode (with the stdlib) to exactly the same bytes
    generic, sparse = export_files(tmp_path / "libdeflate"), export_files(tmp_path / "sparse")
    payloads = [p for p in generic if p.startswith("var/")]
    for p in payloads:
        assert gzip.decompress(sparse[p]) == gzip.decompress(generic[p])
    assert any(sparse[p] != generic[p] for p in payloads)  # the sparse encoder was used


def test_auto_keeps_the_generic_codec_for_dense_genes(tmp_path: Path) -> None:
    X = _matrix()
    for codec in ("auto", "libdeflate"):
        prepare(X, GENES, out_dir=tmp_path / codec, codec=codec, var_quantization=8, compression=6)
    auto, generic = export_files(tmp_path / "auto"), export_files(tmp_path / "libdeflate")
    assert auto["var/G9.values.u8.gz"] == generic["var/G9.values.u8.gz"]  # 90 % stored
    assert auto["var/G10.values.u8.gz"] == generic["var/G10.values.u8.gz"]  # every cell
    for sparse_gene in ("G2", "G8"):  # 1 % and 60 % stored
        assert auto[f"var/{sparse_gene}.values.u8.gz"] != generic[f"var/{sparse_gene}.values.u8.gz"]
        assert len(auto[f"var/{sparse_gene}.values.u8.gz"]) < len(
            generic[f"var/{sparse_gene}.values.u8.gz"]
        )


@pytest.mark.parametrize("codec", ["auto", "sparse"])
def test_same_bytes_for_every_input_kind_block_size_and_scheduler(
    tmp_path: Path, codec: str
) -> None:
    X = _matrix()
    kw = {"var_quantization": 8, "compression": 6, "codec": codec}
    prepare(X, GENES, out_dir=tmp_path / "ref", **kw)
    runs = {
        "dense": {"gene_expression": X.toarray()},
        "csc": {"gene_expression": X.tocsc(), "genes_per_block": 5},
        "explicit-zeros": {"gene_expression": _with_explicit_zeros(X)},
        "one-per-block": {"gene_expression": X, "genes_per_block": 1, "scheduler": "synchronous"},
        "processes": {"gene_expression": X, "scheduler": "processes", "num_workers": 2},
    }
    for name, args in runs.items():
        prepare(var=GENES, out_dir=tmp_path / name, **args, **kw)
        assert_export_equal(tmp_path / name, tmp_path / "ref")


def _with_explicit_zeros(X: sp.csr_matrix) -> sp.csr_matrix:
    coo = X.tocoo()
    rows = np.concatenate([coo.row, np.arange(0, N_CELLS, 7)])
    cols = np.concatenate([coo.col, np.full(len(range(0, N_CELLS, 7)), 4)])
    data = np.concatenate([coo.data, np.zeros(len(range(0, N_CELLS, 7)), np.float32)])
    out = sp.csr_matrix((data, (rows, cols)), shape=X.shape)
    assert out.nnz > X.nnz  # stored zeros, as after a subtraction without eliminate_zeros
    return out


def test_float32_negative_zero_survives_the_sparse_encoder(tmp_path: Path) -> None:
    X = np.zeros((50, 2), np.float32)
    X[3, 0], X[7, 0], X[9, 1] = -0.0, 1.5, 2.0
    # scipy drops -0.0 when it builds from a dense array; store it explicitly
    stored = sp.csc_matrix(
        (np.array([-0.0, 1.5, 2.0], np.float32), np.array([3, 7, 9]), np.array([0, 2, 3])),
        shape=(50, 2),
    )
    for name, x in (("dense", X), ("sparse", stored)):
        prepare(x, ["A", "B"], out_dir=tmp_path / name, codec="sparse", compression=6)
        got = read_genes(tmp_path / name)["A"]
        assert np.signbit(got[3]) and got[7] == 1.5, name
