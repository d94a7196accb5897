"""What a store's verification found: :class:`StoreVerifyReport` (exact comparison)."""

from __future__ import annotations

from dataclasses import dataclass, field

_SHOW = 10


@dataclass
class StoreVerifyReport:
    """What :func:`dask_cellucid.verify` found comparing a store with its source.

    Every gene is compared exactly: the store's values (read as the browser
    reads them) against the source's, cast to the store's dtype.

    Attributes
    ----------
    url, source
        The store and a description of the source matrix.
    n_genes
        Genes compared.
    wrong
        ``(gene, cells that differ)`` for every gene whose values differ.
    missing
        Genes asked for that the store does not hold.
    extra
        Genes of the store that the source does not have.
    problems
        Problems of the store itself (no metadata, a different cell count).
    """

    url: str
    source: str
    n_genes: int = 0
    wrong: list[tuple[str, int]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every gene matches exactly and nothing is missing or extra."""
        return not (self.problems or self.wrong or self.missing or self.extra)

    def __str__(self) -> str:
        head = f"verify {self.url} against {self.source}: "
        if self.ok:
            return head + f"OK, all {self.n_genes:,} genes match exactly."
        lines = [head + "FAILED"]
        lines += [f"  - {p}" for p in self.problems]
        if self.wrong:
            shown = ", ".join(f"{g!r} ({n:,} cells)" for g, n in self.wrong[:_SHOW])
            more = f" and {len(self.wrong) - _SHOW:,} more" if len(self.wrong) > _SHOW else ""
            lines.append(f"  - {len(self.wrong):,} of {self.n_genes:,} genes differ: {shown}{more}")
        for what, genes in (
            ("asked for but not in the store", self.missing),
            ("in the store but not in the source", self.extra),
        ):
            if genes:
                more = f" and {len(genes) - _SHOW:,} more" if len(genes) > _SHOW else ""
                lines.append(f"  - {len(genes):,} gene(s) {what}: {genes[:_SHOW]}{more}")
        return "\n".join(lines)


__all__ = ["StoreVerifyReport"]
