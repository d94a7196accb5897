"""End-to-end exports to a local folder: inputs, bytes on disk, layouts, determinism."""

from __future__ import annotations

import gzip
import json
import warnings
from pathlib import Path

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from dask_cellucid import ExportWarning, prepare, read_gene, read_genes, read_manifest
from dask_cellucid.formats.folder.naming import sanitize_key
from dask_cellucid.testing import (
    assert_export_equal,
    assert_matches_dense_export,
    export_files,
    random_matrix,
    read_payloads,
)

N_CELLS, N_GENES = 120, 23
GENES = [f"G{j}" for j in range(N_GENES)]


@pytest.fixture(scope="module")
def X() -> sp.csr_matrix:
    return random_matrix(N_CELLS, N_GENES, density=0.15, seed=1, negative=True)


def dask_sparse(m):
    return da.from_array(sp.csr_matrix(m), chunks=(50, 7), asarray=False)


INPUT_KINDS = [
    pytest.param(lambda m: m.toarray(), id="numpy"),
    pytest.param(lambda m: np.asfortranarray(m.toarray()), id="numpy-F"),
    pytest.param(sp.csr_matrix, id="csr"),
    pytest.param(sp.csc_matrix, id="csc"),
    pytest.param(sp.coo_matrix, id="coo"),
    pytest.param(sp.csr_array, id="csr_array"),
    pytest.param(lambda m: m.astype(np.float64), id="float64"),
    pytest.param(lambda m: da.from_array(m.toarray(), chunks=(40, 5)), id="dask-dense"),
    pytest.param(dask_sparse, id="dask-sparse"),
]


@pytest.mark.parametrize("make", INPUT_KINDS)
@pytest.mark.parametrize("bits", [8, None])
def test_every_input_kind_gives_the_same_bytes(tmp_path: Path, X, make, bits) -> None:
    opts = dict(var_quantization=bits, compression=6)
    prepare(X.toarray(), GENES, out_dir=tmp_path / "ref", **opts)
    prepare(make(X), GENES, out_dir=tmp_path / "got", genes_per_block=4, **opts)
    assert_export_equal(tmp_path / "ref", tmp_path / "got")


@pytest.mark.parametrize("groups", [1, 2, 5])
def test_csr_converted_in_groups_of_several_blocks_gives_the_same_bytes(
    tmp_path: Path, X, monkeypatch, groups
) -> None:
    # With more blocks than groups, a group's blocks are views into its CSC arrays
    # (at offsets other than 0): every one must hold exactly its own columns.
    from dask_cellucid.adapters import _memory

    monkeypatch.setattr(_memory, "_CSR_GROUPS", groups)
    opts = dict(var_quantization=8, compression=6)
    prepare(X.toarray(), GENES, out_dir=tmp_path / "ref", **opts)
    prepare(sp.csr_matrix(X), GENES, out_dir=tmp_path / "got", genes_per_block=2, **opts)
    assert_export_equal(tmp_path / "ref", tmp_path / "got")


@pytest.mark.parametrize("subset", [False, True])
def test_csc_with_unsorted_and_repeated_entries_is_exported_and_left_untouched(
    tmp_path: Path, X, subset
) -> None:
    # CSC blocks are views of the matrix: a non-canonical one is canonicalised
    # on a copy (scipy sorts in place), never in the caller's arrays.
    csc = sp.csc_matrix(X)
    rng = np.random.default_rng(3)
    data, indices = [], []
    for j in range(N_GENES):  # each column stored twice (halves), in a random order
        a, b = csc.indptr[j], csc.indptr[j + 1]
        p = np.concatenate([rng.permutation(np.arange(a, b))] * 2)
        data.append(csc.data[p] / 2)
        indices.append(csc.indices[p])
    messy = sp.csc_matrix(
        (np.concatenate(data), np.concatenate(indices), csc.indptr * 2), shape=csc.shape
    )
    assert not messy.has_canonical_format
    opts = dict(var_quantization=8, compression=6, genes_per_block=4)
    if subset:
        opts["gene_identifiers"] = GENES[2::3]
    assert_matches_dense_export(messy, GENES, tmp_path, **opts)


def test_integer_counts_and_float16(tmp_path: Path) -> None:
    counts = np.random.default_rng(0).poisson(0.7, (80, 6)).astype(np.int32)
    for dtype in (np.int32, np.uint16, np.float16):
        out = tmp_path / np.dtype(dtype).name
        prepare(counts.astype(dtype), [f"g{j}" for j in range(6)], out_dir=out)
        got = read_genes(out, [f"g{j}" for j in range(6)])
        for j in range(6):
            np.testing.assert_array_equal(got[f"g{j}"], counts[:, j].astype(np.float32))


