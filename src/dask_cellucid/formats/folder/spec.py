"""The export folder's constants and records: names, payload dtypes, file paths.

One home for what ``../shared/spec/export-format.md`` fixes and every part of
the folder format shares (the writer, the manifest, the reader, validate and
verify): the folder's file names, the three payload dtypes, how one gene is
encoded, what a block task learned about one gene, and how a manifest field
resolves to a payload file.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .naming import sanitize_key

if TYPE_CHECKING:
    from collections.abc import Mapping

Layout = Literal["key", "index"]
Rounding = Literal["nearest", "floor"]
Bits = Literal[8, 16]
SparseUse = Literal["auto", "always", "off"]

VAR_DIR = "var"
MANIFEST_NAME = "var_manifest.json"
FORMAT = "compact_v1"


@dataclass(frozen=True, slots=True)
class PayloadDtype:
    """One of the spec's payload dtypes: its manifest name, file ``ext`` and bits."""

    name: str
    ext: str
    numpy: str
    bits: Bits | None

    @property
    def itemsize(self) -> int:
        return np.dtype(self.numpy).itemsize


#: By the manifest's ``_varSchema.dtype``.
DTYPES = {
    d.name: d
    for d in (
        PayloadDtype("float32", "f32", "<f4", None),
        PayloadDtype("uint8", "u8", "<u1", 8),
        PayloadDtype("uint16", "u16", "<u2", 16),
    )
}
#: By ``var_quantization`` (None for float32).
BY_BITS = {d.bits: d for d in DTYPES.values()}


@dataclass(frozen=True, slots=True)
class Encoding:
    """How one gene's values become the bytes of its payload file."""

    bits: Bits | None
    compression: int | None
    rounding: Rounding = "nearest"
    codec: str = "libdeflate"
    #: The sparse-aware gzip encoder for sparse blocks: ``"auto"`` (genes where it
    #: pays), ``"always"`` (every gene of a sparse block) or ``"off"``.
    sparse: SparseUse = "off"

    @property
    def payload_dtype(self) -> PayloadDtype:
        return BY_BITS[self.bits]

    @property
    def ext(self) -> str:
        return self.payload_dtype.ext

    @property
    def dtype(self) -> str:
        return self.payload_dtype.name

    @property
    def itemsize(self) -> int:
        return self.payload_dtype.itemsize

    @property
    def suffix(self) -> str:
        """File-name ending after the gene's stem: ``.values.u8.gz`` and so on."""
        return f".values.{self.ext}" + (".gz" if self.compression else "")


@dataclass(frozen=True, slots=True)
class FolderOptions:
    """The folder format's part of a :class:`~dask_cellucid.types.Plan`.

    ``stems`` holds each exported gene's file stem under ``var/`` (the
    sanitized id in the ``key`` layout, the position in the ``index`` layout).
    """

    encoding: Encoding
    layout: Layout
    var_gene_id_column: str | None
    stems: tuple[str, ...]

    def fingerprint_fields(self) -> dict[str, Any]:
        """What the bytes on disk depend on (names as journals before 0.2 recorded them)."""
        encoding = asdict(self.encoding)
        if encoding["sparse"] == "off":  # as journals before the sparse encoder recorded it
            del encoding["sparse"]
        return {"stems": self.stems, "encoding": encoding, "layout": self.layout}

    def payload_path(self, position: int) -> str:
        """Path of gene ``position``'s payload, relative to the export root."""
        return f"{VAR_DIR}/{self.stems[position]}{self.encoding.suffix}"


@dataclass(frozen=True, slots=True)
class GeneEntry:
    """What a block task learned about one gene; all the manifest needs.

    ``lo``/``hi`` are the raw bounds over the gene's finite values (NaN when it
    has none); how constant and empty genes are written is the layout's
    business, decided in :mod:`.manifest`.
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


def layout_of(manifest: Mapping[str, Any]) -> Layout:
    """``key`` or ``index``, read off the manifest's path pattern."""
    pattern = str((manifest.get("_varSchema") or {}).get("pathPattern"))
    return "index" if "{index}" in pattern else "key"


@dataclass(frozen=True, slots=True)
class FieldLocation:
    """One manifest field resolved: the gene, its payload path and its raw bounds."""

    gene_id: Any
    path: str
    bounds: tuple[Any, ...]


def field_location(field: Any, pattern: str, layout: Layout) -> FieldLocation:
    """Where the viewer looks for one field's payload (spec section 3).

    ``key``: ``[gene_id, min?, max?]``, path from the sanitized id;
    ``index``: ``[index, gene_id, min?, max?]``, path from the index.
    """
    if layout == "key":
        return FieldLocation(field[0], pattern.replace("{key}", sanitize_key(field[0])), field[1:])
    return FieldLocation(field[1], pattern.replace("{index}", str(field[0])), field[2:])


def field_locations(manifest: Mapping[str, Any]) -> list[FieldLocation]:
    """Every field of a (well-formed) manifest, resolved, in manifest order."""
    pattern = manifest["_varSchema"]["pathPattern"]
    layout = layout_of(manifest)
    return [field_location(f, pattern, layout) for f in manifest["fields"]]
