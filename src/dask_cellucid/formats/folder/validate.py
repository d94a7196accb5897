"""Check an export folder against the format: :func:`validate`.

Independent of how the folder was written: it reads the bytes back through
fsspec and applies the rules of the Cellucid export format (manifest keys and
types, each layout's naming rules, payload sizes, gzip framing, bounds, and the
rest of the folder), so it judges cellucid's own ``prepare`` output, ours, or
anyone else's by the same rules. Every problem is reported, not just the first.
Payloads are read in a few threads.
"""

from __future__ import annotations

import json
import logging
import math
import os
import unicodedata
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from dask_cellucid.codecs import inflate
from dask_cellucid.storage import Target

from . import kernels
from . import manifest as mf
from .dataset import CREATED_AT_PATTERN, DATASET_ID_PATTERN, IDENTITY_NAME, OBS_MANIFEST_NAME
from .journal import JOURNAL_DIR
from .naming import sanitize_key
from .spec import DTYPES, FORMAT, MANIFEST_NAME, VAR_DIR, Layout

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence


log = logging.getLogger(__name__)

_IDENTITY_REQUIRED = (
    "version",
    "id",
    "name",
    "description",
    "cellucid_data_version",
    "stats",
    "embeddings",
    "obs_fields",
)
_IDENTITY_OPTIONAL = ("created_at", "export_settings", "source", "vector_fields")
_STATS_KEYS = (
    "n_cells",
    "n_genes",
    "n_obs_fields",
    "n_categorical_fields",
    "n_continuous_fields",
    "has_connectivity",
    "n_edges",
)
_EXPORT_SETTINGS_KEYS = (
    "compression",
    "var_quantization",
    "obs_continuous_quantization",
    "obs_categorical_dtype",
)
_SHOW = 10  # how many genes one summary line names
_BATCH_BYTES = 64 * 2**20  # uncompressed payload bytes one validate batch holds
# Bounds are float32 values written as JSON numbers; writers that take the
# min/max in float64 differ from ours by float32 rounding.
BOUNDS_RTOL = 1e-6


# ----------------------------------------------------------------------------------------
# Reports
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a folder: the file it concerns and what is wrong."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class ValidationReport:
    """What :func:`validate` found.

    Attributes
    ----------
    url
        The folder checked.
    problems
        Every violation of the format found (the folder is not valid if any).
    warnings
        Things worth a look that do not stop the viewer (stray files, ...).
    n_genes, n_cells, layout
        What the manifest describes (0 / None when it could not be read).
    """

    url: str
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    n_genes: int = 0
    n_cells: int = 0
    layout: Layout | None = None

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def __str__(self) -> str:
        what = (
            f"{self.n_genes:,} genes x {self.n_cells:,} cells, '{self.layout}' layout"
            if self.layout
            else "no readable gene manifest"
        )
        head = f"validate {self.url} ({what}): "
        if self.ok:
            lines = [head + "OK, no problem found."]
        else:
            lines = [head + f"{len(self.problems)} problem(s):"]
            lines += [f"  - {p}" for p in self.problems]
        if self.warnings:
            lines.append(f"{len(self.warnings)} warning(s):")
            lines += [f"  - {w}" for w in self.warnings]
        return "\n".join(lines)


def names(ids: Sequence[str]) -> str:
    shown = ", ".join(repr(i) for i in ids[:_SHOW])
    return shown + (f" (and {len(ids) - _SHOW} more)" if len(ids) > _SHOW else "")


# ----------------------------------------------------------------------------------------
# The var manifest (spec section 3)
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class GeneFile:
    """One manifest field, resolved: where its payload is and how to decode it."""

    position: int
    gene_id: str
    path: str | None  # None when no file name can be made from the id
    bounds: tuple[float, float] | None


@dataclass(frozen=True, slots=True)
class ExportSchema:
    """What the payload checks need from a manifest that could be read."""

    layout: Layout
    n_cells: int
    bits: int | None
    gz: bool
    genes: tuple[GeneFile, ...]

    @property
    def dtype(self) -> np.dtype[Any]:
        return kernels.code_dtype(self.bits)  # type: ignore[arg-type]

    @property
    def nbytes(self) -> int:
        return self.n_cells * self.dtype.itemsize


