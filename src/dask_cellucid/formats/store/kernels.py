"""Pure kernels: a block of genes to canonical CSC, per-gene statistics, and chunk bytes.

No Dask, no fsspec, no zarr: NumPy, scipy, zlib (and numcodecs' Blosc for
zarr v3). A chunk is encoded exactly as zarr-python and numcodecs encode it:
the chunk's values padded with the fill value (0) to the whole chunk, then

- zarr v2: byte-shuffled for the ``Shuffle`` filter (every value's first byte,
  then every second byte, ...) where the array shuffles, then a zlib stream at
  level 6;
- zarr v3: the ``blosc`` codec (zlib level 6, byte shuffle; numcodecs' Blosc,
  as zarr-python) where the array shuffles, else the ``gzip`` codec at level 6
  with a zero time in its header (as cellucid 0.9.5 writes it).

A chunk that is all fill value is not written at all, as zarr-python does not
write one.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from .spec import DEFLATE_LEVEL, FLOAT32_EXACT_INTEGER_LIMIT, FLOAT32_MAX, chunk_name


@dataclass(frozen=True, slots=True)
class BlockStats:
    """What the first pass learns of one block of genes.

    Per gene: ``nnz`` (stored values at the input's dtype, canonical),
    ``nnz32`` (those still non-zero in float32) and ``bad`` (NaN, infinite or
    beyond float32); for the block: ``integral`` (every value a whole number)
    and ``max_abs``.
    """

    start: int
    nnz: np.ndarray
    nnz32: np.ndarray
    bad: np.ndarray
    integral: bool
    max_abs: float


def canonical_csc(block: Any) -> sp.csc_matrix:
    """``block`` as CSC with sorted, unique indices and no stored zero (never in place)."""
    m = sp.csc_matrix(block, copy=True) if sp.issparse(block) else sp.csc_matrix(np.asarray(block))
    m.sum_duplicates()
    m.eliminate_zeros()
    m.sort_indices()
    return m


def _integral_kind(dtype: np.dtype[Any]) -> bool:
    """Whether the stored type may widen to float64 for this input dtype (cellucid's rule)."""
    return dtype.kind in "iu" or (dtype.kind == "f" and dtype.itemsize > 4)


def value_stats(values: np.ndarray) -> tuple[bool, float]:
    """``(integral, max_abs)`` of finite ``values``: what decides whether ``X`` widens to
    float64 (:func:`stored_dtype`). A type that never widens (float32) is not
    scanned: ``(False, 0.0)``."""
    if values.size == 0:
        return True, 0.0
    if not _integral_kind(values.dtype):
        return False, 0.0
    integral = bool(np.all(np.floor(values) == values)) if values.dtype.kind == "f" else True
    return integral, max(-float(values.min()), float(values.max()))


def block_stats(block: Any, start: int, *, sparse: bool) -> BlockStats:
    """The first pass over one block (sparse: canonical CSC counts; dense: bad values only).

    Per-gene counts are taken only of what is there: a block with no bad value
    and no value that becomes zero in float32 costs no per-value temporary.
    """
    if sparse:
        m = canonical_csc(block)
        data = m.data
        w = m.shape[1]
        counts = np.diff(m.indptr).astype(np.int64)

        def per_gene(mask: np.ndarray) -> np.ndarray:
            gene_of = np.repeat(np.arange(w), counts)
            return np.bincount(gene_of[mask], minlength=w).astype(np.int64)

    else:
        data = block.toarray() if sp.issparse(block) else np.asarray(block)
        w = data.shape[1]
        counts = np.zeros(w, dtype=np.int64)

        def per_gene(mask: np.ndarray) -> np.ndarray:
            return mask.sum(axis=0).astype(np.int64)

    if data.dtype.kind == "b":
        data = data.astype(np.uint8)
    if data.dtype.kind not in "iuf":
        msg = f"the matrix holds {data.dtype} values; real numbers are needed"
        raise TypeError(msg)
    bad = np.zeros(w, dtype=np.int64)
    ok = data
    if data.dtype.kind == "f":
        finite = np.isfinite(data)
        bad_entry = ~finite
        if data.dtype.itemsize > 4:
            with np.errstate(invalid="ignore"):
                bad_entry |= finite & (np.abs(data) > FLOAT32_MAX)
        if bad_entry.any():
            bad = per_gene(bad_entry)
            ok = data[~bad_entry]
    integral, max_abs = value_stats(np.asarray(ok).reshape(-1))
    nnz32 = counts
    if sparse and data.dtype.kind == "f" and data.dtype.itemsize > 4:
        with np.errstate(over="ignore"):  # beyond float32: counted as bad already
            nz32 = data.astype(np.float32) != 0
        if not nz32.all():
            nnz32 = per_gene(nz32)
    return BlockStats(start, counts, nnz32, bad, integral, max_abs)


def row_block_stats(rows: Any, positions: np.ndarray | None, n_genes: int) -> BlockStats:
    """The first pass over a block of rows (CSR), for every gene at once.

    ``positions[c]`` is the export position of the input's column ``c``, or -1
    when the column is not exported; None when every column is exported, in
    order (the positions are then the column indices themselves). Counts as
    :func:`block_stats` does for the same values taken by columns (explicit
    zeros are not stored values), with no transposition: one ``bincount`` per
    kind of count. Blocks combine with :func:`sum_stats`.
    """
    if not rows.has_canonical_format:
        # duplicates lie within a row: summing them here is exact (on a copy)
        rows = sp.csr_matrix(rows, copy=True)
        rows.sum_duplicates()
    data = np.asarray(rows.data)
    identity = positions is None
    pos = rows.indices if positions is None else positions[rows.indices]
    if data.dtype.kind == "b":
        data = data.astype(np.uint8)
    if data.dtype.kind not in "iuf":
        msg = f"the matrix holds {data.dtype} values; real numbers are needed"
        raise TypeError(msg)
    keep = data != 0 if identity else (pos >= 0) & (data != 0)
    if not keep.all():
        data, pos = data[keep], pos[keep]
    nnz = np.bincount(pos, minlength=n_genes).astype(np.int64)
    bad = np.zeros(n_genes, dtype=np.int64)
    ok = data
    if data.dtype.kind == "f":
        bad_entry = ~np.isfinite(data)
        if data.dtype.itemsize > 4:
            with np.errstate(invalid="ignore"):
                bad_entry |= np.abs(data) > FLOAT32_MAX
        if bad_entry.any():
            bad = np.bincount(pos[bad_entry], minlength=n_genes).astype(np.int64)
            ok = data[~bad_entry]
    integral, max_abs = value_stats(ok)
    nnz32 = nnz
    if data.dtype.kind == "f" and data.dtype.itemsize > 4:
        with np.errstate(over="ignore"):  # beyond float32: counted as bad already
            nz32 = data.astype(np.float32) != 0
        if not nz32.all():
            nnz32 = np.bincount(pos[nz32], minlength=n_genes).astype(np.int64)
    return BlockStats(0, nnz, nnz32, bad, integral, max_abs)


def sum_stats(parts: list[BlockStats]) -> BlockStats:
    """The statistics of several row blocks of the same genes, as of one block."""
    first = parts[0]
    return BlockStats(
        first.start,
        np.sum([p.nnz for p in parts], axis=0),
        np.sum([p.nnz32 for p in parts], axis=0),
        np.sum([p.bad for p in parts], axis=0),
        all(p.integral for p in parts),
        max(p.max_abs for p in parts),
    )


def stored_dtype(input_dtype: np.dtype[Any], *, integral: bool, max_abs: float) -> str:
    """float32, or float64 for integer counts that float32 cannot hold exactly."""
    if _integral_kind(np.dtype(input_dtype)) and integral and max_abs > FLOAT32_EXACT_INTEGER_LIMIT:
        return "float64"
    return "float32"


def stored_csc(block: Any, dtype: str) -> sp.csc_matrix:
    """Canonical CSC at the stored type; values that became zero in it are dropped."""
    m = canonical_csc(block)
    data = m.data.astype(dtype)
    m = sp.csc_matrix((data, m.indices, m.indptr), shape=m.shape)
    if data.size and not np.all(data):
        m.eliminate_zeros()
    return m


def _zlib(raw: bytes) -> bytes:
    return zlib.compress(raw, DEFLATE_LEVEL)


def _libdeflate(raw: bytes) -> bytes:
    import deflate

    return bytes(deflate.zlib_compress(raw, DEFLATE_LEVEL))


def _gzip_zlib(raw: bytes) -> bytes:
    # what gzip.compress(raw, 6, mtime=0) writes (Python >= 3.11): time 0, OS 3
    return zlib.compress(raw, DEFLATE_LEVEL, wbits=31)


def _gzip_libdeflate(raw: bytes) -> bytes:
    import deflate

    return bytes(deflate.gzip_compress(raw, DEFLATE_LEVEL))


#: Encoders of the chunks' zlib streams: ``zlib`` writes the bytes cellucid 0.9.5
#: (numcodecs) writes; ``libdeflate`` writes other, equally standard zlib streams,
#: about 3x faster and a little smaller.
CHUNK_CODECS = {"zlib": _zlib, "libdeflate": _libdeflate}
#: The same for zarr v3's ``gzip`` codec: gzip members with a zero time.
GZIP_CODECS = {"zlib": _gzip_zlib, "libdeflate": _gzip_libdeflate}
_BLOSC: dict[int, Any] = {}


def _blosc(itemsize: int) -> Any:
    """numcodecs' Blosc as zarr-python's v3 ``blosc`` codec configures it (zlib 6, shuffle)."""
    codec = _BLOSC.get(itemsize)
    if codec is None:
        from numcodecs import Blosc

        codec = Blosc.from_config(
            {
                "cname": "zlib",
                "clevel": DEFLATE_LEVEL,
                "shuffle": Blosc.SHUFFLE,
                "blocksize": 0,
                "typesize": itemsize,
            }
        )
        _BLOSC[itemsize] = codec
    return codec


#: A values chunk whose first bytes deflate (level 1) to more than this share of
#: their size is nearly incompressible: continuous floats, such as values
#: normalised by per-cell size factors. On such chunks a match search finds
#: almost nothing (measured on the benchmark's M: 0.8713 of the raw size at
#: libdeflate's level 6, 0.8674 at level 1, 0.8704 with no match search), so they
#: are written as literals only (``deflate_kernels.deflate_literals``: one
#: Huffman block of the chunk's bytes), about 5x faster than libdeflate's level 1.
_INCOMPRESSIBLE = 0.8
_SAMPLE_BYTES = 4096
_ZLIB_HEADER = b"\x78\x01"  # deflate, 32 KiB window, "fastest" (informative only)


def _libdeflate_values(raw: bytes, *, gzip: bool = False) -> bytes:
    """libdeflate at level 6, or literals only for a chunk that a sample shows incompressible.

    Only for unshuffled values: a shuffled chunk starts with its low bytes, a
    sample that says nothing of the rest. ``gzip``: a gzip member (zarr v3),
    else a zlib stream.
    """
    import deflate

    from dask_cellucid import codecs
    from dask_cellucid.deflate_kernels import deflate_literals

    if len(raw) >= 4 * _SAMPLE_BYTES:
        sample = len(deflate.zlib_compress(raw[:_SAMPLE_BYTES], 1))
        if sample > _INCOMPRESSIBLE * _SAMPLE_BYTES:
            body = deflate_literals(raw)
            if gzip:  # zarr v3's gzip codec: any header; this one has time 0, as 0.9.5's
                return codecs.gzip_frame(body, codecs.crc32(raw), len(raw))
            return b"".join((_ZLIB_HEADER, body, struct.pack(">I", zlib.adler32(raw))))
    encode = deflate.gzip_compress if gzip else deflate.zlib_compress
    return bytes(encode(raw, DEFLATE_LEVEL))


def encode_chunk(
    values: np.ndarray,
    chunk_shape: tuple[int, ...],
    *,
    shuffle: bool,
    codec: str = "zlib",
    zarr_format: int = 2,
) -> bytes | None:
    """One chunk: padded to ``chunk_shape``, then encoded as the module docstring says.

    ``None`` when every value is the fill value 0 (zarr-python writes no such chunk).
    ``codec`` picks the deflate encoder (:data:`CHUNK_CODECS`, :data:`GZIP_CODECS`);
    a shuffled zarr v3 chunk is Blosc's whatever it is.
    """
    if values.shape != chunk_shape:
        padded = np.zeros(chunk_shape, dtype=values.dtype)
        padded[tuple(slice(0, n) for n in values.shape)] = values
        values = padded
    if not values.any():
        return None
    raw = np.ascontiguousarray(values).view(np.uint8).reshape(-1)
    shuffled = shuffle and values.dtype.itemsize > 1
    if zarr_format == 3:
        if shuffled:
            return bytes(_blosc(values.dtype.itemsize).encode(raw))
        if codec == "libdeflate":
            return _libdeflate_values(raw.tobytes(), gzip=True)
        return GZIP_CODECS[codec](raw.tobytes())
    if shuffled:
        raw = np.ascontiguousarray(raw.reshape(-1, values.dtype.itemsize).T).reshape(-1)
    if codec == "libdeflate" and not shuffle:
        return _libdeflate_values(raw.tobytes())
    return CHUNK_CODECS[codec](raw.tobytes())


def decode_chunk(
    payload: bytes,
    dtype: str,
    chunk_shape: tuple[int, ...],
    *,
    shuffle: bool,
    zarr_format: int = 2,
) -> np.ndarray:
    """The inverse of :func:`encode_chunk`."""
    itemsize = np.dtype(dtype).itemsize
    shuffled = shuffle and itemsize > 1
    if zarr_format == 3:
        if shuffled:
            raw = np.frombuffer(_blosc(itemsize).decode(payload), dtype=np.uint8)
        else:
            raw = np.frombuffer(zlib.decompress(payload, wbits=31), dtype=np.uint8)
        return raw.view(dtype).reshape(chunk_shape)
    raw = np.frombuffer(zlib.decompress(payload), dtype=np.uint8)
    if shuffled:
        raw = np.ascontiguousarray(raw.reshape(itemsize, -1).T).reshape(-1)
    return raw.view(dtype).reshape(chunk_shape)


def sparse_chunks(
    m: sp.csc_matrix,
    base: int,
    first_chunk: int,
    stop_chunk: int,
    chunk: int,
    nnz: int,
    indices_dtype: str,
    codec: str = "zlib",
    zarr_format: int = 2,
) -> list[tuple[int, bytes | None, bytes | None]]:
    """``(chunk index, data bytes, indices bytes)`` of chunks ``[first_chunk, stop_chunk)``.

    ``m`` holds the segment's genes at the stored type, its first value at
    global position ``base`` of ``X/data``.
    """
    out = []
    for c in range(first_chunk, stop_chunk):
        p0, p1 = c * chunk, min((c + 1) * chunk, nnz)
        data = m.data[p0 - base : p1 - base]
        indices = m.indices[p0 - base : p1 - base].astype(indices_dtype, copy=False)
        if data.size != p1 - p0:
            msg = f"chunk {c}: {data.size} values where {p1 - p0} were counted"
            raise AssertionError(msg)
        out.append(
            (
                c,
                encode_chunk(data, (chunk,), shuffle=False, codec=codec, zarr_format=zarr_format),
                encode_chunk(indices, (chunk,), shuffle=True, codec=codec, zarr_format=zarr_format),
            )
        )
    return out


def dense_chunks(
    block: np.ndarray,
    first_strip: int,
    chunk_shape: tuple[int, int],
    codec: str = "zlib",
    zarr_format: int = 2,
) -> list[tuple[str, bytes | None]]:
    """``(chunk key, bytes)`` of every chunk of the strips ``block`` holds (no shuffle).

    The key is the chunk's under ``X``: ``r.s`` (zarr v2) or ``c/r/s`` (v3).
    """
    rows, cols = chunk_shape
    out = []
    n_strips = -(-block.shape[1] // cols)
    for s in range(n_strips):
        strip = block[:, s * cols : (s + 1) * cols]
        for r in range(-(-block.shape[0] // rows)):
            piece = strip[r * rows : (r + 1) * rows]
            key = chunk_name((r, first_strip + s), zarr_format)
            payload = encode_chunk(
                piece, chunk_shape, shuffle=False, codec=codec, zarr_format=zarr_format
            )
            out.append((key, payload))
    return out
