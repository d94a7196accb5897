"""What the store holds: chunk sizes, dtypes and codecs, read off cellucid 0.9.5."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Elements per chunk of ``X/data`` and ``X/indices`` (read one gene's range at a time).
SLICED_CHUNK = 2**16
#: Elements per chunk of an array read whole (indptr, obs/var columns, embeddings).
WHOLE_CHUNK = 2**18
#: The deflate level of every chunk.
DEFLATE_LEVEL = 6
#: Integer counts above this are not exact in float32: ``X`` is then float64.
FLOAT32_EXACT_INTEGER_LIMIT = 2**24
#: The largest finite float32.
FLOAT32_MAX = 3.4028234663852886e38
INT32_MAX = 2**31 - 1
#: The consolidated metadata: written last, withdrawn first (zarr v2).
CONSOLIDATED = ".zmetadata"
#: A zarr v3 node's metadata; the root's holds the consolidated metadata.
V3_METADATA = "zarr.json"
#: The zarr formats written (2, the default, and 3).
ZARR_FORMATS = (2, 3)
#: The name a single-file store ends in (``format="zarr.zip"``).
ZIP_SUFFIX = ".zarr.zip"


def consolidated_name(zarr_format: int) -> str:
    """The consolidated metadata's key: ``.zmetadata`` (v2) or the root ``zarr.json`` (v3)."""
    return CONSOLIDATED if zarr_format == 2 else V3_METADATA


def chunk_name(index: tuple[int, ...], zarr_format: int) -> str:
    """A chunk's key under its array: ``0.1`` (v2), ``c/0/1`` (v3; ``c`` for a scalar)."""
    if zarr_format == 2:
        return ".".join(str(i) for i in index) or "0"
    return "/".join(["c", *(str(i) for i in index)])


def vector_chunk(length: int, target: int) -> int:
    """The chunk of a 1-D array of ``length``: ``target``, or the length when shorter (>= 1)."""
    return max(1, min(length, target))


def strip_chunks(n_cells: int, n_genes: int) -> tuple[int, int]:
    """A dense ``X``'s chunk: a full-height strip of few genes (about 2^18 values)."""
    rows = max(1, min(n_cells, WHOLE_CHUNK))
    return rows, max(1, min(n_genes, WHOLE_CHUNK // rows))


def row_chunks(n_rows: int, n_columns: int) -> tuple[int, int]:
    """An ``obsm`` array's chunk: every column of a block of rows."""
    columns = max(1, n_columns)
    return max(1, min(n_rows, WHOLE_CHUNK // columns)), columns


def indptr_dtype(nnz: int) -> str:
    return "int64" if nnz >= 2**31 else "int32"


def indices_dtype(n_cells: int) -> str:
    return "int64" if n_cells > INT32_MAX else "int32"


@dataclass(frozen=True, slots=True)
class StoreOptions:
    """The store format's part of a :class:`~dask_cellucid.types.Plan`.

    ``sparse``: ``X`` is ``csc_matrix`` (else a dense ``array``); ``dtype``:
    the values' stored type; ``chunk``: elements per chunk of ``X/data`` and
    ``X/indices`` (:data:`SLICED_CHUNK`; smaller only in tests); ``nnz``:
    stored values of ``X``; ``zarr_format``: 2 or 3; ``zipped``: the store is
    packed into one ``.zarr.zip`` file at the end.
    """

    sparse: bool
    dtype: str
    n_genes: int
    nnz: int = 0
    chunk: int = SLICED_CHUNK
    zarr_format: int = 2
    codec: str = "zlib"
    zipped: bool = False

    def fingerprint_fields(self) -> dict[str, Any]:
        return {
            "format": "cellucid-ready-zarr",
            "sparse": self.sparse,
            "dtype": self.dtype,
            "n_genes": self.n_genes,
            "nnz": self.nnz,
            "chunk": self.chunk,
            "zarr_format": self.zarr_format,
            "codec": self.codec,
            "zipped": self.zipped,
        }