def is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def parse_json(raw: bytes, name: str, problems: list[Problem]) -> Any:
    """Parse JSON leniently (so every problem can be found) but report NaN/Infinity tokens."""
    bad: list[str] = []

    def _token(tok: str) -> float:
        bad.append(tok)
        return float(tok)

    try:
        doc = json.loads(raw, parse_constant=_token)
    except (ValueError, UnicodeDecodeError) as err:
        problems.append(Problem(name, f"is not valid JSON ({err})"))
        return None
    if bad:
        problems.append(
            Problem(
                name,
                f"holds the non-JSON number(s) {sorted(set(bad))}; strict JSON readers (the "
                "browser's JSON.parse) refuse the whole file",
            )
        )
    return doc


def check_manifest(doc: Any) -> tuple[list[Problem], ExportSchema | None]:
    """Check a parsed ``var_manifest.json`` (spec section 3).

    Returns the problems found and, when the manifest is sound enough to
    locate payloads, the schema to check them against.
    """
    at = MANIFEST_NAME
    problems: list[Problem] = []

    def bad(msg: str) -> None:
        problems.append(Problem(at, msg))

    if not isinstance(doc, dict):
        bad(f"must be a JSON object, not {type(doc).__name__}")
        return problems, None
    missing = [k for k in mf.MANIFEST_KEYS if k not in doc]
    extra = [k for k in doc if k not in mf.MANIFEST_KEYS]
    if missing:
        bad(f"lacks the required key(s) {missing}; the strict readers refuse it")
    if extra:
        bad(
            f"has the key(s) {extra} beyond the seven the format allows "
            f"({', '.join(mf.MANIFEST_KEYS)}); the strict readers refuse it"
        )
    if "_format" in doc and doc["_format"] != FORMAT:
        bad(f"_format is {doc['_format']!r}, not {FORMAT!r}")
    n_cells = doc.get("n_points")
    if not (is_int(n_cells) and n_cells > 0):
        bad(f"n_points is {n_cells!r}; it must be the number of cells, a positive integer")
        n_cells = None
    if "var_gene_id_column" in doc and not (
        doc["var_gene_id_column"] is None or isinstance(doc["var_gene_id_column"], str)
    ):
        bad(f"var_gene_id_column is {doc['var_gene_id_column']!r}; it must be a string or null")
    compression = doc.get("compression")
    if not (compression is None or (is_int(compression) and 1 <= compression <= 9)):
        bad(f"compression is {compression!r}; it must be a gzip level 1-9, or null when off")
    bits = doc.get("quantization")
    if not (bits is None or (is_int(bits) and bits in (8, 16))):
        bad(f"quantization is {bits!r}; it must be 8, 16 or null")
        bits = "invalid"

    schema = doc.get("_varSchema")
    layout: Layout | None = None
    if not isinstance(schema, dict):
        bad(f"_varSchema is {type(schema).__name__}, not an object")
    else:
        layout = _check_var_schema(schema, bits, compression, bad)

    fields = doc.get("fields")
    if not isinstance(fields, list):
        bad(f"fields is {type(fields).__name__}, not a list")
        return problems, None
    if not fields:
        bad("fields is empty: a var manifest must name at least one gene")
    if layout is None or bits == "invalid" or n_cells is None:
        return problems, None
    quantized = bits is not None
    genes = (
        _check_key_fields(fields, schema["pathPattern"], bad, quantized=quantized)
        if layout == "key"
        else _check_index_fields(fields, schema["pathPattern"], bad, quantized=quantized)
    )
    return problems, ExportSchema(layout, n_cells, bits, bool(compression), tuple(genes))


