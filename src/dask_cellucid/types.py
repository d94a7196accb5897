"""The format-neutral plan: which columns go out, in which blocks, under which options.

A plain frozen dataclass, so it pickles cheaply to Dask workers. What a format
adds (file names, encodings) lives in its ``options``, a frozen dataclass of the
format's own with a ``fingerprint_fields()`` method.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Protocol


class FormatOptions(Protocol):
    """What a format keeps in a :class:`Plan`."""

    def fingerprint_fields(self) -> dict[str, Any]:
        """What the bytes written depend on, beyond the plan's own fields (JSON-able)."""


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything the block tasks need to know, decided before anything runs.

    Attributes
    ----------
    n_cells
        Rows of the matrix: the length of every gene's vector.
    gene_ids
        Identifiers of the exported genes, in export order.
    source_columns
        For each exported gene, its column in the input matrix.
    block_sizes
        Genes per block task, in export order; they sum to ``len(gene_ids)``.
    options
        The format's own settings (see :class:`FormatOptions`).
    source_token
        A cheap digest of the input's values (or file stamps), so a resumed
        export never reuses blocks written from other data.
    """

    n_cells: int
    gene_ids: tuple[str, ...]
    source_columns: tuple[int, ...]
    block_sizes: tuple[int, ...]
    options: Any
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

    def blocks(self) -> list[tuple[int, int]]:
        """``(start, size)`` of every block, in order."""
        return list(zip(self.block_starts, self.block_sizes, strict=True))

    def fingerprint(self) -> str:
        """A digest of what the bytes written depend on (not the block split)."""
        what = {
            "n_cells": self.n_cells,
            "gene_ids": self.gene_ids,
            "source_columns": self.source_columns,
            "source": self.source_token,
            **self.options.fingerprint_fields(),
        }
        return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:32]
