"""genes.py: from var to the exported ids and columns, and the checks on them."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from dask_cellucid import genes
from dask_cellucid.errors import ExportWarning, GeneIdError, InputShapeError, InvalidOptionError


# -- as_var / var_for ------------------------------------------------------------------
@pytest.mark.parametrize(
    "names",
    [["A", "B"], ("A", "B"), pd.Index(["A", "B"]), pd.Series(["A", "B"]), np.array(["A", "B"])],
)
def test_as_var_turns_a_list_of_names_into_an_index(names):
    var = genes.as_var(names)
    assert isinstance(var, pd.DataFrame)
    assert list(var.index) == ["A", "B"]
    assert var.shape == (2, 0)


def test_as_var_keeps_a_dataframe_and_none():
    df = pd.DataFrame({"sym": ["a", "b"]}, index=["A", "B"])
    assert genes.as_var(df) is df
    assert genes.as_var(None) is None


@pytest.mark.parametrize("bad", [{"A", "B"}, {"A": 1}, 3, "AB"])
def test_as_var_refuses_what_has_no_gene_order(bad):
    with pytest.raises(InvalidOptionError, match="var"):
        genes.as_var(bad)


def test_var_for_needs_a_var_with_a_bare_matrix():
    with pytest.raises(InvalidOptionError, match="var is required"):
        genes.var_for(None, None, (5, 2))


def test_var_for_takes_the_inputs_own_var():
    own = pd.DataFrame(index=["A", "B"])
    assert genes.var_for(None, own, (5, 2)) is own


def test_var_for_refuses_a_var_other_than_the_inputs_own():
    own = pd.DataFrame(index=["A", "B"])
    with pytest.raises(InputShapeError, match="not the AnnData's var"):
        genes.var_for(["B", "A"], own, (5, 2))
    with pytest.raises(InputShapeError, match=r"looks like adata\.obs"):
        genes.var_for([f"c{i}" for i in range(5)], own, (5, 2))
    assert list(genes.var_for(["A", "B"], own, (5, 2)).index) == ["A", "B"]


def test_check_alignment_says_when_the_matrix_looks_transposed():
    with pytest.raises(InputShapeError, match=r"looks transposed\. Pass gene_expression\.T"):
        genes.check_alignment(pd.DataFrame(index=range(5)), (5, 3))


def test_check_alignment_says_when_var_is_from_before_filtering():
    with pytest.raises(InputShapeError, match="var has 4 rows but gene_expression has 3 genes"):
        genes.check_alignment(pd.DataFrame(index=range(4)), (5, 3))
    genes.check_alignment(pd.DataFrame(index=range(3)), (5, 3))  # fits: no error


# -- gene_ids_from_var -------------------------------------------------------------------
VAR = pd.DataFrame({"ensembl": ["E1", "E2", "E3"], "n": [1, 2, 3]}, index=["A", "B", "C"])


def test_gene_ids_from_the_index_or_a_column():
    assert genes.gene_ids_from_var(VAR, None) == (["A", "B", "C"], None)
    assert genes.gene_ids_from_var(VAR, "index") == (["A", "B", "C"], "index")
    assert genes.gene_ids_from_var(VAR, "ensembl") == (["E1", "E2", "E3"], "ensembl")
    assert genes.gene_ids_from_var(VAR, "n") == (["1", "2", "3"], "n")


def test_gene_ids_from_an_unknown_column_lists_the_columns():
    with pytest.raises(
        InvalidOptionError, match=r"'symbol' is not a column of var\. Available: \['ensembl', 'n'\]"
    ):
        genes.gene_ids_from_var(VAR, "symbol")


@pytest.mark.parametrize(("column", "where"), [("ensembl", "var['ensembl']"), (None, "var.index")])
def test_missing_gene_ids_are_refused_with_where_they_are(column, where):
    var = pd.DataFrame(
        {"ensembl": ["E1", None, np.nan]}, index=pd.Index(["A", None, "C"], dtype=object)
    )
    if column is None:
        var = var.set_index(pd.Index(["A", np.nan, "C"], dtype=object))
    with pytest.raises(GeneIdError, match=rf"in {re.escape(where)} are missing.*at row 1"):
        genes.gene_ids_from_var(var, column)


# -- requested ids and selection ---------------------------------------------------------
@pytest.mark.parametrize("text", ["CD4", b"CD4"])
def test_requested_ids_refuse_a_string(text):
    with pytest.raises(InvalidOptionError, match="not the string"):
        genes.requested_ids(text)


def test_requested_ids():
    assert genes.requested_ids(None) is None
    assert genes.requested_ids(("B", "A")) == ["B", "A"]
    assert genes.requested_ids(np.array(["B", "A"])) == ["B", "A"]
    with pytest.raises(InvalidOptionError, match="no fixed order"):
        genes.requested_ids({"A", "B"})


ALL = ["A", "B", "C", "D"]


def test_select_every_gene_by_default():
    assert genes.select_genes(ALL, None) == (ALL, [0, 1, 2, 3])


def test_select_keeps_the_order_asked_for():
    assert genes.select_genes(ALL, ["D", "A", "C"]) == (["D", "A", "C"], [3, 0, 2])


def test_select_refuses_missing_genes_by_default():
    with pytest.raises(
        GeneIdError,
        match=r"2 of 3 requested genes are not in var: \['X', 'Y'\].*missing_genes='warn'",
    ):
        genes.select_genes(ALL, ["X", "A", "Y"])


def test_select_can_skip_missing_genes_with_a_warning():
    with pytest.warns(ExportWarning, match=r"\['X'\].*skipped"):
        assert genes.select_genes(ALL, ["X", "B"], missing_genes="warn") == (["B"], [1])


def test_select_refuses_an_id_that_names_several_columns():
    with pytest.raises(
        GeneIdError, match=r"name several columns of var: \['A'\].*make_unique=True"
    ):
        genes.select_genes(["A", "B", "A"], ["A"])
    # an ambiguous id nobody asked for is no problem
    assert genes.select_genes(["A", "B", "A"], ["B"]) == (["B"], [1])


def test_select_with_rename_reaches_every_column():
    ids, cols = genes.select_genes(["A", "B", "A"], ["A-1", "A"], rename=genes.make_unique)
    assert (ids, cols) == (["A-1", "A"], [2, 0])
    assert genes.select_genes(["A", "B", "A"], None, rename=genes.make_unique) == (
        ["A", "B", "A-1"],
        [0, 1, 2],
    )


# -- make_unique / duplicates --------------------------------------------------------------
def test_make_unique_as_anndata_does():
    assert genes.make_unique(["A", "A", "B", "A"]) == ["A", "A-1", "B", "A-2"]
    # a generated name never takes one that is already there
    assert genes.make_unique(["A", "A", "A-1"]) == ["A", "A-2", "A-1"]
    assert genes.make_unique(["A", "A"], join="_") == ["A", "A_1"]
    ids = ["x", "x", "x-1", "x", "x-2"]
    out = genes.make_unique(ids)
    assert len(set(out)) == len(out)
    assert out[0] == "x"


def test_duplicates_in_order_of_first_repeat():
    assert genes.duplicates(["A", "B", "B", "A", "A", "C"]) == ["B", "A"]
    assert genes.duplicates(["A", "B"]) == []


def test_id_strings_decode_bytes_and_refuse_missing():
    assert genes.id_strings([b"A", np.bytes_(b"B"), 3], "var") == ["A", "B", "3"]
    for missing in (None, float("nan"), pd.NA):
        with pytest.raises(GeneIdError, match="position 1 of var is missing"):
            genes.id_strings(["A", missing], "var")
    with pytest.raises(GeneIdError, match="not UTF-8"):
        genes.id_strings([b"\xff"], "var")
