"""Compare an export with the matrix it came from: :func:`verify`.

Reads the source as the export does (``Source.column_blocks``) and runs one
Dask task per block of genes (:func:`verify_block`, built in
:mod:`dask_cellucid._graph`): the task reads its genes' payloads, decodes them
as the viewer does and returns small :class:`GeneCheck` records.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from . import _graph, _progress, _scheduler, kernels
from . import manifest as mf
from .sink import Target
from .types import MANIFEST_NAME, GeneEntry, Layout
from .validation import (
    _BOUNDS_RTOL,
    ExportSchema,
    GeneFile,
    Problem,
    _is_int,
    _is_number,
    _names,
    check_manifest,
    decode_file,
    parse_json,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from .adapters import Source

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GeneCheck:
    """How one exported gene compares with its source column.

    Attributes
    ----------
    gene_id
        The id in the manifest.
    max_error
        Largest difference between a decoded value and its source value: in
        quantization steps for quantized exports, absolute for float32
        (NaN when nothing could be compared).
    n_wrong
        Cells whose error exceeds the tolerance (float32: any difference).
    n_nan_mismatch
        Cells missing (NaN/Inf) in the source but not in the export, or the
        other way round.
    bounds, expected_bounds
        Bounds as written, and as the layout's rules say they should be for
        this gene's values (None for float32 exports).
    problem
        Why the payload could not be compared (missing, unreadable), if so.
    """

    gene_id: str
    max_error: float
    n_wrong: int
    n_nan_mismatch: int
    bounds: tuple[float, float] | None = None
    expected_bounds: tuple[float, float] | None = None
    problem: str | None = None

    @property
    def bounds_ok(self) -> bool:
        if self.bounds is None or self.expected_bounds is None:
            return True
        return all(
            math.isclose(a, b, rel_tol=_BOUNDS_RTOL, abs_tol=1e-30)
            for a, b in zip(self.bounds, self.expected_bounds, strict=True)
        )

    @property
    def ok(self) -> bool:
        return (
            self.problem is None
            and self.n_wrong == 0
            and self.n_nan_mismatch == 0
            and self.bounds_ok
        )

    def describe(self, tolerance: float, *, quantized: bool) -> str:
        """One line saying what is wrong with this gene."""
        if self.problem is not None:
            return f"gene {self.gene_id!r}: {self.problem}"
        parts = []
        if self.n_wrong:
            if quantized and math.isinf(self.max_error):
                parts.append(
                    f"{self.n_wrong} cell(s) differ from the constant its bounds "
                    f"{list(self.bounds or ())} decode to"
                )
            elif quantized:
                parts.append(
                    f"{self.n_wrong} cell(s) off by more than {tolerance:g} step (max "
                    f"{self.max_error:.3g} steps)"
                )
            else:
                parts.append(
                    f"{self.n_wrong} cell(s) differ from the source float32 values (max "
                    f"abs. difference {self.max_error:.6g})"
                )
        if self.n_nan_mismatch:
            parts.append(
                f"{self.n_nan_mismatch} cell(s) missing (NaN) in one of export and source "
                "but not the other"
            )
        if not self.bounds_ok:
            parts.append(
                f"bounds {list(self.bounds or ())} in the manifest, but the source values "
                f"call for {list(self.expected_bounds or ())}"
            )
        return f"gene {self.gene_id!r}: " + "; ".join(parts)


@dataclass
class VerifyReport:
    """What :func:`verify` found.

    Attributes
    ----------
    url, source
        The export folder and a description of the source matrix.
    tolerance
        Largest error accepted, in quantization steps (0.5 = nearest rounding).
    quantization
        8, 16 or None (float32, compared bit for bit).
    genes
        One :class:`GeneCheck` per exported gene found in the source.
    missing
        Genes expected (in the source, or asked for) but not in the export.
    extra
        Genes in the export that the source does not have.
    problems
        Problems of the folder itself (manifest, cell count), as in :func:`validate`.
    """

    url: str
    source: str
    tolerance: float
    quantization: int | None
    genes: list[GeneCheck] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def wrong(self) -> list[GeneCheck]:
        """The genes whose values, bounds or payload are wrong."""
        return [g for g in self.genes if not g.ok]

    @property
    def max_error(self) -> float:
        """The largest error over every compared gene (steps, or absolute for float32)."""
        errs = [g.max_error for g in self.genes if not math.isnan(g.max_error)]
        return max(errs, default=math.nan)

    @property
    def ok(self) -> bool:
        """True when every gene is within tolerance and nothing is missing or extra."""
        return not (self.problems or self.missing or self.extra or self.wrong)

    def to_frame(self) -> pd.DataFrame:
        """One row per compared gene: max error, wrong cells, NaN mismatches, bounds, ok."""
        rows = [
            {
                "gene_id": g.gene_id,
                "max_error": g.max_error,
                "n_wrong": g.n_wrong,
                "n_nan_mismatch": g.n_nan_mismatch,
                "bounds_ok": g.bounds_ok,
                "problem": g.problem,
                "ok": g.ok,
            }
            for g in self.genes
        ]
        columns = ["max_error", "n_wrong", "n_nan_mismatch", "bounds_ok", "problem", "ok"]
        return pd.DataFrame(rows, columns=["gene_id", *columns]).set_index("gene_id")

    def __str__(self) -> str:
        quantized = self.quantization is not None
        if quantized:
            rule = f"{self.quantization}-bit codes, tolerance {self.tolerance:g} step " + (
                "(nearest rounding)" if self.tolerance <= 0.5 else "(accepts truncation)"
            )
            unit = "steps"
        else:
            rule, unit = "float32, compared bit for bit", "(absolute)"
        lines = [f"verify {self.url} against {self.source} ({rule}):"]
        worst = max(
            (g for g in self.genes if not math.isnan(g.max_error)),
            key=lambda g: g.max_error,
            default=None,
        )
        summary = f"  {len(self.genes):,} gene(s) compared"
        if worst is not None:
            summary += f"; largest error {worst.max_error:.3g} {unit} (gene {worst.gene_id!r})"
        lines.append(summary)
        lines += [f"  - {p}" for p in self.problems]
        wrong = self.wrong
        lines += [f"  - {g.describe(self.tolerance, quantized=quantized)}" for g in wrong[:50]]
        if len(wrong) > 50:
            lines.append(f"  - ... and {len(wrong) - 50} more wrong gene(s)")
        if self.missing:
            lines.append(
                f"  - {len(self.missing)} gene(s) of the source are not in the export: "
                f"{_names(self.missing)}"
            )
        if self.extra:
            lines.append(
                f"  - {len(self.extra)} exported gene(s) are not in the source: "
                f"{_names(self.extra)}"
            )
        if self.ok:
            lines.append("OK: every exported gene matches its source.")
        else:
            lines.append(f"FAILED: {len(wrong)} wrong gene(s).")
            if (
                quantized
                and wrong
                and self.tolerance < 1
                and all(
                    g.problem is None and g.n_nan_mismatch == 0 and g.bounds_ok and g.max_error < 1
                    for g in wrong
                )
            ):
                lines.append(
                    "  Every error is below one step, which is what rounding='floor' (the "
                    "reference writer's truncation) gives; if the export used it, verify "
                    "with tolerance=1 (--tolerance 1)."
                )
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------
# verify
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class VerifyJob:
    """What one verify task needs: its genes' files and bounds (cheap to ship)."""

    start: int
    genes: tuple[GeneFile, ...]
    schema: ExportSchema  # with genes=() to keep the job small
    tolerance: float


