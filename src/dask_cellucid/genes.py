"""Gene ids: from ``var`` to the ids and columns an export writes, and the checks on them.

One home for the rules every format shares: where ids come from
(``var_gene_id_column``), that ``var`` describes the matrix's columns, and
which genes a selection (``gene_identifiers``) picks, in which order. File
name rules belong to the folder format (:mod:`.formats.folder.naming`).
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from .errors import ExportWarning, GeneIdError, InputShapeError, InvalidOptionError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence


def as_var(var: Any) -> pd.DataFrame | None:
    """``var`` as a DataFrame (a list of gene names becomes its index)."""
    if var is None:
        return None
    if isinstance(var, pd.DataFrame):
        if isinstance(var.index, pd.MultiIndex):
            msg = (
                f"var has a MultiIndex ({var.index.nlevels} levels); gene ids must be one "
                "level. Pass var.reset_index() and var_gene_id_column= naming the id column."
            )
            raise InvalidOptionError(msg)
        return var
    if isinstance(var, set | frozenset | dict):
        msg = (
            f"var is a {type(var).__name__}, which has no fixed order; pass a list of gene "
            "names in the order of the matrix's columns, or a DataFrame."
        )
        raise InvalidOptionError(msg)
    if isinstance(var, pd.Index | pd.Series | list | tuple) or hasattr(var, "__array__"):
        return pd.DataFrame(index=pd.Index(id_strings(list(var), "var")))
    msg = f"var must be a pandas DataFrame (or a list of gene names), got {type(var).__name__}."
    raise InvalidOptionError(msg)


def id_strings(values: Sequence[Any], where: str) -> list[str]:
    """Gene ids as strings: bytes are decoded, missing values (None, NaN) refused.

    ``str()`` would turn ``None`` into the gene ``"None"``, ``nan`` into
    ``"nan"`` and ``b"A"`` into ``"b'A'"``: ids that look fine and are wrong.
    """
    out = []
    for k, v in enumerate(values):
        if isinstance(v, bytes | bytearray | np.bytes_):
            try:
                v = bytes(v).decode("utf-8")
            except UnicodeDecodeError as err:
                msg = f"gene id {v!r} in {where} (position {k}) is not UTF-8 text."
                raise GeneIdError(msg) from err
        elif v is None or (isinstance(v, float | np.floating) and np.isnan(v)) or v is pd.NA:
            msg = (
                f"gene id at position {k} of {where} is missing ({v!r}); every gene needs an "
                "id. Fill it in, or drop that gene."
            )
            raise GeneIdError(msg)
        out.append(str(v))
    return out


def var_for(var: Any, own: pd.DataFrame | None, shape: tuple[int, int]) -> pd.DataFrame:
    """The ``var`` to use with a matrix of ``shape`` whose input carries ``own`` (or None).

    Raises
    ------
    InvalidOptionError
        A bare matrix and no ``var``.
    InputShapeError
        ``var`` does not describe the matrix's columns, in order.
    """
    var_df = as_var(var) if var is not None else own
    if var is not None and own is not None and var_df is not None:
        check_var_matches(var_df, own, shape)
    if var_df is None:
        msg = (
            "var is required with a bare matrix: pass var=adata.var (or a list of gene "
            "names), one row per column of the matrix."
        )
        raise InvalidOptionError(msg)
    check_alignment(var_df, shape)
    return var_df


def gene_ids_from_var(
    var: pd.DataFrame, var_gene_id_column: str | None
) -> tuple[list[str], str | None]:
    """The ids of every column, and the value the manifest records for their origin."""
    if var_gene_id_column is None or var_gene_id_column == "index":
        values, recorded = var.index, var_gene_id_column
    elif var_gene_id_column in var.columns:
        values, recorded = var[var_gene_id_column], var_gene_id_column
    else:
        cols = list(map(str, var.columns))
        msg = (
            f"var_gene_id_column={var_gene_id_column!r} is not a column of var. Available: "
            f"{cols[:20]}{' ...' if len(cols) > 20 else ''}; or 'index' for var's index."
        )
        raise InvalidOptionError(msg)
    missing = pd.isna(pd.Series(values)).to_numpy()
    if missing.any():
        where = f"var[{var_gene_id_column!r}]" if recorded not in (None, "index") else "var.index"
        msg = (
            f"{int(missing.sum())} gene id(s) in {where} are missing (NaN/None), e.g. at "
            f"row {int(missing.argmax())}. Fill them, or choose another var_gene_id_column."
        )
        raise GeneIdError(msg)
    return id_strings(list(values), "var"), recorded


def check_alignment(var: pd.DataFrame, shape: tuple[int, int]) -> None:
    """``var`` must have one row per column (gene) of a cells x genes matrix."""
    n_cells, n_genes = shape
    if len(var) == n_genes:
        return
    if len(var) == n_cells:
        msg = (
            f"gene_expression has shape {shape} (cells x genes) but var has {len(var)} rows, "
            f"the number of cells: the matrix looks transposed. Pass gene_expression.T "
            "(rows must be cells, columns genes)."
        )
        raise InputShapeError(msg)
    msg = (
        f"var has {len(var)} rows but gene_expression has {n_genes} genes (columns); they must "
        "describe the same genes in the same order. Pass adata.var with adata.X (not a var "
        "from before filtering genes)."
    )
    raise InputShapeError(msg)


def check_var_matches(var: pd.DataFrame, own: pd.DataFrame, shape: tuple[int, int]) -> None:
    """A ``var`` passed with an AnnData must describe the AnnData's genes, in order."""
    n_cells, n_genes = shape
    if len(var) == n_cells and len(var) != n_genes:
        msg = (
            f"var has {len(var)} rows, one per cell, but must have one per gene ({n_genes}): "
            "it looks like adata.obs. Pass var=adata.var, or leave var out (the AnnData's "
            "own var is used)."
        )
        raise InputShapeError(msg)
    if len(var) != len(own) or not var.index.equals(own.index):
        msg = (
            f"var (index {list(var.index[:3])}..., {len(var)} rows) is not the AnnData's var "
            f"(var_names {list(own.index[:3])}..., {len(own)} rows); they must list the same "
            "genes in the same order. Leave var out to use the AnnData's own var, and use "
            "var_gene_id_column= to take gene ids from one of its columns."
        )
        raise InputShapeError(msg)


