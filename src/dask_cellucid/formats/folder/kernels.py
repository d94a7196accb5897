"""Block kernels: a block of gene columns in, one payload vector per gene out.

Pure NumPy (scipy.sparse only to recognise and convert a sparse block): no
Dask, no storage, so every function here can be tested alone. The arithmetic
follows spec section 2; codes are computed in float64 from the float32 values
the viewer would see, exactly as the reference writer does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from .spec import BY_BITS

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from .spec import Bits, Rounding

# Codes are computed in float64 over at most this many values at a time, so a
# block's transient memory stays a small multiple of its payload size.
_CHUNK_VALUES = 1 << 20
# The reference writer nudges by 1e-8 before truncating (to match its R twin
# at exact integer boundaries); "floor" must do the same to match its bytes.
_FLOOR_NUDGE = 1e-8


def max_code(bits: Bits) -> int:
    """254 for 8 bits, 65534 for 16; ``max_code + 1`` is the missing marker."""
    return (1 << bits) - 2


def code_dtype(bits: Bits | None) -> np.dtype[Any]:
    """The payload dtype for ``bits`` (None: float32)."""
    return np.dtype(BY_BITS[bits].numpy)


#: The largest finite float32: the viewer's value type.
FLOAT32_MAX = float(np.finfo(np.float32).max)


def float32_overflow(block: Any) -> np.ndarray | None:
    """Per column, how many finite values become +-Inf as float32; None if none can.

    Only inputs wider than float32 can hold such values (float64 1e39, say).
    """
    values = block.data if sp.issparse(block) else np.asarray(block)
    if values.dtype.kind != "f" or values.dtype.itemsize <= 4:
        return None
    with np.errstate(invalid="ignore"):
        over = np.isfinite(values) & (np.abs(values) > FLOAT32_MAX)
    if not over.any():
        return None
    if sp.issparse(block):
        csc = canonical_csc(block)
        over = np.isfinite(csc.data) & (np.abs(csc.data) > FLOAT32_MAX)
        return np.add.reduceat(over, csc.indptr[:-1]) * (np.diff(csc.indptr) > 0)
    return over.sum(axis=0)


def canonical_csc(block: Any) -> sp.csc_matrix:
    """A sparse block as canonical CSC (sorted, no duplicates), never changing ``block``."""
    # scipy's CSC constructor would drop a view's cached canonical flag and
    # check it again (a pass over the block)
    csc = block if block.format == "csc" else sp.csc_matrix(block)
    if not csc.has_canonical_format:
        csc = csc.copy()
        csc.sum_duplicates()
    return csc


@dataclass(frozen=True, slots=True)
class BlockPayloads:
    """The encoded genes of one block.

    Attributes
    ----------
    values
        ``(n_genes_in_block, n_cells)``, C order: row ``k`` is exactly the
        little-endian payload of the block's ``k``-th gene (codes, or float32).
        None when the block was encoded one row at a time (``one_row``).
    lo, hi
        Raw bounds over each gene's finite values, float64; NaN if none.
    n_nonfinite
        Count of NaN/+Inf/-Inf cells per gene.
    """

    values: np.ndarray | None
    lo: np.ndarray
    hi: np.ndarray
    n_nonfinite: np.ndarray
    _row_source: Callable[[np.ndarray | None], Iterator[np.ndarray | None]] | None = None
    _stored: Callable[[], StoredCodes] | None = None

    def rows(self, skip: np.ndarray | None = None) -> Iterator[np.ndarray | None]:
        """Each gene's payload in turn (None for the genes ``skip`` marks, when sparse).

        For a block encoded ``one_row``, every row is the same buffer,
        overwritten by the next: use (compress, copy) each before drawing the
        next. ``skip`` saves filling the dense vector of genes the caller
        encodes from :meth:`stored` instead; a dense block ignores it.
        """
        if self._row_source is not None:
            return self._row_source(skip)
        return iter(self.values)  # type: ignore[arg-type]

    def stored(self) -> StoredCodes | None:
        """A sparse block's payload values of its stored cells only (None for a dense block)."""
        return None if self._stored is None else self._stored()


