"""Bad input: a clear error naming the problem and the fix, before anything is written."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from dask_cellucid import (
    CellucidExportError,
    GeneIdError,
    InputShapeError,
    InvalidOptionError,
    UnsupportedInputError,
    prepare,
)

X = sp.random(30, 8, density=0.3, format="csr", random_state=0, dtype=np.float32)
GENES = [f"G{j}" for j in range(8)]
VAR = pd.DataFrame({"symbol": [f"S{j}" for j in range(8)], "n": range(8)}, index=GENES)

CASES = [
    pytest.param(
        dict(gene_expression=X.T, var=VAR),
        InputShapeError,
        r"looks transposed.*\.T",
        id="transposed",
    ),
    pytest.param(
        dict(var=VAR.iloc[:5]),
        InputShapeError,
        "5 rows but gene_expression has 8 genes",
        id="var-misaligned",
    ),
    pytest.param(dict(var=None), InvalidOptionError, "var is required", id="var-missing"),
    pytest.param(
        dict(var_gene_id_column="gene_symbol"),
        InvalidOptionError,
        r"not a column of var.*'symbol'",
        id="unknown-column",
    ),
    pytest.param(
        dict(var_quantization=12),
        InvalidOptionError,
        "must be None .float32., 8 or 16",
        id="bits-12",
    ),
    pytest.param(dict(var_quantization=True), InvalidOptionError, "must be None", id="bits-bool"),
    pytest.param(dict(compression=10), InvalidOptionError, "gzip level from 1 to 9", id="level-10"),
    pytest.param(dict(compression=-1), InvalidOptionError, "gzip level", id="level-negative"),
    pytest.param(dict(compression="6"), InvalidOptionError, "gzip level", id="level-string"),
    pytest.param(dict(layout="keys"), InvalidOptionError, "'key'", id="layout"),
    pytest.param(dict(rounding="round"), InvalidOptionError, "'nearest'", id="rounding"),
    pytest.param(dict(codec="brotli"), InvalidOptionError, "codec", id="codec"),
    pytest.param(
        dict(gene_identifiers=[]), InvalidOptionError, "no gene is selected", id="empty-selection"
    ),
    pytest.param(
        dict(gene_identifiers="G1"), InvalidOptionError, "not the string", id="ids-as-string"
    ),
    pytest.param(
        dict(gene_identifiers=["G1", "G99", "X"]),
        GeneIdError,
        r"2 of 3 requested genes are not in var: \['G99', 'X'\]",
        id="missing-genes",
    ),
    pytest.param(
        dict(var=["A", "B", "A", "C", "D", "E", "F", "G"]),
        GeneIdError,
        r"more than once.*make_unique=True",
        id="duplicates",
    ),
    pytest.param(
        dict(var=["A/B", "A_B", "c", "d", "e", "f", "g", "h"]),
        GeneIdError,
        "share one file",
        id="sanitize-collision",
    ),
    pytest.param(
        dict(var=["Actb", "ACTB", "c", "d", "e", "f", "g", "h"]),
        GeneIdError,
        "letter case",
        id="case-collision",
    ),
    pytest.param(
        dict(var=["???", "b", "c", "d", "e", "f", "g", "h"]),
        GeneIdError,
        r"layout='index'",
        id="empty-file-name",
    ),
    pytest.param(
        dict(var=pd.DataFrame(index=["a", None, "c", "d", "e", "f", "g", "h"])),
        GeneIdError,
        "missing",
        id="nan-id",
    ),
    pytest.param(
        dict(gene_expression=np.array([["a"] * 8] * 3)),
        UnsupportedInputError,
        "not a real number type",
        id="strings",
    ),
    pytest.param(
        dict(gene_expression=np.ones((3, 8), complex)),
        UnsupportedInputError,
        "astype",
        id="complex",
    ),
    pytest.param(
        dict(gene_expression=pd.DataFrame(np.ones((3, 8)))),
        UnsupportedInputError,
        "not supported",
        id="dataframe",
    ),
    pytest.param(dict(gene_expression=np.ones(8)), UnsupportedInputError, "2-D", id="1d"),
    pytest.param(
        dict(gene_expression=np.ones((0, 8))), InvalidOptionError, "no cells", id="no-cells"
    ),
    pytest.param(dict(layer="counts"), UnsupportedInputError, "layer=", id="layer-on-matrix"),
    pytest.param(
        dict(storage_options={"anon": True}),
        InvalidOptionError,
        "local path",
        id="options-for-local",
    ),
    pytest.param(
        dict(X_umap_2d=np.ones((30, 3))), InputShapeError, r"expected \(30, 2\)", id="umap-shape"
    ),
    pytest.param(
        dict(X_umap_2d=np.full((30, 2), np.nan)), InputShapeError, "NaN or Inf", id="umap-nan"
    ),
    pytest.param(dict(X_umap_2d=np.ones((30, 2))), InputShapeError, "same point", id="umap-flat"),
    pytest.param(
        dict(X_umap_2d=np.random.default_rng(0).random((30, 2)), dataset_id="my data"),
        InvalidOptionError,
        "dataset_id",
        id="dataset-id",
    ),
    pytest.param(dict(genes_per_block=0), InvalidOptionError, "positive integer", id="block-size"),
    pytest.param(dict(force="yes"), InvalidOptionError, "True or False", id="force-not-bool"),
]


@pytest.mark.parametrize(("kwargs", "error", "match"), CASES)
def test_bad_input_is_refused_before_any_write(tmp_path: Path, kwargs, error, match) -> None:
    out = tmp_path / "out"
    args = dict(gene_expression=X, var=VAR, out_dir=out, var_quantization=8) | kwargs
    with pytest.raises(error, match=match) as info:
        prepare(**args)
    assert isinstance(info.value, CellucidExportError)
    assert not out.exists(), "nothing may be written for bad input"


def test_errors_subclass_the_builtins() -> None:
    assert issubclass(InputShapeError, ValueError)
    assert issubclass(UnsupportedInputError, TypeError)
    assert issubclass(GeneIdError, ValueError)


def test_dask_with_unknown_chunks_is_refused(tmp_path: Path) -> None:
    x = da.from_array(np.ones((10, 8)), chunks=5)
    x = x[x[:, 0] > 0]
    with pytest.raises(UnsupportedInputError, match="compute_chunk_sizes"):
        prepare(x, GENES, out_dir=tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_ambiguous_requested_id(tmp_path: Path) -> None:
    with pytest.raises(GeneIdError, match="name several columns"):
        prepare(X, ["A", "A", *GENES[2:]], gene_identifiers=["A"], out_dir=tmp_path / "o")
    prepare(
        X,
        ["A", "A", *GENES[2:]],
        gene_identifiers=["A-1"],
        make_unique=True,
        out_dir=tmp_path / "o",
    )
