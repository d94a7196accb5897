"""Bad input: a CellucidExportError before anything is written, or a correct export.

For every refusal the output folder is compared byte for byte with what it
was before the call (absent, or an intact earlier export).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dask_cellucid import (
    CellucidExportError,
    GeneIdError,
    InputShapeError,
    InputValueError,
    InvalidOptionError,
    TargetExistsError,
    prepare,
    read_manifest,
)
from dask_cellucid.testing import export_files

N_CELLS = 40


def _matrix(n_genes: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((N_CELLS, n_genes), dtype=np.float32)


def _snapshot(folder: Path) -> dict[str, bytes] | None:
    return export_files(folder) if folder.exists() else None


def _refused(folder: Path, error: type[Exception], match: str, /, *args: Any, **kw: Any) -> None:
    """``prepare(*args, out_dir=folder, **kw)`` raises before changing ``folder``."""
    before = _snapshot(folder)
    with pytest.raises(error, match=match):
        prepare(*args, out_dir=folder, **kw)
    assert _snapshot(folder) == before


@pytest.fixture
def good_export(tmp_path: Path) -> Path:
    out = tmp_path / "good"
    prepare(_matrix(3), ["A", "B", "C"], out_dir=out, var_quantization=8, compression=6)
    return out


@pytest.mark.parametrize(
    ("ids", "match"),
    [
        (["A", None, "C"], r"position 1 of var is missing \(None\)"),
        (["A", float("nan"), "C"], r"position 1 of var is missing \(nan\)"),
        (np.array(["A", None, "C"], dtype=object), "missing"),
    ],
)
def test_missing_ids_in_a_list_are_refused(good_export: Path, ids: Any, match: str) -> None:
    _refused(good_export, GeneIdError, match, _matrix(3), ids, force=True)


def test_bytes_ids_are_decoded_not_repr(tmp_path: Path) -> None:
    for ids in ([b"A", b"B"], pd.Index([b"A", b"B"])):
        out = tmp_path / f"o{len(list(tmp_path.iterdir()))}"
        prepare(_matrix(2), ids, out_dir=out, var_quantization=8)
        assert [f[0] for f in read_manifest(out)["fields"]] == ["A", "B"]


def test_unordered_gene_identifiers_are_refused(good_export: Path) -> None:
    _refused(
        good_export,
        InvalidOptionError,
        "no fixed order.*sorted",
        _matrix(3),
        ["A", "B", "C"],
        gene_identifiers={"A", "B"},
        force=True,
    )


def test_multiindex_var_is_refused(good_export: Path) -> None:
    var = pd.DataFrame(index=pd.MultiIndex.from_tuples([("A", 1), ("B", 2), ("C", 3)]))
    _refused(
        good_export, InvalidOptionError, "MultiIndex.*reset_index", _matrix(3), var, force=True
    )


def test_too_long_file_name_refused_before_writing_and_keeps_old_export(good_export: Path) -> None:
    ids = ["A", "B", "G" * 300]
    _refused(good_export, GeneIdError, "longer than 255 bytes", _matrix(3), ids, force=True)
    # the same ids are fine where they never reach a path
    prepare(_matrix(3), ids, out_dir=good_export.parent / "idx", layout="index")


@pytest.mark.parametrize("n_workers", [-1, 0, "2", 1.5])
def test_bad_num_workers_is_refused_before_writing(tmp_path: Path, n_workers: Any) -> None:
    _refused(
        tmp_path / "o",
        InvalidOptionError,
        "num_workers=",
        _matrix(3),
        ["A", "B", "C"],
        num_workers=n_workers,
    )


@pytest.mark.parametrize("change", [-1, +1])
def test_dask_blocks_that_lie_about_their_rows_are_refused(tmp_path: Path, change: int) -> None:
    X = _matrix(3)

    def lie(b: np.ndarray) -> np.ndarray:
        return b[:-1] if change < 0 else np.vstack([b, b[:1]])

    x = da.from_array(X, chunks=(N_CELLS, 1)).map_blocks(lie, dtype="f4")
    out = tmp_path / "o"
    with pytest.raises(InputShapeError, match="chunks declare"):
        prepare(x, ["A", "B", "C"], out_dir=out, var_quantization=8)
    assert not (out / "var_manifest.json").exists()  # no manifest names wrong payloads


def test_dask_blocks_with_extra_columns_are_refused(tmp_path: Path) -> None:
    x = da.from_array(_matrix(2), chunks=(N_CELLS, 1)).map_blocks(
        lambda b: np.hstack([b, b]), dtype="f4"
    )
    with pytest.raises(InputShapeError, match="chunks declare"):
        prepare(x, ["A", "B"], out_dir=tmp_path / "o")
    assert not (tmp_path / "o" / "var_manifest.json").exists()


def test_unnamed_dask_array_says_why_it_cannot_resume(tmp_path: Path) -> None:
    X = _matrix(4)
    out = tmp_path / "o"

    def fail_once(b: np.ndarray, block_info: Any = None) -> np.ndarray:
        if block_info[None]["chunk-location"][1] == 1:
            raise ConnectionError("lost")
        return b

    x = da.from_array(X, chunks=(N_CELLS, 1), name=False).map_blocks(fail_once, dtype="f4")
    with pytest.raises(ConnectionError):
        prepare(x, list("ABCD"), out_dir=out, genes_per_block=1, scheduler="synchronous")
    again = da.from_array(X, chunks=(N_CELLS, 1), name=False)
    _refused(
        out, TargetExistsError, r"name=False.*force=True", again, list("ABCD"), genes_per_block=1
    )


# -- generated id lists: a refusal before writing, or ids that round-trip ---------------
_ID = st.one_of(
    st.text(min_size=0, max_size=12),
    st.text(alphabet="aA.-_ /", min_size=1, max_size=4),  # case and sanitisation clashes
    st.binary(min_size=1, max_size=6),
    st.none(),
    st.just(float("nan")),
    st.integers(-5, 5),
    st.text(min_size=250, max_size=260, alphabet="x"),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ids=st.lists(_ID, min_size=1, max_size=5), layout=st.sampled_from(["key", "index"]))
def test_any_id_list_is_refused_cleanly_or_round_trips(
    tmp_path_factory: pytest.TempPathFactory, ids: list[Any], layout: str
) -> None:
    out = tmp_path_factory.mktemp("ids") / "o"
    try:
        prepare(_matrix(len(ids)), ids, out_dir=out, layout=layout, var_quantization=8)
    except CellucidExportError:
        assert not out.exists() or not any(out.rglob("*.json"))
        return
    fields = read_manifest(out)["fields"]
    got = [f[0] if layout == "key" else f[1] for f in fields]
    want = []
    for v in ids:
        assert v is not None and not (isinstance(v, float) and math.isnan(v))
        want.append(v.decode() if isinstance(v, bytes) else str(v))
    assert got == want


# -- out-of-core graphs: linear in the data at any budget ----------------------------
@pytest.fixture(scope="module")
def csr_h5ad(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import anndata as ad
    import scipy.sparse as sp

    X = sp.random(6_000, 300, density=0.08, format="csr", dtype=np.float32, random_state=0)
    path = tmp_path_factory.mktemp("h5ad") / "x.h5ad"
    ad.AnnData(X).write_h5ad(path)
    return path


def _graph_size(export: Any) -> tuple[int, int]:
    from dask.core import get_dependencies

    x = export.source.column_blocks(export.plan.source_columns, export.plan.block_sizes)
    graph = dict(x.__dask_graph__())
    edges = sum(len(get_dependencies(graph, k)) for k in graph)
    return len(graph), edges


@pytest.mark.parametrize("strategy", ["spill", "passes"])
def test_out_of_core_graph_grows_with_slabs_plus_blocks(
    tmp_path: Path, csr_h5ad: Path, strategy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dask

    monkeypatch.setitem(dask.config.config, "cellucid", {"csr-strategy": strategy})
    for budget in ("1MiB", "8MiB", "64MiB"):
        export = prepare(csr_h5ad, out_dir=tmp_path / budget, max_memory=budget, compute=False)
        slabs = -(-6_000 // export.source.slab_rows())
        blocks = len(export.plan.block_sizes)
        tasks, edges = _graph_size(export)
        passes = export.source.passes or 1
        # every task and every edge is one per slab, block or pass: nothing multiplies
        assert tasks <= 4 * (passes * slabs + blocks) + 8, (budget, tasks, slabs, blocks)
        assert edges <= 4 * (passes * slabs + blocks) + 8, (budget, edges, slabs, blocks)
    assert not (tmp_path / "1MiB").exists()  # compute=False writes nothing


def test_budget_below_one_slab_is_refused_with_the_least_that_works(
    tmp_path: Path, csr_h5ad: Path
) -> None:
    with pytest.raises(InvalidOptionError, match=r"needs at least (\d+\w+) ") as info:
        prepare(csr_h5ad, out_dir=tmp_path / "o", max_memory="1KB")
    least = re.search(r"needs at least (\d+\w+) ", str(info.value))[1]
    assert not (tmp_path / "o").exists()
    prepare(csr_h5ad, out_dir=tmp_path / "o", max_memory=least, var_quantization=8)
    assert (tmp_path / "o" / "var_manifest.json").exists()


def test_damaged_h5ad_chunk_is_a_clear_error_and_no_manifest(tmp_path: Path) -> None:
    import anndata as ad
    import h5py
    import scipy.sparse as sp

    from dask_cellucid import UnsupportedInputError

    X = sp.random(2_000, 50, density=0.1, format="csr", dtype=np.float32, random_state=1)
    path = tmp_path / "x.h5ad"
    ad.AnnData(X).write_h5ad(path, compression="gzip")
    with h5py.File(path, "r") as f:  # where the compressed data lies in the file
        offset = f["X/data"].id.get_chunk_info(0).byte_offset
    with open(path, "r+b") as f:
        f.seek(offset + 8)
        f.write(b"\xde\xad\xbe\xef" * 16)  # the chunk no longer inflates
    out = tmp_path / "o"
    with pytest.raises(UnsupportedInputError, match=r"damaged or truncated"):
        prepare(path, out_dir=out, var_quantization=8)
    assert not (out / "var_manifest.json").exists()


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(np.asarray, id="numpy"),
        pytest.param(lambda a: __import__("scipy.sparse").sparse.csr_matrix(a), id="csr"),
        pytest.param(lambda a: da.from_array(a, chunks=(N_CELLS, 2)), id="dask"),
    ],
)
@pytest.mark.parametrize("bits", [None, 8])
def test_finite_values_beyond_float32_are_refused_naming_the_genes(
    tmp_path: Path, make: Any, bits: Any
) -> None:
    X = _matrix(4).astype(np.float64)
    X[3, 2] = 1e39  # finite in float64, Inf in float32
    out = tmp_path / "o"
    with pytest.raises(
        InputValueError, match=r"1 gene\(s\) hold finite values beyond float32.*'C'"
    ):
        prepare(make(X), list("ABCD"), out_dir=out, var_quantization=bits, genes_per_block=2)
    assert not (out / "var_manifest.json").exists()
    if make is np.asarray:
        assert not out.exists()  # in memory: refused before anything is written
    # float64 within range exports as before
    X[3, 2] = 1e30
    prepare(make(X), list("ABCD"), out_dir=tmp_path / "ok", var_quantization=bits)


@pytest.mark.parametrize("out", [None, 123, ""])
def test_out_dir_that_is_no_path_is_refused_naming_it(tmp_path: Path, out: Any) -> None:
    with pytest.raises(InvalidOptionError, match=r"out_dir=.* must be a folder path or a URL"):
        prepare(_matrix(3), ["A", "B", "C"], out_dir=out)


@pytest.mark.parametrize("under", [False, True])
def test_out_dir_that_is_a_file_is_refused_before_writing(tmp_path: Path, under: bool) -> None:
    from dask_cellucid import StorageError

    a_file = tmp_path / "file"
    a_file.write_text("keep me")
    out = a_file / "sub" if under else a_file
    with pytest.raises(StorageError, match="which is a file" if under else "is a file"):
        prepare(_matrix(3), ["A", "B", "C"], out_dir=out)
    assert a_file.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_read_only_out_dir_is_refused_before_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dask_cellucid import StorageError

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if os.access(ro, os.W_OK):  # root may write anywhere: ask as an ordinary user would
        real = os.access
        monkeypatch.setattr(
            os, "access", lambda p, mode, **kw: False if Path(p) == ro else real(p, mode, **kw)
        )
    with pytest.raises(StorageError, match="read-only"):
        prepare(_matrix(3), ["A", "B", "C"], out_dir=ro / "out")
    assert not any(ro.iterdir())