@dataclass(frozen=True, slots=True)
class StoredCodes:
    """A sparse block's genes as CSC of payload values: what a sparse-aware encoder needs.

    ``codes[indptr[k]:indptr[k+1]]`` are gene ``k``'s payload values (codes,
    or float32) at rows ``indices[...]``; every other cell holds ``fill[k]``
    (the code of zero). ``indptr`` starts at 0.
    """

    codes: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray
    fill: np.ndarray


def codes_for(
    values: np.ndarray,
    lo: np.ndarray | float,
    scale: np.ndarray | float,
    bits: Bits,
    rounding: Rounding,
) -> np.ndarray:
    """Codes of finite ``values`` given each value's gene ``lo`` and ``scale``.

    ``scale`` is ``max_code / (hi - lo)``, or 0 for a constant gene (all codes
    0). Non-finite values give garbage here; callers overwrite them with the
    marker.
    """
    shape = np.shape(values)
    out = np.empty(shape, code_dtype(bits))
    return _codes_into(out, np.empty(shape), values, lo, scale, bits, rounding)


def _codes_into(
    out: np.ndarray,
    t: np.ndarray,
    values: np.ndarray,
    lo: np.ndarray | float,
    scale: np.ndarray | float,
    bits: Bits,
    rounding: Rounding,
) -> np.ndarray:
    """:func:`codes_for` into ``out``, using ``t`` (float64, shaped like ``values``).

    The one place the quantization arithmetic is written, so every path (dense,
    sparse, the code of zero) gives the same codes for the same value. The
    buffers let a per-gene caller reuse cache-resident temporaries.
    """
    with np.errstate(invalid="ignore", over="ignore"):
        t[...] = values
        t -= lo
        t *= scale
        if rounding == "nearest":
            np.rint(t, out=t)
        else:
            t += _FLOOR_NUDGE
            np.floor(t, out=t)
        np.clip(t, 0, max_code(bits), out=t)
        np.copyto(out, t, casting="unsafe")
    return out


def _scales(lo: np.ndarray, hi: np.ndarray, bits: Bits) -> np.ndarray:
    span = hi - lo
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(span > 0, max_code(bits) / span, 0.0)
    return np.where(np.isfinite(scale), scale, 0.0)