def _expected_bounds(x: np.ndarray, gene: GeneFile, layout: Layout) -> tuple[float, float]:
    finite = x[np.isfinite(x)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (math.nan, math.nan)
    entry = GeneEntry(gene.position, gene.gene_id, lo, hi, int(x.size - finite.size), 0)
    return mf.written_bounds(entry, layout)


def compare_gene(
    values: np.ndarray, x: np.ndarray, gene: GeneFile, schema: ExportSchema, tolerance: float
) -> GeneCheck:
    """Compare one decoded payload with its source column (float32, n_cells).

    Quantized: the error of each cell is ``|decoded - x| / step`` with the
    viewer's decode in float64 and ``step = (max - min) / max_code`` from the
    written bounds, i.e. how far the code is from the exact one in steps.
    float32: bit for bit (any NaN matches any NaN).
    """
    src_missing = ~np.isfinite(x)
    if schema.bits is None:
        out_missing = np.isnan(values)
        nan_mismatch = int((np.isnan(x) != out_missing).sum())
        both = ~(np.isnan(x) | out_missing)
        differ = both & (values.view("<u4") != x.view("<u4"))
        finite = both & np.isfinite(x) & np.isfinite(values)
        err = np.abs(values[finite].astype(np.float64) - x[finite].astype(np.float64))
        return GeneCheck(
            gene.gene_id, float(err.max()) if err.size else 0.0, int(differ.sum()), nan_mismatch
        )
    bits = schema.bits
    top = kernels.max_code(bits)  # type: ignore[arg-type]
    marker = values == top + 1
    nan_mismatch = int((src_missing != marker).sum())
    expected = _expected_bounds(x, gene, schema.layout)
    assert gene.bounds is not None
    lo, hi = gene.bounds
    both = ~(src_missing | marker)
    xs = x[both].astype(np.float64)
    decoded = lo + values[both].astype(np.float64) * ((hi - lo) / top)
    if hi > lo:
        err = np.abs(decoded - xs) / ((hi - lo) / top)
    else:  # index-layout constant: decodes to exactly lo
        err = np.where(decoded == xs, 0.0, np.inf)
    max_err = float(err.max()) if err.size else 0.0
    # float64 slack: the exact code's error is at most tolerance up to rounding noise
    n_wrong = int((err > tolerance + 1e-6).sum())
    return GeneCheck(gene.gene_id, max_err, n_wrong, nan_mismatch, (lo, hi), expected)


def _columns(block: Any) -> Callable[[int], np.ndarray]:
    """Column ``k`` of a block as a dense float32 vector, without scipy's fancy indexing."""
    if sp.issparse(block):
        csc = sp.csc_matrix(block)  # a view when already CSC: copy before changing it
        if not csc.has_canonical_format:
            csc = csc.copy()
            csc.sum_duplicates()
        data = np.asarray(csc.data, dtype=np.float32)
        indices, indptr, n = csc.indices, csc.indptr, csc.shape[0]

        def sparse_column(k: int) -> np.ndarray:
            out = np.zeros(n, np.float32)
            s, e = indptr[k], indptr[k + 1]
            out[indices[s:e]] = data[s:e]
            return out

        return sparse_column
    xt = np.ascontiguousarray(np.asarray(block).T, dtype=np.float32)
    return lambda k: xt[k]


def verify_block(block: Any, job: VerifyJob, target: Target) -> list[GeneCheck]:
    """The verify task: read one block's payloads and compare them with the block."""
    schema = job.schema
    rels = [g.path for g in job.genes if g.path is not None]
    raws = target.read_many(list(dict.fromkeys(rels))) if rels else {}
    column = _columns(block)
    out = []
    for k, gene in enumerate(job.genes):
        raw = raws.get(gene.path) if gene.path is not None else None
        if raw is None:
            why = "its payload file is missing" if gene.path else "no file name can be made from it"
            out.append(
                GeneCheck(gene.gene_id, math.nan, 0, 0, gene.bounds, None, f"{why} ({gene.path})")
            )
            continue
        values, msgs = decode_file(raw, schema)
        if values is None:
            out.append(
                GeneCheck(
                    gene.gene_id,
                    math.nan,
                    0,
                    0,
                    gene.bounds,
                    None,
                    f"{gene.path}: " + "; ".join(msgs),
                )
            )
            continue
        check = compare_gene(values, column(k), gene, schema, job.tolerance)
        if msgs:  # readable but badly framed: values compared, framing still wrong
            check = GeneCheck(
                check.gene_id,
                check.max_error,
                check.n_wrong,
                check.n_nan_mismatch,
                check.bounds,
                check.expected_bounds,
                f"{gene.path}: " + "; ".join(msgs),
            )
        out.append(check)
    return out


def verify_source(
    target: Target,
    source: Source,
    gene_columns: Mapping[str, int],
    *,
    expected: Sequence[str] | None = None,
    tolerance: float = 0.5,
    genes_per_block: int | None = None,
    scheduler: Any = None,
    num_workers: int | None = None,
    progress: bool | None = None,
) -> VerifyReport:
    """Compare an export with a :class:`~dask_cellucid.adapters.Source`, one task per block.

    ``gene_columns`` maps gene ids to their column in ``source``; ``expected``
    lists the genes the export should hold (default: every key of
    ``gene_columns``). Blocks are sized as the export sizes them, unless
    ``genes_per_block`` is given.
    """
    from . import plan as planning
    from .errors import InvalidOptionError

    if not (_is_number(tolerance) and tolerance >= 0):
        msg = f"tolerance={tolerance!r} must be a number of steps >= 0 (0.5 for nearest rounding)."
        raise InvalidOptionError(msg)
    if genes_per_block is not None and not (_is_int(genes_per_block) and genes_per_block > 0):
        msg = f"genes_per_block={genes_per_block!r} must be a positive integer."
        raise InvalidOptionError(msg)
    raw = target.read(MANIFEST_NAME)
    if raw is None:
        msg = f"{target.url} has no {MANIFEST_NAME}: not a finished gene export."
        raise FileNotFoundError(msg)
    problems: list[Problem] = []
    doc = parse_json(raw, MANIFEST_NAME, problems)
    more, schema = check_manifest(doc)
    problems += more
    bits = doc.get("quantization") if isinstance(doc, dict) else None
    report = VerifyReport(
        target.url,
        getattr(source, "description", "source"),
        float(tolerance),
        bits if bits in (8, 16) else None,
        problems=problems,
    )
    if schema is None:
        return report
    n_cells = source.shape[0]
    if schema.n_cells != n_cells:
        report.problems.append(
            Problem(
                MANIFEST_NAME,
                f"n_points is {schema.n_cells} but the source has {n_cells} cells: not an "
                "export of "
                "this matrix (or of another subset of its cells)",
            )
        )
        return report
    exported = {g.gene_id for g in schema.genes}
    wanted = list(gene_columns) if expected is None else list(expected)
    report.missing = [g for g in dict.fromkeys(wanted) if g not in exported]
    report.extra = list(
        dict.fromkeys(g.gene_id for g in schema.genes if g.gene_id not in gene_columns)
    )
    compared = [g for g in schema.genes if g.gene_id in gene_columns]
    if not compared:
        return report
    per_block = genes_per_block or planning.genes_per_block(
        n_cells,
        len(compared),
        source.bytes_per_value() + schema.dtype.itemsize + 16,
        n_threads=num_workers or os.cpu_count() or 1,
    )
    sizes = tuple(min(per_block, len(compared) - s) for s in range(0, len(compared), per_block))
    slim = ExportSchema(schema.layout, schema.n_cells, schema.bits, schema.gz, ())
    jobs, at = [], 0
    for n in sizes:
        jobs.append(VerifyJob(at, tuple(compared[at : at + n]), slim, float(tolerance)))
        at += n
    x = source.column_blocks([gene_columns[g.gene_id] for g in compared], sizes)
    log.info("verifying %d genes x %d cells in %d block tasks", len(compared), n_cells, len(jobs))
    tasks = _graph.block_tasks(
        x, verify_block, list(enumerate(jobs)), target, name=f"verify-{uuid.uuid4().hex[:8]}"
    )
    with _scheduler.resolve(scheduler, num_workers) as (local, client):
        results = _progress.run(
            tasks,
            n_genes=len(compared),
            initial=0,
            scheduler=local,
            client=client,
            num_workers=num_workers,
            desc="Verifying genes",
            progress=sys.stderr.isatty() if progress is None else progress,
        )
    report.genes = [c for part in results for c in part]
    return report


def _column_lookup(all_ids: Sequence[str], layout: Layout) -> tuple[dict[str, int], list[str]]:
    """Gene id -> source column, also under the names ``make_unique`` would give.

    Also returns the ids a full export would hold (renamed as ``make_unique``
    renames them, when that is what it takes to export them).
    """
    from . import naming
    from .errors import GeneIdError

    lookup: dict[str, int] = {}
    for j, g in enumerate(all_ids):
        lookup.setdefault(g, j)
    renamed = naming.make_unique(all_ids)
    with contextlib.suppress(GeneIdError):
        renamed = naming.resolve_ids(renamed, layout=layout, make_names_unique=True)
    for j, g in enumerate(renamed):
        lookup.setdefault(g, j)
    return lookup, renamed


def verify(
    path_or_url: str | os.PathLike[str] | Target,
    source: Any,
    var: Any = None,
    *,
    layer: str | None = None,
    use_raw: bool = False,
    var_gene_id_column: str | None = None,
    gene_identifiers: Sequence[str] | None = None,
    tolerance: float = 0.5,
    genes_per_block: int | None = None,
    scheduler: Any = None,
    num_workers: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
    progress: bool | None = None,
) -> VerifyReport:
    """Compare every exported gene with the source matrix, in parallel.

    Reads the source as the export does (one Dask task per block of genes),
    decodes each payload as the viewer does, and reports per gene the largest
    error in quantization steps, genes whose values or bounds are wrong, NaN
    mismatches, and genes missing from or extra to the export.

    Parameters
    ----------
    path_or_url
        The export folder (local path or fsspec URL).
    source
        What the export was made from: anything :func:`~dask_cellucid.prepare`
        accepts as ``gene_expression``.
    var
        Gene metadata for a bare matrix (a DataFrame or a list of names);
        taken from the source when it carries it.
    layer, use_raw
        Which matrix of an AnnData source, as for ``prepare``.
    var_gene_id_column
        Where gene ids come from; default: what the manifest records.
    gene_identifiers
        The genes the export should hold; default: every gene of ``var``.
    tolerance
        Largest accepted error in steps: 0.5 (the default) for exports rounded
        to nearest; 1 accepts ``rounding="floor"`` (the reference writer's
        truncation). float32 exports are compared bit for bit.
    genes_per_block
        Genes per task; by default sized as ``prepare`` sizes the export's.
    scheduler, num_workers, progress
        How to run, as for ``prepare``.
    storage_options
        fsspec options for ``path_or_url``.

    Returns
    -------
    VerifyReport
        ``.ok`` is True only when every gene is within ``tolerance`` with
        the right bounds and missing cells, and no gene is missing or extra.
    """
    from . import api
    from .adapters import as_source

    target = (
        path_or_url
        if isinstance(path_or_url, Target)
        else Target.from_url(path_or_url, storage_options)
    )
    src = as_source(source, layer=layer, use_raw=use_raw)
    var_df = api._as_var(var) if var is not None else src.var
    if var_df is None:
        from .errors import InvalidOptionError

        msg = (
            "var is required with a bare matrix: pass var=adata.var (or the list of gene "
            "names), one row per column of the source."
        )
        raise InvalidOptionError(msg)
    api._check_alignment(var_df, src.shape)
    doc: Any = {}
    raw = target.read(MANIFEST_NAME)
    if raw is not None:
        try:
            doc = json.loads(raw)
        except ValueError:
            doc = {}  # verify_source reports it
    if not isinstance(doc, dict):
        doc = {}
    column = var_gene_id_column
    if column is None and isinstance(doc, dict):
        recorded = doc.get("var_gene_id_column")
        column = recorded if isinstance(recorded, str) else None
    all_ids, _ = api.gene_ids_from_var(var_df, column)
    layout: Layout = (
        "index" if "{index}" in str((doc.get("_varSchema") or {}).get("pathPattern")) else "key"
    )
    lookup, full = _column_lookup(all_ids, layout)
    if gene_identifiers is None:
        expected = full
    elif isinstance(gene_identifiers, str):
        from .errors import InvalidOptionError

        msg = f"gene_identifiers must be a list of gene ids, not the string {gene_identifiers!r}."
        raise InvalidOptionError(msg)
    else:
        expected = [str(g) for g in gene_identifiers]
    return verify_source(
        target,
        src,
        lookup,
        expected=expected,
        tolerance=tolerance,
        genes_per_block=genes_per_block,
        scheduler=scheduler,
        num_workers=num_workers,
        progress=progress,
    )


__all__ = ["GeneCheck", "VerifyReport", "verify", "verify_source"]