def _check_var_schema(
    schema: Mapping[str, Any], bits: Any, compression: Any, bad: Callable[[str], None]
) -> Layout | None:
    quantized = schema.get("quantized") is True if bits == "invalid" else bits is not None
    allowed = ["kind", "pathPattern", "ext", "dtype", "quantized"]
    if quantized:
        allowed.append("quantizationBits")
    missing = [k for k in allowed if k not in schema]
    extra = [k for k in schema if k not in allowed]
    if missing:
        bad(f"_varSchema lacks the key(s) {missing}")
    if extra:
        bad(
            f"_varSchema has the key(s) {extra} it must not have"
            + (" (quantizationBits only when quantized)" if "quantizationBits" in extra else "")
        )
    if schema.get("kind", "continuous") != "continuous":
        bad(f"_varSchema.kind is {schema['kind']!r}, not 'continuous'")
    dtype = schema.get("dtype")
    if dtype not in DTYPES:
        bad(f"_varSchema.dtype is {dtype!r}, not 'float32', 'uint8' or 'uint16'")
        return None
    ext, dtype_bits = DTYPES[dtype].ext, DTYPES[dtype].bits
    if bits != "invalid" and dtype_bits != bits:
        bad(f"_varSchema.dtype {dtype!r} does not match quantization {bits!r}")
    if schema.get("ext") != ext:
        bad(f"_varSchema.ext is {schema.get('ext')!r}; dtype {dtype!r} needs {ext!r}")
    if schema.get("quantized") is not (dtype_bits is not None):
        bad(
            f"_varSchema.quantized is {schema.get('quantized')!r}; dtype {dtype!r} needs "
            f"{dtype_bits is not None}"
        )
    if dtype_bits is not None and schema.get("quantizationBits") != dtype_bits:
        bad(f"_varSchema.quantizationBits is {schema.get('quantizationBits')!r}, not {dtype_bits}")
    pattern = schema.get("pathPattern")
    if not isinstance(pattern, str):
        bad(f"_varSchema.pathPattern is {pattern!r}, not a string")
        return None
    gz = ".gz" if compression else ""
    layouts: dict[str, Layout] = {
        f"{VAR_DIR}/{{key}}.values.{ext}{gz}": "key",
        f"{VAR_DIR}/{{index}}.values.{ext}{gz}": "index",
    }
    if pattern in layouts:
        return layouts[pattern]
    expected = " or ".join(repr(p) for p in layouts)
    bad(
        f"_varSchema.pathPattern is {pattern!r}; with compression={compression!r} it must be "
        f"{expected} ('.gz' if and only if compression is set)"
    )
    if "{index}" in pattern:
        return "index"
    if "{key}" in pattern:
        return "key"
    return None


def _check_bounds(
    gene: str, entry: list[Any], layout: Layout, bad: Callable[[str], None]
) -> tuple[float, float] | None:
    lo, hi = entry[-2], entry[-1]
    if not (is_number(lo) and is_number(hi)):
        bad(f"gene {gene!r}: bounds {[lo, hi]!r} are not two numbers")
        return None
    lo, hi = float(lo), float(hi)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        bad(f"gene {gene!r}: bounds [{lo!r}, {hi!r}] are not finite")
        return None
    if layout == "key" and not lo < hi:
        bad(
            f"gene {gene!r}: bounds [{lo!r}, {hi!r}] must have min < max in the 'key' layout "
            "(a constant gene v is written [v, v + 1], an empty one [0, 1])"
        )
    elif layout == "index" and not lo <= hi:
        bad(f"gene {gene!r}: bounds [{lo!r}, {hi!r}] have min > max")
    return lo, hi