def encode_dense(x: np.ndarray, bits: Bits | None, rounding: Rounding = "nearest") -> BlockPayloads:
    """Encode a dense ``(n_cells, w)`` block (any real dtype)."""
    xt = np.ascontiguousarray(np.asarray(x).T, dtype=np.float32)  # (w, n_cells)
    w, n = xt.shape
    if np.issubdtype(np.asarray(x).dtype, np.integer) or np.asarray(x).dtype == bool:
        finite = None  # integers are always finite; skip the mask
        n_nonfinite = np.zeros(w, np.int64)
    else:
        finite = np.isfinite(xt)
        n_nonfinite = n - finite.sum(axis=1, dtype=np.int64)
        if not n_nonfinite.any():
            finite = None
    if n == 0:
        lo = hi = np.full(w, np.nan)
    elif finite is None:
        lo, hi = xt.min(axis=1).astype(np.float64), xt.max(axis=1).astype(np.float64)
    else:
        lo = np.where(finite, xt, np.inf).min(axis=1).astype(np.float64)
        hi = np.where(finite, xt, -np.inf).max(axis=1).astype(np.float64)
        empty = ~np.isfinite(lo)
        lo[empty] = hi[empty] = np.nan
    if bits is None:
        fill = np.zeros(w, np.float32)
        return BlockPayloads(xt, lo, hi, n_nonfinite, _stored=lambda: dense_stored(xt, fill))

    scale = _scales(lo, hi, bits)
    codes = np.empty((w, n), code_dtype(bits))
    rows = max(1, _CHUNK_VALUES // max(n, 1))
    for r in range(0, w, rows):
        sl = slice(r, r + rows)
        codes[sl] = codes_for(xt[sl], lo[sl, None], scale[sl, None], bits, rounding)
    if finite is not None:
        codes[~finite] = max_code(bits) + 1
    zero_codes = codes_for(np.zeros(w), np.nan_to_num(lo), scale, bits, rounding)
    return BlockPayloads(
        codes, lo, hi, n_nonfinite, _stored=lambda: dense_stored(codes, zero_codes)
    )


def _same_bytes(values: np.ndarray) -> np.ndarray:
    """``values`` viewed as unsigned integers, so that -0.0 and 0.0 differ (their bytes do)."""
    return values.view(f"<u{values.dtype.itemsize}")


def dense_stored(payloads: np.ndarray, fill: np.ndarray) -> StoredCodes:
    """The cells of ``(w, n_cells)`` payloads whose bytes differ from their gene's ``fill``.

    The same :class:`StoredCodes` a sparse block of the same values gives
    (after :func:`without_fill`), so an encoder fed either makes the same bytes.
    """
    fill = np.asarray(fill, payloads.dtype)
    keep = _same_bytes(payloads) != _same_bytes(fill)[:, None]
    genes, rows = np.nonzero(keep)
    indptr = np.zeros(len(payloads) + 1, np.int64)
    np.cumsum(np.bincount(genes, minlength=len(payloads)), out=indptr[1:])
    return StoredCodes(payloads[keep], rows, indptr, fill)


def without_fill(stored: StoredCodes) -> StoredCodes:
    """``stored`` less the stored cells whose bytes equal their gene's fill (explicit zeros)."""
    counts = np.diff(stored.indptr)
    gene = np.repeat(np.arange(len(counts)), counts)
    keep = _same_bytes(stored.codes) != _same_bytes(stored.fill)[gene]
    if keep.all():
        return stored
    indptr = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(np.bincount(gene[keep], minlength=len(counts)), out=indptr[1:])
    return StoredCodes(stored.codes[keep], stored.indices[keep], indptr, stored.fill)


def encode_csc(
    data: np.ndarray,
    indices: np.ndarray,
    indptr: np.ndarray,
    n_cells: int,
    bits: Bits | None,
    rounding: Rounding = "nearest",
    *,
    one_row: bool = False,
) -> BlockPayloads:
    """Encode a canonical CSC block (sorted, no duplicate entries) without densifying it.

    Only the stored values are quantized; each gene's vector is prefilled with
    the code of zero, since a column with fewer stored values than cells has an
    implicit zero inside its bounds.

    Bounds are found for the whole block at once; codes are computed gene by
    gene, so the float64 temporaries stay the size of one gene's stored values
    (cache-resident) and a fully stored gene is copied instead of scattered.

    With ``one_row``, ``values`` is not filled: the result's
    :attr:`BlockPayloads.rows` writes each gene's codes (or float32 values)
    into one reused vector of ``n_cells``, so a block never holds all its
    genes' payloads at once (see :func:`encode_block`).
    """
    w = len(indptr) - 1
    indptr = np.asarray(indptr, dtype=np.int64)
    counts = np.diff(indptr)
    d32 = np.asarray(data, dtype=np.float32)
    finite: np.ndarray | None = None
    n_nonfinite = np.zeros(w, np.int64)
    if not (np.issubdtype(data.dtype, np.integer) or data.dtype == bool):
        finite = np.isfinite(d32)
        bad = np.flatnonzero(~finite)
        if bad.size:
            n_nonfinite = np.bincount(
                np.searchsorted(indptr, bad, side="right") - 1, minlength=w
            ).astype(np.int64)
        else:
            finite = None

    lo, hi = np.full(w, np.inf), np.full(w, -np.inf)
    nonempty = counts > 0
    if nonempty.any():
        starts = indptr[:-1][nonempty]
        lo_src = d32 if finite is None else np.where(finite, d32, np.inf)
        hi_src = d32 if finite is None else np.where(finite, d32, -np.inf)
        lo[nonempty] = np.minimum.reduceat(lo_src, starts)
        hi[nonempty] = np.maximum.reduceat(hi_src, starts)
    implicit_zero = counts < n_cells
    lo[implicit_zero] = np.minimum(lo[implicit_zero], 0.0)
    hi[implicit_zero] = np.maximum(hi[implicit_zero], 0.0)
    empty = ~np.isfinite(lo)
    lo[empty] = hi[empty] = np.nan

    size = int(counts.max(initial=0))  # the most stored values of one gene
    if bits is None:
        fill: list[Any] = [0.0] * w
        dtype = code_dtype(None)

        def values_of(k: int, a: int, b: int) -> np.ndarray:
            return d32[a:b]
    else:
        scale = _scales(lo, hi, bits)
        lo0 = np.nan_to_num(lo)
        fill = codes_for(np.zeros(w), lo0, scale, bits, rounding).tolist()  # the code of zero
        dtype = code_dtype(bits)
        marker = max_code(bits) + 1
        t_buf, c_buf = np.empty(size, np.float64), np.empty(size, dtype)
        has_bad = (n_nonfinite > 0).tolist()

        def values_of(k: int, a: int, b: int) -> np.ndarray:
            # one gene at a time, so the float64 temporaries stay in cache
            c = _codes_into(
                c_buf[: b - a], t_buf[: b - a], d32[a:b], lo0[k], scale[k], bits, rounding
            )
            if has_bad[k]:
                c[~finite[a:b]] = marker  # type: ignore[index]
            return c

    # NumPy scatters through an index of its own width (intp) about twice as
    # fast as through scipy's int32 indices, conversion included.
    index_buf = np.empty(size, np.intp)

    def payload_rows(
        out: np.ndarray, skip: np.ndarray | None = None
    ) -> Iterator[np.ndarray | None]:
        """Each gene's payload in turn, in ``out[k]`` (2-D) or in ``out`` itself (1-D)."""
        ptr = indptr.tolist()
        skipped = [False] * w if skip is None else np.asarray(skip, bool).tolist()
        for k in range(w):
            if skipped[k]:
                yield None
                continue
            row = out[k] if out.ndim == 2 else out
            a, b = ptr[k], ptr[k + 1]
            if b - a < n_cells:
                row.fill(fill[k])
            if a < b:
                if b - a == n_cells:  # every cell stored: canonical indices are 0..n-1
                    row[:] = values_of(k, a, b)
                else:
                    at = index_buf[: b - a]
                    np.copyto(at, indices[a:b])
                    row[at] = values_of(k, a, b)
            yield row

    def stored() -> StoredCodes:
        base = int(indptr[0])
        codes = np.empty(int(indptr[-1]) - base, dtype)
        ptr = indptr.tolist()
        for k in range(w):
            a, b = ptr[k], ptr[k + 1]
            if a < b:
                codes[a - base : b - base] = values_of(k, a, b)
        return StoredCodes(
            codes, np.asarray(indices[base : ptr[-1]]), indptr - base, np.asarray(fill, dtype)
        )

    if one_row:
        return BlockPayloads(
            None,
            lo,
            hi,
            n_nonfinite,
            lambda skip: payload_rows(np.empty(n_cells, dtype), skip),
            stored,
        )
    out = np.empty((w, n_cells), dtype)
    for _ in payload_rows(out):
        pass
    return BlockPayloads(out, lo, hi, n_nonfinite, _stored=stored)


def encode_block(
    block: Any, bits: Bits | None, rounding: Rounding = "nearest", *, one_row: bool = False
) -> BlockPayloads:
    """Encode one ``(n_cells, w)`` block, dense or any scipy.sparse format.

    ``one_row`` lets a sparse block be encoded one gene at a time into a
    single reused vector (:meth:`BlockPayloads.rows`): for a caller that
    compresses or writes each payload before drawing the next, the block's
    payloads are never all in memory (float32: 40 MiB per block task on
    100,000 cells x 100 genes).
    """
    if sp.issparse(block):
        csc = canonical_csc(block)
        return encode_csc(
            csc.data,
            csc.indices,
            csc.indptr,
            csc.shape[0],
            bits,
            rounding,
            one_row=one_row,
        )
    return encode_dense(np.asarray(block), bits, rounding)


def decode(codes: np.ndarray, lo: float, hi: float, bits: Bits) -> np.ndarray:
    """The viewer's decode: ``lo + code * (hi - lo) / max_code`` in float64, as float32.

    The missing marker decodes to NaN. ``lo``/``hi`` are the bounds as written
    in the manifest.
    """
    top = max_code(bits)
    # the spec's order, as the viewer's JavaScript evaluates it: the division last
    out = (lo + codes.astype(np.float64) * (hi - lo) / top).astype(np.float32)
    out[codes == top + 1] = np.nan
    return out
