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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from dask_cellucid.errors import GeneIdError
from dask_cellucid.genes import make_unique
from dask_cellucid.plan import block_sizes

from . import kernels, naming
from . import manifest as mf
from .spec import MANIFEST_NAME, GeneEntry, Layout
from .validate import (
    BOUNDS_RTOL,
    ExportSchema,
    GeneFile,
    Problem,
    check_manifest,
    decode_file,
    names,
    parse_json,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from dask_cellucid.storage import Target


log = logging.getLogger(__name__)

# "Nearly every gene differs": this share of the compared genes, or more.
_MOSTLY = 0.9


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
            math.isclose(a, b, rel_tol=BOUNDS_RTOL, abs_tol=1e-30)
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
    n_source_genes
        Genes of the source (its ``var``), when known.
    other_matrices
        When (nearly) every gene differs: the source's other matrices, as
        ``(what, flag, argument)``, e.g. ``("adata.raw", "--use-raw",
        "use_raw=True")``; the report suggests them.
    """

    url: str
    source: str
    tolerance: float
    quantization: int | None
    genes: list[GeneCheck] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    n_source_genes: int | None = None
    other_matrices: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def wrong(self) -> list[GeneCheck]:
        """The genes whose values, bounds or payload are wrong."""
        return [g for g in self.genes if not g.ok]

    @property
    def mostly_wrong(self) -> bool:
        """Whether (nearly) every gene compared differs: the wrong matrix, not a bad export."""
        compared = [g for g in self.genes if g.problem is None]
        n_wrong = sum(not g.ok for g in compared)
        return bool(compared) and n_wrong >= _MOSTLY * len(compared)

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
        if self.n_source_genes is not None and len(self.genes) < self.n_source_genes:
            summary += f" (the export holds {len(self.genes):,} of the source's "
            summary += f"{self.n_source_genes:,} genes)"
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
                f"{names(self.missing)}"
            )
        if self.extra:
            lines.append(
                f"  - {len(self.extra)} exported gene(s) are not in the source: {names(self.extra)}"
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
            elif self.mostly_wrong and self.other_matrices:
                lines.append("  " + self._other_matrix_hint())
        return "\n".join(lines)

    def _other_matrix_hint(self) -> str:
        compared = [g for g in self.genes if g.problem is None]
        n_wrong = sum(not g.ok for g in compared)
        head = (
            "Every gene differs"
            if n_wrong == len(compared)
            else f"{n_wrong:,} of {len(compared):,} genes differ"
        )
        asks = [
            f"was the export made from {what}? try {flag} ({arg})"
            for what, flag, arg in self.other_matrices[:1]
        ] + [f"or from {what}? try {flag} ({arg})" for what, flag, arg in self.other_matrices[1:]]
        return f"{head}: {'; '.join(asks)}."


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
    decoded = lo + values[both].astype(np.float64) * (hi - lo) / top  # the viewer's order
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
        csc = kernels.canonical_csc(block)
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


@dataclass
class Verification:
    """A planned verification: the report so far and one job per block of genes to compare.

    Run ``block_task(block, job, target)`` on the source's column blocks
    (``source_columns`` cut into ``block_sizes``), then :meth:`finish` with the
    checks they return.
    """

    report: VerifyReport
    target: Target
    source_columns: list[int]
    block_sizes: tuple[int, ...]
    jobs: list[tuple[int, VerifyJob]]

    block_task = staticmethod(verify_block)

    @property
    def n_genes(self) -> int:
        return len(self.source_columns)

    def finish(self, checks: list[GeneCheck]) -> VerifyReport:
        self.report.genes = checks
        return self.report


def plan_verification(
    target: Target,
    n_cells: int,
    gene_columns: Mapping[str, int],
    *,
    genes_per_block: Callable[[int, int], int],
    expected: Sequence[str] | None = None,
    tolerance: float = 0.5,
    description: str = "source",
) -> Verification:
    """Read the manifest and plan the comparison of every gene it shares with the source.

    ``gene_columns`` maps gene ids to their column in the source; ``expected``
    lists the genes the export should hold (default: every key of
    ``gene_columns``). ``genes_per_block(n_genes, payload_itemsize)`` sizes the
    blocks. Problems with the manifest, or a source of another size, end up in
    the report with no job to run.
    """
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
        description,
        float(tolerance),
        bits if bits in (8, 16) else None,
        problems=problems,
    )
    empty = Verification(report, target, [], (), [])
    if schema is None:
        return empty
    if schema.n_cells != n_cells:
        report.problems.append(
            Problem(
                MANIFEST_NAME,
                f"n_points is {schema.n_cells} but the source has {n_cells} cells: not an "
                "export of this matrix (or of another subset of its cells)",
            )
        )
        return empty
    exported = {g.gene_id for g in schema.genes}
    wanted = list(gene_columns) if expected is None else list(expected)
    report.missing = [g for g in dict.fromkeys(wanted) if g not in exported]
    report.extra = list(
        dict.fromkeys(g.gene_id for g in schema.genes if g.gene_id not in gene_columns)
    )
    compared = [g for g in schema.genes if g.gene_id in gene_columns]
    if not compared:
        return empty
    per_block = genes_per_block(len(compared), schema.dtype.itemsize)
    sizes = block_sizes(len(compared), per_block)
    slim = ExportSchema(schema.layout, schema.n_cells, schema.bits, schema.gz, ())
    jobs, at = [], 0
    for i, n in enumerate(sizes):
        jobs.append((i, VerifyJob(at, tuple(compared[at : at + n]), slim, float(tolerance))))
        at += n
    columns = [gene_columns[g.gene_id] for g in compared]
    return Verification(report, target, columns, sizes, jobs)


def column_lookup(all_ids: Sequence[str], layout: Layout) -> tuple[dict[str, int], list[str]]:
    """Gene id -> source column, also under the names ``make_unique`` would give.

    Also returns the ids a full export would hold (renamed as ``make_unique``
    renames them, when that is what it takes to export them).
    """
    lookup: dict[str, int] = {}
    for j, g in enumerate(all_ids):
        lookup.setdefault(g, j)
    renamed = make_unique(all_ids)
    with contextlib.suppress(GeneIdError):
        renamed = naming.resolve_ids(renamed, layout=layout, make_names_unique=True)
    for j, g in enumerate(renamed):
        lookup.setdefault(g, j)
    return lookup, renamed


def manifest_gene_ids(doc: Any) -> list[str] | None:
    """The gene ids a parsed manifest lists, in order (None when it cannot be read)."""
    _, schema = check_manifest(doc)
    return None if schema is None else [g.gene_id for g in schema.genes]


def recorded_id_column(doc: Any) -> str | None:
    """The ``var_gene_id_column`` a manifest records (None when absent or unreadable)."""
    recorded = doc.get("var_gene_id_column") if isinstance(doc, dict) else None
    return recorded if isinstance(recorded, str) else None


def read_manifest_leniently(target: Target) -> dict[str, Any]:
    """The manifest as a dict, or ``{}`` when it is missing or unreadable (reported later)."""
    raw = target.read(MANIFEST_NAME)
    if raw is None:
        return {}
    try:
        doc = json.loads(raw)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


__all__ = [
    "GeneCheck",
    "Verification",
    "VerifyReport",
    "column_lookup",
    "manifest_gene_ids",
    "plan_verification",
    "read_manifest_leniently",
    "recorded_id_column",
]