def requested_ids(gene_identifiers: Any) -> list[str] | None:
    """``gene_identifiers`` as a list of ids (None: every gene)."""
    if gene_identifiers is None:
        return None
    if isinstance(gene_identifiers, str | bytes):
        msg = f"gene_identifiers must be a list of gene ids, not the string {gene_identifiers!r}."
        raise InvalidOptionError(msg)
    if isinstance(gene_identifiers, set | frozenset | dict):
        # a set's order changes from one process to the next: so would the export
        msg = (
            f"gene_identifiers is a {type(gene_identifiers).__name__}, which has no fixed "
            "order, and the export follows the order given. Pass a list, e.g. "
            "sorted(gene_identifiers)."
        )
        raise InvalidOptionError(msg)
    return id_strings(list(gene_identifiers), "gene_identifiers")


def select_genes(
    all_ids: Sequence[str],
    gene_identifiers: Sequence[str] | None,
    *,
    missing_genes: Literal["raise", "warn"] = "raise",
    rename: Callable[[list[str]], list[str]] | None = None,
) -> tuple[list[str], list[int]]:
    """Exported ids and their columns, in export order.

    With ``gene_identifiers`` the order is the one given. ``rename`` (the
    format's ``make_unique``) renames repeated ids of ``var`` first, so that
    every requested id names one column.
    """
    all_ids = [str(i) for i in all_ids]
    if rename is not None:
        all_ids = rename(all_ids)
    requested = requested_ids(gene_identifiers)
    if requested is None:
        return all_ids, list(range(len(all_ids)))
    column: dict[str, int] = {}
    ambiguous = set()
    for j, gid in enumerate(all_ids):
        if gid in column:
            ambiguous.add(gid)
        column.setdefault(gid, j)
    asked_ambiguous = [g for g in dict.fromkeys(requested) if g in ambiguous]
    if asked_ambiguous:
        msg = (
            f"{len(asked_ambiguous)} requested gene id(s) name several columns of var: "
            f"{asked_ambiguous[:10]}. Pass make_unique=True (then 'X-1' names the second 'X'), "
            "or pick a var_gene_id_column with unique values."
        )
        raise GeneIdError(msg)
    missing = [g for g in requested if g not in column]
    if missing:
        msg = (
            f"{len(missing)} of {len(requested)} requested genes are not in var: "
            f"{missing[:10]}{' ...' if len(missing) > 10 else ''}. Check the spelling and "
            "var_gene_id_column (symbols vs Ensembl ids)"
        )
        if missing_genes == "raise":
            raise GeneIdError(msg + ", or pass missing_genes='warn' to skip them.")
        warnings.warn(msg + "; they are skipped.", ExportWarning, stacklevel=3)
    kept = [g for g in requested if g in column]
    return kept, [column[g] for g in kept]


def make_unique(ids: Sequence[str], join: str = "-") -> list[str]:
    """Rename repeated ids ``X, X-1, X-2, ...`` the way anndata does.

    The first occurrence keeps its name; a generated name never reuses one
    already present.
    """
    taken = set(ids)
    seen: set[str] = set()
    next_suffix: dict[str, int] = defaultdict(lambda: 1)
    out = []
    for name in ids:
        if name not in seen:
            seen.add(name)
            out.append(name)
            continue
        k = next_suffix[name]
        while f"{name}{join}{k}" in taken:
            k += 1
        new = f"{name}{join}{k}"
        next_suffix[name] = k + 1
        taken.add(new)
        seen.add(new)
        out.append(new)
    return out


def duplicates(ids: Sequence[str]) -> list[str]:
    """Ids that occur more than once, in order of first repeat."""
    seen: set[str] = set()
    dup: dict[str, None] = {}
    for name in ids:
        if name in seen:
            dup[name] = None
        seen.add(name)
    return list(dup)