@pytest.mark.parametrize("layout", ["key", "index"])
@pytest.mark.parametrize("bits", [8, 16, None])
@pytest.mark.parametrize("compression", [None, 1, 9])
def test_bytes_on_disk_follow_the_spec(tmp_path: Path, X, layout, bits, compression) -> None:
    prepare(
        X, GENES, out_dir=tmp_path, layout=layout, var_quantization=bits, compression=compression
    )
    raw = (tmp_path / "var_manifest.json").read_bytes()
    doc = json.loads(raw, parse_constant=lambda c: pytest.fail(f"non-JSON token {c}"))
    assert list(doc) == [
        "_format",
        "n_points",
        "var_gene_id_column",
        "compression",
        "quantization",
        "_varSchema",
        "fields",
    ]
    assert doc["_format"] == "compact_v1" and doc["n_points"] == N_CELLS
    assert doc["compression"] == compression and doc["quantization"] == bits
    ext, dtype = {None: ("f32", "float32"), 8: ("u8", "uint8"), 16: ("u16", "uint16")}[bits]
    schema = doc["_varSchema"]
    gz = ".gz" if compression else ""
    placeholder = "{key}" if layout == "key" else "{index}"
    assert schema["pathPattern"] == f"var/{placeholder}.values.{ext}{gz}"
    assert (schema["kind"], schema["ext"], schema["dtype"], schema["quantized"]) == (
        "continuous",
        ext,
        dtype,
        bits is not None,
    )
    assert set(schema) == {"kind", "pathPattern", "ext", "dtype", "quantized"} | (
        {"quantizationBits"} if bits else set()
    )
    if bits:
        assert schema["quantizationBits"] == bits
    itemsize = np.dtype(dtype).itemsize
    dense = X.toarray()
    files = export_files(tmp_path)
    assert len([f for f in files if f.startswith("var/")]) == N_GENES
    for j, field in enumerate(doc["fields"]):
        if layout == "key":
            assert field[0] == GENES[j]
            rel = f"var/{sanitize_key(GENES[j])}.values.{ext}{gz}"
            bounds = field[1:]
        else:
            assert field[:2] == [j, GENES[j]]
            rel = f"var/{j}.values.{ext}{gz}"
            bounds = field[2:]
        data = files[rel]
        if compression:
            assert data[:10] == bytes.fromhex("1f8b08000000000000ff")
            assert int.from_bytes(data[-4:], "little") == N_CELLS * itemsize
            data = gzip.decompress(data)
        assert len(data) == N_CELLS * itemsize
        col = dense[:, j]
        if bits is None:
            assert bounds == []
            assert data == col.astype("<f4").tobytes()
        else:
            assert bounds == [float(col.min()), float(col.max())]


@pytest.mark.parametrize("layout", ["key", "index"])
def test_constant_empty_and_nan_genes(tmp_path: Path, layout) -> None:
    x = np.zeros((6, 5), np.float32)
    x[:, 0] = 3.5  # constant
    x[:, 1] = np.nan  # no finite value
    x[:, 2] = [np.nan, np.inf, -np.inf, 1, 2, -4]  # markers + negatives
    # column 3 is all zero; column 4 has a single value
    x[2, 4] = 7
    with pytest.warns(ExportWarning) as rec:
        prepare(x, list("abcde"), out_dir=tmp_path, layout=layout, var_quantization=8)
    messages = " ".join(str(w.message) for w in rec)
    assert "2 gene(s) hold NaN or Inf" in messages and "'b'" in messages
    assert "zero in every cell ('d')" in messages
    doc, codes = read_payloads(tmp_path)
    bounds = {f[0 if layout == "key" else 1]: f[-2:] for f in doc["fields"]}
    if layout == "key":
        assert bounds["a"] == [3.5, 4.5] and bounds["b"] == [0.0, 1.0] and bounds["d"] == [0.0, 1.0]
    else:
        assert bounds["a"] == [3.5, 3.5] and bounds["b"] == [0.0, 0.0] and bounds["d"] == [0.0, 0.0]
    assert bounds["c"] == [-4.0, 2.0] and bounds["e"] == [0.0, 7.0]
    assert codes["a"].tolist() == [0] * 6 and codes["b"].tolist() == [255] * 6
    assert codes["c"][:3].tolist() == [255] * 3
    assert codes["c"][3:].tolist() == [round(5 / 6 * 254), 254, 0]
    # the viewer decodes the constant gene to exactly its value in both layouts
    np.testing.assert_array_equal(read_gene(tmp_path, "a"), np.full(6, 3.5, np.float32))
    assert np.isnan(read_gene(tmp_path, "b")).all()


def test_gene_identifiers_subset_in_given_order(tmp_path: Path, X) -> None:
    pick = ["G7", "G2", "G19"]
    prepare(X, GENES, out_dir=tmp_path, gene_identifiers=pick, var_quantization=16)
    doc = read_manifest(tmp_path)
    assert [f[0] for f in doc["fields"]] == pick
    assert sorted(p.name for p in (tmp_path / "var").iterdir()) == sorted(
        f"{g}.values.u16" for g in pick
    )
    dense = X.toarray()
    for g in pick:
        col = dense[:, GENES.index(g)]
        step = (col.max() - col.min()) / 65534
        assert np.abs(read_gene(tmp_path, g) - col).max() <= step / 2 + 1e-6


