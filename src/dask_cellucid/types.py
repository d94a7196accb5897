"""Small frozen records shared by the plan, the block tasks and the manifest.

They are plain dataclasses so they pickle cheaply to Dask workers and back.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from typing import Literal

Layout = Literal["key", "index"]
Rounding = Literal["nearest", "floor"]
Bits = Literal[8, 16]

VAR_DIR = "var"
MANIFEST_NAME = "var_manifest.json"
FORMAT = "compact_v1"


@dataclass(frozen=True, slots=True)
class Encoding:
    """How one gene's values become the bytes of its payload file."""

    bits: Bits | None
    compression: int | None
    rounding: Rounding = "nearest"
    codec: str = "libdeflate"

    @property
    def ext(self) -> str:
        return {None: "f32", 8: "u8", 16: "u16"}[self.bits]

    @property
    def dtype(self) -> str:
        return {None: "float32", 8: "uint8", 16: "uint16"}[self.bits]

    @property
    def itemsize(self) -> int:
        return {None: 4, 8: 1, 16: 2}[self.bits]

    @property
    def suffix(self) -> str:
        """File-name ending after the gene's stem: ``.values.u8.gz`` and so on."""
        return f".values.{self.ext}" + (".gz" if self.compression else "")


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything the block tasks need to know, decided before anything runs.

    Attributes
    ----------
    n_cells
        Length of every payload vector.
    gene_ids
        Identifiers written to the manifest, in export order.
    source_columns
        For each exported gene, its column in the input matrix.
    stems
        For each exported gene, its file stem under ``var/`` (the sanitized id
        in the ``key`` layout, the position in the ``index`` layout).
    block_sizes
        Genes per block task, in export order; they sum to ``len(gene_ids)``.
    source_token
        A cheap digest of the input's values (or file stamps), so a resumed
        export never reuses blocks written from other data.
    """

    n_cells: int
    gene_ids: tuple[str, ...]
    source_columns: tuple[int, ...]
    stems: tuple[str, ...]
    block_sizes: tuple[int, ...]
    encoding: Encoding
    layout: Layout
    var_gene_id_column: str | None
    source_token: str = ""

    @property
    def n_genes(self) -> int:
        return len(self.gene_ids)

    @property
    def block_starts(self) -> tuple[int, ...]:
        starts, at = [], 0
        for size in self.block_sizes:
            starts.append(at)
            at += size
        return tuple(starts)

    def payload_path(self, position: int) -> str:
        """Path of gene ``position``'s payload, relative to the export root."""
        return f"{VAR_DIR}/{self.stems[position]}{self.encoding.suffix}"

    @property
    def selects_all_in_order(self) -> bool:
        return self.source_columns == tuple(range(len(self.source_columns)))

    def fingerprint(self) -> str:
        """A digest of what the bytes on disk depend on (not the block split)."""
        what = {
            "n_cells": self.n_cells,
            "gene_ids": self.gene_ids,
            "source_columns": self.source_columns,
            "stems": self.stems,
            "encoding": asdict(self.encoding),
            "layout": self.layout,
            "source": self.source_token,
        }
        return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class GeneEntry:
    """What a block task learned about one gene; all the manifest needs.

    ``lo``/``hi`` are the raw bounds over the gene's finite values (NaN when it
    has none); how constant and empty genes are written is the layout's
    business, decided in :mod:`dask_cellucid.manifest`.
    """

    position: int
    gene_id: str
    lo: float
    hi: float
    n_nonfinite: int
    nbytes: int

    @property
    def has_finite(self) -> bool:
        return not math.isnan(self.lo)

    @property
    def all_zero(self) -> bool:
        return self.lo == 0.0 and self.hi == 0.0 and self.n_nonfinite == 0
