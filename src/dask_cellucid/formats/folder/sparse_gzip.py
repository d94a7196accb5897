"""Sparse-aware gzip: a gene's gzip member written from its stored values alone.

A generic deflate encoder (zlib, libdeflate) searches the whole dense payload
for matches, so its work grows with ``n_cells``. The dense payload of a sparse
gene is *runs of the fill element* (the code of zero; 0.0 for float32)
*between stored values*, so its deflate stream can be written directly, with
work that grows with the number of stored values:

- a run of fill elements is its first element's bytes as literals (one
  literal when all the fill element's bytes are equal) then matches at
  distance 1 (equal bytes) or ``itemsize`` (a run of equal elements repeats
  with that period) of at most 258 bytes each; a remainder of 1 or 2 bytes is
  balanced into the last two matches (259 = 256 + 3). A short run is all
  literals: below a per-gene threshold (3 to 11 bytes of match, the one of
  ``RUN_MATCH_CANDIDATES`` in ``deflate_kernels.c`` that gives the fewest
  bits: the fill literal is often the commonest symbol and costs a bit or two);
- each stored value's bytes are literals;
- a gene is one dynamic-Huffman block: literal/length code lengths from the
  symbol counts (an optimal Huffman code, limited to 15 bits by the usual
  Kraft redistribution if deeper), a complete two-symbol one-bit distance
  code, the code lengths sent with the run-length codes 16/17/18 and a
  code-length code limited to 7 bits. Every code is complete, so no strict
  inflater can refuse one.

If that block would be larger than storing the bytes (incompressible values,
nearly every cell stored), stored blocks are written instead, so a member is
never larger than :func:`stored_size`: ``n_bytes + 5`` per 65,535 bytes, + 18.

The loops are a small C extension (``deflate_kernels.c``, which releases
the GIL): per gene, a pass over its stored values to count symbols, a
length-limited Huffman code (Moffat-Katajainen, then Kraft redistribution),
the header, and a second pass that writes the bits; about 35 ns a stored
value in all. Why C and not numba or NumPy: ``benchmarks/README.md``. CRC-32
is over the dense vector, rebuilt for each gene in one reused buffer (a fill
and a scatter) and checksummed by libdeflate (``codecs.crc32``, which uses
the CPU's carry-less multiply): about 10 us per 100 KB gene.

``compression`` level: the encoder has one setting and ignores the level (1
to 9 give the same bytes). Its output is deterministic: the same rows, codes,
``n_cells`` and fill give the same bytes, whatever the other genes of the
block (every choice is per gene; ties are broken by symbol).

When to use it rather than the generic codec: :func:`sparse_pays`.

Pure kernels (C, NumPy and ``codecs.crc32``): no Dask, no storage.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dask_cellucid import codecs
from dask_cellucid.deflate_kernels import deflate_genes

__all__ = [
    "SPARSE_DENSITY_LIMIT",
    "gzip_member_sparse",
    "gzip_members_csc",
    "sparse_pays",
    "stored_size",
]

#: The largest fraction of stored cells, by payload itemsize, for which
#: :func:`sparse_pays` chooses this encoder (measured, see there).
SPARSE_DENSITY_LIMIT = {1: 0.85, 2: 0.85, 4: 0.1}


def stored_size(n_bytes: int) -> int:
    """The size of a gzip member holding ``n_bytes`` in stored blocks: the output bound."""
    return 18 + n_bytes + 5 * max(1, -(-n_bytes // 65_535))


def sparse_pays(n_stored: int, n_cells: int, itemsize: int = 1) -> bool:
    """Whether to encode a gene of ``n_stored`` stored cells with this encoder.

    True when the fraction of stored cells is at most
    ``SPARSE_DENSITY_LIMIT[itemsize]``. Measured against libdeflate level 6
    on the dense payloads (``benchmarks/README.md``: 100,000 cells, random
    positions, log1p-like values, 20 genes a density), this encoder is both
    faster and smaller up to 85 % stored cells for 8- and 16-bit codes (at
    90 %: 0.989 of libdeflate's bytes, 1.3x and 3x its speed) and up to 10 %
    for float32 (0.98 of the bytes; from 20 % on its output is 0.7-2.3 %
    larger, while still faster). Above the limit the writer uses the generic
    codec.
    """
    if n_cells <= 0:
        return True
    return n_stored <= SPARSE_DENSITY_LIMIT.get(itemsize, 0.5) * n_cells


def _fill_elements(fill: Any, n_genes: int, dtype: np.dtype[Any]) -> np.ndarray:
    f = np.asarray(fill)
    if f.ndim == 0:
        f = np.full(n_genes, f)
    if len(f) != n_genes:
        msg = f"fill has {len(f)} values for {n_genes} genes"
        raise ValueError(msg)
    out = np.ascontiguousarray(f, dtype=dtype)
    with np.errstate(invalid="ignore"):
        if not np.array_equal(out, f, equal_nan=f.dtype.kind == "f"):
            msg = f"fill {f[out != f][:3].tolist()} cannot be a {dtype} payload element"
            raise ValueError(msg)
    return out


def gzip_members_csc(
    codes: np.ndarray, indices: np.ndarray, indptr: np.ndarray, n_cells: int, fill: Any
) -> list[bytes]:
    """One gzip member per gene of a canonical CSC block of payload values.

    Parameters
    ----------
    codes
        The payload values of the stored cells, gene after gene (uint8 or
        uint16 codes, or float32 values): ``codes[indptr[k]:indptr[k+1]]``
        belong to gene ``k``.
    indices
        Their rows (cells): sorted and distinct within each gene, in
        ``0..n_cells-1``.
    indptr
        ``n_genes + 1`` offsets into ``codes`` and ``indices``, from 0.
    n_cells
        The length of each gene's dense vector.
    fill
        The element of the cells not stored (the code of zero; 0.0 for
        float32): a scalar, or one per gene.

    Returns
    -------
    list of bytes
        Per gene, one gzip member with the spec's fixed header whose contents
        are exactly the gene's dense little-endian vector. The bytes of a gene
        do not depend on the other genes of the block.
    """
    codes = np.asarray(codes)
    dtype = codes.dtype.newbyteorder("<") if codes.dtype.byteorder == ">" else codes.dtype
    if dtype.kind not in "uif" or dtype.itemsize not in (1, 2, 4):
        msg = f"payload dtype {codes.dtype} is not a 1, 2 or 4-byte number"
        raise ValueError(msg)
    codes = np.ascontiguousarray(codes, dtype=dtype)
    indptr = np.asarray(indptr, np.int64)
    indices = np.asarray(indices)
    if indices.dtype.kind not in "iu":
        msg = f"indices must be integers, not {indices.dtype}"
        raise ValueError(msg)
    n_genes = len(indptr) - 1
    if (
        n_genes < 0
        or indptr[0] != 0
        or (np.diff(indptr) < 0).any()
        or min(len(codes), len(indices)) < indptr[-1]
    ):
        msg = "indptr does not describe codes and indices"
        raise ValueError(msg)
    fills = _fill_elements(fill, n_genes, dtype)
    s = dtype.itemsize
    stop = int(indptr[-1])
    codes, rows = codes[:stop], np.ascontiguousarray(indices[:stop], dtype=np.int64)
    # raises ValueError for rows not sorted, distinct and within 0..n_cells-1
    buf, offsets = deflate_genes(
        codes.view(np.uint8), rows, np.ascontiguousarray(indptr), int(n_cells), fills, s
    )
    return _frame(buf, np.frombuffer(offsets, np.int64), codes, rows, indptr, int(n_cells), fills)


def gzip_member_sparse(rows: np.ndarray, codes: np.ndarray, n_cells: int, fill: Any) -> bytes:
    """The gzip member of one gene: ``codes`` at the sorted ``rows``, ``fill`` elsewhere."""
    codes = np.asarray(codes)
    return gzip_members_csc(codes, rows, np.array([0, len(codes)]), n_cells, [fill])[0]


def _frame(
    buf: np.ndarray,
    offsets: np.ndarray,
    codes: np.ndarray,
    rows: np.ndarray,
    indptr: np.ndarray,
    n_cells: int,
    fills: np.ndarray,
) -> list[bytes]:
    """Each gene's member: the spec's fixed header, its deflate stream, CRC-32, ISIZE."""
    uint = np.dtype(f"<u{codes.dtype.itemsize}")
    dense = np.empty(n_cells, uint)
    code_int, fill_int = codes.view(uint), fills.view(uint)
    view = memoryview(buf)
    out = []
    for k in range(len(fills)):
        a, b = int(indptr[k]), int(indptr[k + 1])
        dense.fill(fill_int[k])
        dense[rows[a:b]] = code_int[a:b]
        body = view[int(offsets[k]) : int(offsets[k + 1])]
        out.append(codecs.gzip_frame(body, codecs.crc32(dense), dense.nbytes))
    return out