def _check_key_fields(
    fields: list[Any], pattern: str, bad: Callable[[str], None], *, quantized: bool
) -> list[GeneFile]:
    width = 3 if quantized else 1
    genes: list[GeneFile] = []
    for i, entry in enumerate(fields):
        if not (isinstance(entry, list) and len(entry) == width and isinstance(entry[0], str)):
            shape = "[id, min, max]" if quantized else "[id]"
            bad(f"fields[{i}] is {entry!r}; the 'key' layout wants {shape} with a string id")
            continue
        gene = entry[0]
        bounds = _check_bounds(gene, entry, "key", bad) if quantized else None
        stem = sanitize_key(gene)
        if not stem:
            bad(
                f"gene {gene!r} (fields[{i}]) has no character usable in a file name (only "
                "[A-Za-z0-9._-] survive); the strict reader throws, the lenient one reads "
                "var/field..."
            )
        path = pattern.replace("{key}", stem) if stem else None
        genes.append(GeneFile(i, gene, path, bounds))
    ids = [g.gene_id for g in genes]
    _check_unique(ids, bad)
    by_stem: dict[str, list[str]] = defaultdict(list)
    for g in genes:
        if g.path is not None:
            by_stem[sanitize_key(g.gene_id)].append(g.gene_id)
    for stem, group in by_stem.items():
        distinct = list(dict.fromkeys(group))
        if len(distinct) > 1:
            bad(
                f"gene ids {names(distinct)} all become the file "
                f"{pattern.replace('{key}', stem)}: one gene's payload overwrote the others'"
            )
    by_lower: dict[str, list[str]] = defaultdict(list)
    for stem in by_stem:
        by_lower[stem.lower()].append(stem)
    for stems in by_lower.values():
        if len(stems) > 1:
            files = [pattern.replace("{key}", s) for s in stems]
            bad(
                f"the files {names(files)} differ only in letter case: on the "
                "case-insensitive filesystems of macOS and Windows one replaces the other"
            )
    return genes


def _check_unique(ids: Sequence[str], bad: Callable[[str], None]) -> None:
    counts: dict[str, int] = defaultdict(int)
    for i in ids:
        counts[i] += 1
    dup = [i for i, n in counts.items() if n > 1]
    if dup:
        bad(
            f"{len(dup)} gene id(s) occur more than once: "
            + ", ".join(f"{d!r} ({counts[d]} times)" for d in dup[:_SHOW])
        )


def _check_index_fields(
    fields: list[Any], pattern: str, bad: Callable[[str], None], *, quantized: bool
) -> list[GeneFile]:
    width = 4 if quantized else 2
    genes: list[GeneFile] = []
    for i, entry in enumerate(fields):
        if not (isinstance(entry, list) and len(entry) == width):
            shape = "[index, name, min, max]" if quantized else "[index, name]"
            bad(f"fields[{i}] is {entry!r}; the 'index' layout wants {shape}")
            continue
        index, gene = entry[0], entry[1]
        if not isinstance(gene, str):
            bad(f"fields[{i}] has the name {gene!r}, not a string")
            continue
        if not is_int(index) or index != i:
            bad(
                f"gene {gene!r} (fields[{i}]) has index {index!r}; indices must be exactly "
                "0..N-1 in the order of fields"
            )
        if not gene:
            bad(f"fields[{i}] has an empty name")
        elif gene != gene.strip():
            bad(f"gene {gene!r} (fields[{i}]) has leading or trailing white space")
        if any(unicodedata.category(c) == "Cc" for c in gene):
            bad(f"gene {gene!r} (fields[{i}]) holds control characters")
        bounds = _check_bounds(gene, entry, "index", bad) if quantized else None
        path = pattern.replace("{index}", str(index)) if is_int(index) else None
        genes.append(GeneFile(i, gene, path, bounds))
    _check_unique([g.gene_id for g in genes], bad)
    return genes


# ----------------------------------------------------------------------------------------
# Payloads
# ----------------------------------------------------------------------------------------
def decode_file(raw: bytes, schema: ExportSchema) -> tuple[np.ndarray | None, list[str]]:
    """A payload's values (codes or float32) and what is wrong with its bytes."""
    problems: list[str] = []
    data: bytes | None = raw
    if schema.gz:
        data, problems = inflate(raw)
    if data is None:
        return None, problems
    if len(data) != schema.nbytes:
        what = "decompresses to" if schema.gz else "holds"
        problems.append(
            f"{what} {len(data):,} bytes; n_points x {schema.dtype.itemsize} = "
            f"{schema.nbytes:,} expected"
            + ("" if schema.gz else " (truncated?)" if len(data) < schema.nbytes else "")
        )
        return None, problems
    return np.frombuffer(data, dtype=schema.dtype), problems