def test_var_gene_id_column(tmp_path: Path, X) -> None:
    var = pd.DataFrame({"symbol": [f"SYM-{j}" for j in range(N_GENES)]}, index=GENES)
    prepare(
        X, var, out_dir=tmp_path / "col", var_gene_id_column="symbol", gene_identifiers=["SYM-3"]
    )
    doc = read_manifest(tmp_path / "col")
    assert doc["var_gene_id_column"] == "symbol" and doc["fields"] == [["SYM-3"]]
    prepare(X, var, out_dir=tmp_path / "idx", var_gene_id_column="index", gene_identifiers=["G3"])
    assert read_manifest(tmp_path / "idx")["var_gene_id_column"] == "index"
    prepare(X, var, out_dir=tmp_path / "none", gene_identifiers=["G3"])
    assert read_manifest(tmp_path / "none")["var_gene_id_column"] is None
    np.testing.assert_array_equal(
        read_gene(tmp_path / "col", "SYM-3"), read_gene(tmp_path / "idx", "G3")
    )


def test_missing_genes_can_be_downgraded_to_a_warning(tmp_path: Path, X) -> None:
    with pytest.warns(ExportWarning, match=r"1 of 3 requested genes are not in var: \['NOPE'\]"):
        prepare(
            X, GENES, out_dir=tmp_path, gene_identifiers=["G1", "NOPE", "G2"], missing_genes="warn"
        )
    assert [f[0] for f in read_manifest(tmp_path)["fields"]] == ["G1", "G2"]


def test_make_unique_renames_duplicates_and_collisions(tmp_path: Path) -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    prepare(x, ["A", "A", "Cd/4", "cd_4"], out_dir=tmp_path, make_unique=True)
    ids = [f[0] for f in read_manifest(tmp_path)["fields"]]
    assert ids == ["A", "A-1", "Cd/4", "cd_4-1"]
    np.testing.assert_array_equal(read_gene(tmp_path, "A-1"), x[:, 1])
    np.testing.assert_array_equal(read_gene(tmp_path, "cd_4-1"), x[:, 3])


@pytest.mark.parametrize("scheduler", ["threads", "synchronous", "processes"])
def test_same_bytes_whatever_the_scheduler_and_block_size(tmp_path: Path, X, scheduler) -> None:
    opts = dict(var_quantization=8, compression=6)
    prepare(
        X, GENES, out_dir=tmp_path / "a", genes_per_block=N_GENES, scheduler="synchronous", **opts
    )
    prepare(
        X,
        GENES,
        out_dir=tmp_path / "b",
        genes_per_block=3,
        scheduler=scheduler,
        num_workers=2,
        **opts,
    )
    prepare(X, GENES, out_dir=tmp_path / "c", genes_per_block=1, scheduler=scheduler, **opts)
    assert_export_equal(tmp_path / "a", tmp_path / "b")
    assert_export_equal(tmp_path / "a", tmp_path / "c")


def test_one_task_per_block(tmp_path: Path, X) -> None:
    export = prepare(X, GENES, out_dir=tmp_path, genes_per_block=5, compute=False)
    assert export.plan.block_sizes == (5, 5, 5, 5, 3)
    result = export.execute(scheduler="synchronous")
    assert result.n_genes == N_GENES and result.n_genes_written == N_GENES
    assert not (tmp_path / "var_manifest.json").read_bytes().count(b"NaN")
    assert not (tmp_path / ".dask-cellucid").exists()  # the journal is gone once done


def test_progress_bar_counts_genes(tmp_path: Path, X, capsys) -> None:
    prepare(X, GENES, out_dir=tmp_path, progress=True, genes_per_block=4)
    err = capsys.readouterr().err
    assert "Exporting genes" in err and f"{N_GENES}/{N_GENES}" in err
    prepare(X, GENES, out_dir=tmp_path / "quiet", progress=False)
    assert "Exporting genes" not in capsys.readouterr().err


def test_default_block_size_keeps_tasks_coarse(tmp_path: Path) -> None:
    X = random_matrix(2000, 400, density=0.05)
    export = prepare(
        X, [f"g{j}" for j in range(400)], out_dir=tmp_path, compute=False, num_workers=2
    )
    # never one task per gene, never a single task for the whole matrix
    assert 1 < len(export.plan.block_sizes) < 400
    export = prepare(
        X,
        [f"g{j}" for j in range(400)],
        out_dir=tmp_path,
        compute=False,
        block_memory="1MiB",
        num_workers=2,
    )
    assert max(export.plan.block_sizes) * 2000 * 4 <= 2**20


def test_warnings_are_not_raised_for_clean_data(tmp_path: Path, X) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExportWarning)
        prepare(X, GENES, out_dir=tmp_path)
