"""From arguments and matrix shape to a :class:`~dask_cellucid.types.Plan`.

Pure: decides which genes go out, in what order, under which file names and in
which blocks, and refuses bad ids, all before anything is read or written.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import TYPE_CHECKING, Literal

from . import naming
from .errors import ExportWarning, GeneIdError, InvalidOptionError
from .types import Encoding, Layout, Plan

if TYPE_CHECKING:
    from collections.abc import Sequence

log = logging.getLogger(__name__)

# Default working set of one block task (input block, float32 transpose, codes,
# compressed bytes). Small enough for many concurrent tasks per worker, large
# enough that per-task overhead is negligible.
DEFAULT_BLOCK_MEMORY = 64 * 2**20
# Keep at least this many blocks per thread so the last ones do not straggle.
_MIN_BLOCKS = 8


def select_genes(
    all_ids: Sequence[str],
    gene_identifiers: Sequence[str] | None,
    *,
    missing_genes: Literal["raise", "warn"] = "raise",
    make_names_unique: bool = False,
) -> tuple[list[str], list[int]]:
    """Exported ids and their columns, in export order.

    With ``gene_identifiers`` the order is the one given. With
    ``make_names_unique`` repeated ids of ``var`` are renamed ``X-1``, ... first,
    so that every requested id names one column.
    """
    all_ids = [str(i) for i in all_ids]
    if make_names_unique:
        all_ids = naming.make_unique(all_ids)
    if gene_identifiers is None:
        return all_ids, list(range(len(all_ids)))
    if isinstance(gene_identifiers, str | bytes):
        msg = f"gene_identifiers must be a list of gene ids, not the string {gene_identifiers!r}."
        raise InvalidOptionError(msg)
    requested = [str(g) for g in gene_identifiers]
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


def genes_per_block(
    n_cells: int,
    n_genes: int,
    bytes_per_value: float,
    *,
    block_memory: int = DEFAULT_BLOCK_MEMORY,
    n_threads: int = 1,
) -> int:
    """How many genes one block task takes so its working set fits ``block_memory``.

    ``bytes_per_value`` is the task's memory per cell and gene: input bytes,
    the float32 transpose and the codes.
    """
    per_gene = max(1.0, n_cells * bytes_per_value)
    by_memory = max(1, int(block_memory // per_gene))
    threads = max(1, n_threads)
    n_blocks = max(math.ceil(n_genes / by_memory), _MIN_BLOCKS * threads)
    # A multiple of the thread count, so that the threads get equal shares
    # (M on 2 threads: 20 blocks of 100 genes, 10 each, not 19 of 107).
    n_blocks = math.ceil(n_blocks / threads) * threads
    return max(1, min(math.ceil(n_genes / n_blocks), n_genes))


def build_plan(
    *,
    n_cells: int,
    gene_ids: Sequence[str],
    source_columns: Sequence[int],
    encoding: Encoding,
    layout: Layout,
    var_gene_id_column: str | None,
    block_size: int,
    make_names_unique: bool = False,
    source_token: str = "",
) -> Plan:
    """Check ids for the layout and cut the genes into blocks of ``block_size``."""
    if layout not in ("key", "index"):
        msg = f"layout={layout!r} is not 'key' (the default) or 'index'."
        raise InvalidOptionError(msg)
    if n_cells <= 0:
        msg = "the matrix has no cells (0 rows); nothing to export."
        raise InvalidOptionError(msg)
    if not gene_ids:
        msg = "no gene is selected for export; check gene_identifiers and var."
        raise InvalidOptionError(msg)
    ids = naming.resolve_ids(gene_ids, layout=layout, make_names_unique=make_names_unique)
    renamed = sum(a != b for a, b in zip(ids, gene_ids, strict=True))
    if renamed:
        log.info("renamed %d gene id(s) to make them unique", renamed)
    stems = (
        [naming.sanitize_key(i) for i in ids]
        if layout == "key"
        else [str(k) for k in range(len(ids))]
    )
    n = len(ids)
    sizes = tuple(min(block_size, n - s) for s in range(0, n, block_size))
    return Plan(
        n_cells=n_cells,
        gene_ids=tuple(ids),
        source_columns=tuple(int(c) for c in source_columns),
        stems=tuple(stems),
        block_sizes=sizes,
        encoding=encoding,
        layout=layout,
        var_gene_id_column=var_gene_id_column,
        source_token=source_token,
    )