def check_codes(codes: np.ndarray, gene: GeneFile, schema: ExportSchema) -> list[str]:
    """Do a quantized gene's codes fit its bounds? (Catches another gene's payload.)

    The writer maps the minimum to code 0 and the maximum to the top code
    (254 / 65534; one less is tolerated for truncating writers); a constant
    gene has every code 0, an empty one every code the marker.
    """
    if schema.bits is None or gene.bounds is None:
        return []
    top = kernels.max_code(schema.bits)  # type: ignore[arg-type]
    finite = codes[codes <= top]
    lo, hi = gene.bounds
    if finite.size == 0:
        return []
    first, last = int(finite.min()), int(finite.max())
    problems = []
    if first != 0:
        problems.append(
            f"its smallest code is {first}, not 0: the payload does not fit the bounds "
            "[min, max] (the payload of another gene?)"
        )
    constant = lo == hi or (schema.layout == "key" and hi == lo + 1)
    if lo == hi and last != 0:
        problems.append(
            f"bounds [{lo!r}, {hi!r}] say the gene is constant, but its codes reach {last}"
        )
    elif last == 0 and not constant:
        problems.append(
            f"every code is 0 but the bounds [{lo!r}, {hi!r}] are not those of a constant gene "
            "(the payload of another gene?)"
        )
    elif last not in (0, top - 1, top):
        problems.append(
            f"its largest code is {last}, not {top}: the payload does not span the bounds "
            "(the payload of another gene?)"
        )
    return problems


def _check_batch(target: Target, schema: ExportSchema, genes: Sequence[GeneFile]) -> list[Problem]:
    rels = list(dict.fromkeys(g.path for g in genes if g.path is not None))
    raws = target.read_many(rels)
    problems: list[Problem] = []
    for g in genes:
        if g.path is None:
            continue
        raw = raws[g.path]
        if raw is None:
            problems.append(Problem(g.path, f"is missing (gene {g.gene_id!r} names it)"))
            continue
        values, msgs = decode_file(raw, schema)
        if values is not None:
            msgs += check_codes(values, g, schema)
        problems += [Problem(g.path, f"{m} (gene {g.gene_id!r})") for m in msgs]
    return problems


def _batches(genes: Sequence[GeneFile], per_batch: int) -> list[Sequence[GeneFile]]:
    return [genes[i : i + per_batch] for i in range(0, len(genes), per_batch)]


def check_payloads(
    target: Target, schema: ExportSchema, max_workers: int | None = None
) -> list[Problem]:
    """Read every payload the manifest names and check its bytes, in parallel threads."""
    per_batch = max(1, min(256, _BATCH_BYTES // max(1, schema.nbytes)))
    workers = max_workers or min(8, (os.cpu_count() or 1) + 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        parts = pool.map(
            lambda b: _check_batch(target, schema, b), _batches(schema.genes, per_batch)
        )
        problems = [p for part in parts for p in part]
    order = {g.path: g.position for g in schema.genes}
    return sorted(problems, key=lambda p: order.get(p.path, -1))


def _stray_files(target: Target, schema: ExportSchema) -> list[Problem]:
    named = {g.path for g in schema.genes}
    stray = sorted(p for p in target.sizes(VAR_DIR) if p not in named)
    if not stray:
        return []
    return [
        Problem(
            f"{VAR_DIR}/",
            f"{len(stray)} file(s) no manifest entry names (left by an earlier export?): "
            f"{names(stray)}",
        )
    ]


# ----------------------------------------------------------------------------------------
# The rest of the folder (spec section 4)
# ----------------------------------------------------------------------------------------
def _exact_keys(
    doc: Mapping[str, Any], where: str, required: Iterable[str], optional: Iterable[str] = ()
) -> list[str]:
    required, optional = list(required), list(optional)
    msgs = []
    missing = [k for k in required if k not in doc]
    extra = [k for k in doc if k not in required and k not in optional]
    if missing:
        msgs.append(f"{where} lacks the key(s) {missing}")
    if extra:
        msgs.append(f"{where} has the key(s) {extra} the format does not allow")
    return msgs


def check_identity(target: Target, doc: Any, var: Mapping[str, Any] | None) -> list[Problem]:
    """Check ``dataset_identity.json`` and the embedding files it names.

    ``var`` is the parsed var manifest (None when the folder has none).
    """
    at = IDENTITY_NAME
    problems: list[Problem] = []
    if not isinstance(doc, dict):
        return [Problem(at, f"must be a JSON object, not {type(doc).__name__}")]

    def bad(msg: str) -> None:
        problems.append(Problem(at, msg))

    for msg in _exact_keys(doc, "it", _IDENTITY_REQUIRED, _IDENTITY_OPTIONAL):
        bad(msg)
    if doc.get("version") != 2:
        bad(f"version is {doc.get('version')!r}, not 2")
    if not (isinstance(doc.get("id"), str) and DATASET_ID_PATTERN.match(doc["id"])):
        bad(f"id {doc.get('id')!r} does not match [A-Za-z0-9][A-Za-z0-9._-]*")
    created = doc.get("created_at")
    if created is not None and not (isinstance(created, str) and CREATED_AT_PATTERN.match(created)):
        bad(f"created_at {created!r} is not of the form YYYY-MM-DDTHH:MM:SSZ")
    stats = doc.get("stats")
    n_cells = None
    if isinstance(stats, dict):
        for msg in _exact_keys(stats, "stats", _STATS_KEYS):
            bad(msg)
        n_cells = stats.get("n_cells")
        if not (is_int(n_cells) and n_cells > 0):
            bad(f"stats.n_cells is {n_cells!r}, not a positive integer")
            n_cells = None
        n_genes = stats.get("n_genes")
        if var is not None:
            if var.get("n_points") != n_cells and n_cells is not None:
                bad(
                    f"stats.n_cells is {n_cells} but {MANIFEST_NAME} has "
                    f"n_points={var.get('n_points')}"
                )
            fields = var.get("fields")
            if isinstance(fields, list) and n_genes != len(fields):
                bad(f"stats.n_genes is {n_genes!r} but {MANIFEST_NAME} lists {len(fields)} genes")
        elif n_genes not in (0, None):
            bad(f"stats.n_genes is {n_genes!r} but the folder has no {MANIFEST_NAME}")
        if isinstance(doc.get("obs_fields"), list) and stats.get("n_obs_fields") != len(
            doc["obs_fields"]
        ):
            bad(
                f"stats.n_obs_fields is {stats.get('n_obs_fields')!r} but obs_fields lists "
                f"{len(doc['obs_fields'])}"
            )
    elif "stats" in doc:
        bad("stats is not an object")

    compression = var.get("compression") if var is not None else None
    settings = doc.get("export_settings")
    if isinstance(settings, dict):
        for msg in _exact_keys(settings, "export_settings", _EXPORT_SETTINGS_KEYS):
            bad(msg)
        if settings.get("obs_categorical_dtype") not in ("uint8", "uint16", None):
            bad(
                "export_settings.obs_categorical_dtype is "
                f"{settings.get('obs_categorical_dtype')!r};"
                " the strict readers want 'uint8' or 'uint16'"
            )
        if var is not None:
            if settings.get("compression") != var.get("compression"):
                bad(
                    f"export_settings.compression is {settings.get('compression')!r} but "
                    f"{MANIFEST_NAME} says {var.get('compression')!r}"
                )
            if settings.get("var_quantization") != var.get("quantization"):
                bad(
                    f"export_settings.var_quantization is {settings.get('var_quantization')!r} "
                    f"but {MANIFEST_NAME} says quantization={var.get('quantization')!r}"
                )
        else:
            compression = settings.get("compression")
    elif settings is not None:
        bad("export_settings is not an object")

    emb = doc.get("embeddings")
    if isinstance(emb, dict):
        for msg in _exact_keys(
            emb, "embeddings", ("available_dimensions", "default_dimension", "files")
        ):
            bad(msg)
        problems += _check_embeddings(target, emb, n_cells, compression)
    elif "embeddings" in doc:
        bad("embeddings is not an object")
    return problems


def _check_embeddings(
    target: Target, emb: Mapping[str, Any], n_cells: int | None, compression: Any
) -> list[Problem]:
    at = IDENTITY_NAME
    problems: list[Problem] = []
    dims = emb.get("available_dimensions")
    if not (
        isinstance(dims, list)
        and dims
        and all(is_int(d) and d in (1, 2, 3) for d in dims)
        and dims == sorted(set(dims))
    ):
        return [
            Problem(
                at,
                f"embeddings.available_dimensions {dims!r} is not an increasing "
                "subset of [1, 2, 3]",
            )
        ]
    if emb.get("default_dimension") not in dims:
        problems.append(
            Problem(
                at,
                f"embeddings.default_dimension {emb.get('default_dimension')!r}"
                f" is not one of {dims}",
            )
        )
    files = emb.get("files")
    if not isinstance(files, dict):
        return [*problems, Problem(at, "embeddings.files is not an object")]
    gz = ".gz" if compression else ""
    want = {f"{d}d": f"points_{d}d.bin{gz}" for d in dims}
    if files != want:
        problems.append(
            Problem(
                at,
                f"embeddings.files is {files!r}; with compression="
                f"{compression!r} it must be {want!r}",
            )
        )
    for d in dims:
        rel = want[f"{d}d"]
        raw = target.read(rel)
        if raw is None:
            problems.append(Problem(rel, "is missing (dataset_identity.json names it)"))
            continue
        data: bytes | None = raw
        msgs: list[str] = []
        if gz:
            data, msgs = inflate(raw)
        if data is not None and n_cells is not None:
            if len(data) != n_cells * d * 4:
                msgs.append(
                    f"holds {len(data):,} bytes; {n_cells} cells x {d} x 4 = "
                    f"{n_cells * d * 4:,} expected"
                )
            else:
                pts = np.frombuffer(data, "<f4")
                if not np.isfinite(pts).all():
                    msgs.append(f"holds {int((~np.isfinite(pts)).sum())} non-finite coordinate(s)")
                elif np.abs(pts).max() > 1 + 1e-6:
                    msgs.append(
                        f"holds coordinates outside [-1, 1] (max |x| = {np.abs(pts).max():g})"
                    )
        problems += [Problem(rel, m) for m in msgs]
    return problems


def check_obs_manifest(doc: Any, var: Mapping[str, Any] | None, identity: Any) -> list[Problem]:
    """Check ``obs_manifest.json`` against the var manifest and the identity."""
    at = OBS_MANIFEST_NAME
    if not isinstance(doc, dict):
        return [Problem(at, f"must be a JSON object, not {type(doc).__name__}")]
    problems: list[Problem] = []
    if doc.get("_format") != FORMAT:
        problems.append(Problem(at, f"_format is {doc.get('_format')!r}, not {FORMAT!r}"))
    if var is not None:
        if doc.get("n_points") != var.get("n_points"):
            problems.append(
                Problem(
                    at,
                    f"n_points is {doc.get('n_points')!r} but {MANIFEST_NAME}"
                    f" says {var.get('n_points')!r}",
                )
            )
        if doc.get("compression") != var.get("compression"):
            problems.append(
                Problem(
                    at,
                    f"compression is {doc.get('compression')!r} but "
                    f"{MANIFEST_NAME} says {var.get('compression')!r}; the "
                    "viewer needs one setting for the whole folder",
                )
            )
    n_fields = sum(len(doc.get(k) or []) for k in ("_continuousFields", "_categoricalFields"))
    if n_fields == 0:
        # The keys are fixed; the two centroid settings are inert without obs
        # fields (cellucid's own prepare writes 0.95 and "latent_space" there).
        want = {
            "_format": FORMAT,
            "n_points": doc.get("n_points"),
            "centroid_outlier_quantile": doc.get("centroid_outlier_quantile"),
            "latent_key": doc.get("latent_key"),
            "compression": doc.get("compression"),
            "_obsSchemas": {},
            "_continuousFields": [],
            "_categoricalFields": [],
        }
        problems += [Problem(at, f"with no obs field, {m}") for m in _exact_keys(doc, "it", want)]
        differ = [k for k in want if k in doc and doc[k] != want[k]]
        if differ:
            problems.append(
                Problem(at, f"with no obs field, {differ} must be {[want[k] for k in differ]!r}")
            )
    listed = identity.get("obs_fields") if isinstance(identity, dict) else None
    if isinstance(listed, list) and len(listed) != n_fields:
        problems.append(
            Problem(at, f"lists {n_fields} obs field(s) but {IDENTITY_NAME} lists {len(listed)}")
        )
    return problems


# ----------------------------------------------------------------------------------------
# validate
# ----------------------------------------------------------------------------------------
def validate(
    path_or_url: str | os.PathLike[str] | Target,
    storage_options: Mapping[str, Any] | None = None,
    *,
    max_workers: int | None = None,
) -> ValidationReport:
    """Check an export folder against the Cellucid format, reporting every problem.

    Checks ``var_manifest.json`` (keys and types, the layout's path and name
    rules, bounds finite and ordered, ids unique and not colliding as file
    names), every payload it names (present, right length, one gzip member
    with the right ISIZE, codes that fit the bounds), and, when present,
    ``dataset_identity.json``, the embedding files and ``obs_manifest.json``
    for consistency with it. Works on folders written by any tool.

    Parameters
    ----------
    path_or_url
        The export folder: a local path or any fsspec URL.
    storage_options
        fsspec options for a URL (credentials, ``endpoint_url``, ...).
    max_workers
        Threads reading payloads (default: a few more than the CPUs, at most 8).

    Returns
    -------
    ValidationReport
        ``.ok``, ``.problems`` (all of them), ``.warnings``; ``str()`` reads well.

    Examples
    --------
    >>> report = validate("exports/pbmc")  # doctest: +SKIP
    >>> report.ok, len(report.problems)  # doctest: +SKIP
    (True, 0)
    """
    target = Target.of(path_or_url, storage_options)
    report = ValidationReport(url=target.url)
    raw = target.read(MANIFEST_NAME)
    ident_raw = target.read(IDENTITY_NAME)
    obs_raw = target.read(OBS_MANIFEST_NAME)
    var_doc: Any = None
    schema: ExportSchema | None = None
    if raw is None:
        if ident_raw is None:
            report.problems.append(
                Problem(
                    MANIFEST_NAME,
                    f"is missing, and so is {IDENTITY_NAME}: {target.url} is not an export folder "
                    "(or the export did not finish: re-run it to resume)",
                )
            )
            return report
        report.warnings.append(Problem(MANIFEST_NAME, "is absent: the folder holds no genes"))
    else:
        var_doc = parse_json(raw, MANIFEST_NAME, report.problems)
        if var_doc is not None:
            problems, schema = check_manifest(var_doc)
            report.problems += problems
        if not isinstance(var_doc, dict):
            var_doc = None
    if schema is not None:
        report.n_genes, report.n_cells, report.layout = (
            len(schema.genes),
            schema.n_cells,
            schema.layout,
        )
        log.info("validating %d payloads under %r", len(schema.genes), target)
        report.problems += check_payloads(target, schema, max_workers)
        report.warnings += _stray_files(target, schema)

    identity: Any = None
    if ident_raw is not None:
        identity = parse_json(ident_raw, IDENTITY_NAME, report.problems)
        if identity is not None:
            report.problems += check_identity(target, identity, var_doc)
    if obs_raw is not None:
        obs = parse_json(obs_raw, OBS_MANIFEST_NAME, report.problems)
        if obs is not None:
            report.problems += check_obs_manifest(obs, var_doc, identity)
    elif identity is not None:
        report.problems.append(Problem(OBS_MANIFEST_NAME, f"is missing ({IDENTITY_NAME} is there)"))
    if target.sizes(JOURNAL_DIR):
        report.warnings.append(
            Problem(
                f"{JOURNAL_DIR}/",
                "an export journal remains: an export into this folder did not finish (re-run it "
                "to resume, or delete the folder)",
            )
        )
    return report


__all__ = ["Problem", "ValidationReport", "validate"]
