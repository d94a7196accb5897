"""Raw deflate streams of sparse genes, written from their stored values (compiled).

The loops of :mod:`.sparse_gzip`: per gene, the symbol counts, a
length-limited Huffman code, the dynamic-block header and the bit stream,
each in work proportional to the gene's stored values (plus a fixed ~300
symbols of code tables), never to ``n_cells``. Compiled with numba
(``nogil``, so the writer's threads run them in parallel; ``cache``, so a
process loads the machine code from disk instead of compiling it again).

Inputs are bytes: ``payload`` is the stored values' little-endian bytes,
``itemsize`` bytes a value, and ``fill`` the bytes of each gene's fill
element (the code of zero). Nothing here knows gzip, Dask or storage.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["deflate_genes", "huffman_lengths"]

# -- deflate constants (RFC 1951) ------------------------------------------------------
N_LITLEN = 286  # literal/length symbols 0..285
EOB = 256
MAX_BITS = 15
MAX_CL_BITS = 7
MAX_MATCH = 258
MIN_MATCH = 3
STORED_MAX = 65535
#: A run of fill bytes becomes literals + matches when its match part is at
#: least this long; one of these per gene, the one giving the fewest bits.
RUN_MATCH_CANDIDATES = np.array([3, 4, 6, 8, 11], np.int64)
CL_ORDER = np.array([16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15], np.int64)

_len_extra = np.array([0] * 8 + [1] * 4 + [2] * 4 + [3] * 4 + [4] * 4 + [5] * 4 + [0])
_len_base = np.r_[3 + np.cumsum(np.r_[0, 1 << _len_extra[:27]]), 258]
_len_idx = (np.searchsorted(_len_base, np.arange(MAX_MATCH + 1), side="right") - 1).clip(0)
#: Per match length 0..258 (3..258 used): its symbol, extra-bit count and value.
LEN_SYM = (257 + _len_idx).astype(np.int64)
LEN_NEXTRA = _len_extra[_len_idx].astype(np.int64)
LEN_XVAL = (np.arange(MAX_MATCH + 1) - _len_base[_len_idx]).clip(0).astype(np.int64)
#: Distance code per period (1, 2 or 4 bytes); all three have no extra bits.
DIST_CODE = np.array([-1, 0, 1, -1, 3], np.int64)


# -- Huffman codes -------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def huffman_lengths(counts: np.ndarray, max_bits: int, lengths: np.ndarray) -> None:
    """Optimal code lengths of ``counts``, limited to ``max_bits``, into ``lengths``.

    The code is always complete: a symbol set of one gets a second, unused
    symbol (a strict inflater refuses an incomplete literal/length code).
    Ties are broken by symbol, so the lengths depend on the counts alone.
    """
    n_sym = len(counts)
    lengths[:] = 0
    # one key per used symbol, (count, symbol) in one number: sorted, they
    # give the symbols by weight, ties by symbol, whatever the sort
    keys = np.empty(n_sym, np.int64)
    n = 0
    for i in range(n_sym):
        if counts[i] > 0:
            keys[n] = counts[i] * n_sym + i
            n += 1
    i = 0
    while n < 2:  # pad with the first unused symbols, weight 0
        if counts[i] <= 0:
            keys[n] = i
            n += 1
        i += 1
    keys = keys[:n]
    _shell_sort(keys)
    a = keys // n_sym
    _moffat_katajainen(a, n)
    # a[i] is now the depth of the i-th lightest symbol (non-increasing in i)
    bl = np.zeros(max(n, max_bits) + 1, np.int64)
    for i in range(n):
        bl[a[i]] += 1
    if a[0] > max_bits:  # push the deep leaves up, then pay the Kraft excess back
        for d in range(max_bits + 1, len(bl)):
            bl[max_bits] += bl[d]
            bl[d] = 0
        total = 0
        for d in range(1, max_bits + 1):
            total += bl[d] << (max_bits - d)
        while total != 1 << max_bits:
            bl[max_bits] -= 1
            for d in range(max_bits - 1, 0, -1):
                if bl[d] > 0:
                    bl[d] -= 1
                    bl[d + 1] += 2
                    break
            total -= 1
    pos = 0
    for d in range(max_bits, 0, -1):
        for _ in range(bl[d]):
            lengths[keys[pos] % n_sym] = d
            pos += 1


@njit(cache=True, nogil=True)
def _shell_sort(a: np.ndarray) -> None:
    """Sort ``a`` in place (Ciura's gaps): at most 286 keys here, where it beats a quicksort
    and compiles in a fraction of the time of ``np.argsort``."""
    for gap in (132, 57, 23, 10, 4, 1):
        for i in range(gap, len(a)):
            v = a[i]
            j = i
            while j >= gap and a[j - gap] > v:
                a[j] = a[j - gap]
                j -= gap
            a[j] = v


@njit(cache=True, nogil=True)
def _moffat_katajainen(a: np.ndarray, n: int) -> None:
    """In place: ascending weights ``a[:n]`` (n >= 2) become their Huffman code lengths.

    Moffat and Katajainen, "In-place calculation of minimum-redundancy codes" (1995).
    """
    a[0] += a[1]
    root = 0
    leaf = 2
    for nxt in range(1, n - 1):
        if leaf >= n or a[root] < a[leaf]:
            a[nxt] = a[root]
            a[root] = nxt
            root += 1
        else:
            a[nxt] = a[leaf]
            leaf += 1
        if leaf >= n or (root < nxt and a[root] < a[leaf]):
            a[nxt] += a[root]
            a[root] = nxt
            root += 1
        else:
            a[nxt] += a[leaf]
            leaf += 1
    a[n - 2] = 0
    for nxt in range(n - 3, -1, -1):
        a[nxt] = a[a[nxt]] + 1
    avbl = 1
    used = 0
    depth = 0
    root = n - 2
    nxt = n - 1
    while avbl > 0:
        while root >= 0 and a[root] == depth:
            used += 1
            root -= 1
        while avbl > used:
            a[nxt] = depth
            nxt -= 1
            avbl -= 1
        avbl = 2 * used
        depth += 1
        used = 0


@njit(cache=True, nogil=True)
def _reversed_codes(lengths: np.ndarray, codes: np.ndarray) -> None:
    """Canonical codes of ``lengths`` (RFC 1951 3.2.2), bit-reversed for LSB-first packing."""
    bl = np.zeros(MAX_BITS + 2, np.int64)
    for i in range(len(lengths)):
        bl[lengths[i]] += 1
    bl[0] = 0
    nxt = np.zeros(MAX_BITS + 2, np.int64)
    code = 0
    for b in range(1, MAX_BITS + 1):
        code = (code + bl[b - 1]) << 1
        nxt[b] = code
    for i in range(len(lengths)):
        n = lengths[i]
        if n:
            c = nxt[n]
            nxt[n] += 1
            r = 0
            for _ in range(n):
                r = (r << 1) | (c & 1)
                c >>= 1
            codes[i] = r
        else:
            codes[i] = 0


# -- the header -------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _rle_code_lengths(seq: np.ndarray, n: int, sym: np.ndarray, xval: np.ndarray) -> int:
    """Code lengths ``seq[:n]`` as code-length symbols (16, 17, 18 for runs); their count."""
    i = 0
    k = 0
    while i < n:
        v = seq[i]
        run = 1
        while i + run < n and seq[i + run] == v:
            run += 1
        i += run
        if v == 0:
            while run >= 11:
                r = min(run, 138)
                sym[k] = 18
                xval[k] = r - 11
                k += 1
                run -= r
            if run >= 3:
                sym[k] = 17
                xval[k] = run - 3
                k += 1
                run = 0
        else:
            sym[k] = v
            xval[k] = 0
            k += 1
            run -= 1
            while run >= 3:
                r = min(run, 6)
                sym[k] = 16
                xval[k] = r - 3
                k += 1
                run -= r
        while run > 0:
            sym[k] = v
            xval[k] = 0
            k += 1
            run -= 1
    return k


@njit(cache=True, nogil=True, inline="always")
def _cl_extra_bits(s: int) -> int:
    if s == 16:
        return 2
    if s == 17:
        return 3
    if s == 18:
        return 7
    return 0


@njit(cache=True, nogil=True)
def _header(
    lit_len: np.ndarray,
    dist_len: np.ndarray,
    seq: np.ndarray,
    cl_sym: np.ndarray,
    cl_xval: np.ndarray,
    cl_len: np.ndarray,
) -> tuple[int, int, int, int, int]:
    """Plan a dynamic header: ``(bits, hlit, hdist, hclen, n_cl_symbols)``.

    Fills ``seq`` (the lengths sent), ``cl_sym``/``cl_xval`` (them run-length
    coded) and ``cl_len`` (the code-length code's lengths).
    """
    hlit = 257
    for i in range(N_LITLEN - 1, 256, -1):
        if lit_len[i]:
            hlit = i + 1
            break
    hdist = 1
    for i in range(len(dist_len) - 1, -1, -1):
        if dist_len[i]:
            hdist = i + 1
            break
    for i in range(hlit):
        seq[i] = lit_len[i]
    for i in range(hdist):
        seq[hlit + i] = dist_len[i]
    n_cl = _rle_code_lengths(seq, hlit + hdist, cl_sym, cl_xval)
    cl_counts = np.zeros(19, np.int64)
    for i in range(n_cl):
        cl_counts[cl_sym[i]] += 1
    huffman_lengths(cl_counts, MAX_CL_BITS, cl_len)
    hclen = 4
    for i in range(18, 3, -1):
        if cl_len[CL_ORDER[i]]:
            hclen = i + 1
            break
    bits = 3 + 5 + 5 + 4 + 3 * hclen
    for i in range(n_cl):
        bits += cl_len[cl_sym[i]] + _cl_extra_bits(cl_sym[i])
    return bits, hlit, hdist, hclen, n_cl


# -- symbol counts --------------------------------------------------------------------------
# Hot loops keep their tallies in local variables and index arrays in their own
# body: a call that takes an array costs a reference-count update (an atomic
# add), which at one call per stored value made numba's code slower than NumPy's.
@njit(cache=True, nogil=True)
def _base_counts(
    payload: np.ndarray,
    rows: np.ndarray,
    a: int,
    b: int,
    n_cells: int,
    fill: np.ndarray,
    period: int,
    counts: np.ndarray,
    short_runs: np.ndarray,
) -> tuple[int, int]:
    """Counts every candidate threshold shares; ``(matches, extra bits)``.

    The stored values' literals, the runs too short for a match under any
    candidate (literals) and the runs long enough under all (matches). Runs
    whose match part ``m`` is 3..10 bytes are tallied in ``short_runs[m]``.
    ``(-1, -1)`` when the rows are not sorted, distinct and in ``0..n_cells-1``.
    """
    s = len(fill)
    counts[:] = 0
    short_runs[:] = 0
    n_match = 0  # matches, 258-byte ones included
    n_full = 0  # 258-byte matches
    xbits = 0
    literal_bytes = 0  # fill bytes in all-literal runs (whole elements)
    n_runs = 0  # runs with matches: each starts with ``period`` literal bytes
    prev = -1
    for i in range(a, b + 1):
        r = rows[i] if i < b else n_cells
        if r <= prev or r > n_cells:
            return -1, -1
        gap = (r - prev - 1) * s
        prev = r
        if gap:
            m = gap - period
            if m >= 11:
                n_runs += 1
                q = m // MAX_MATCH
                rem = m - q * MAX_MATCH
                if rem == 0:
                    n_full += q
                    n_match += q
                elif rem >= MIN_MATCH:
                    n_full += q
                    n_match += q + 1
                    counts[LEN_SYM[rem]] += 1
                    xbits += LEN_NEXTRA[rem]
                else:  # 259 = 256 + 3, 260 = 257 + 3
                    first = MAX_MATCH + rem - MIN_MATCH
                    n_full += q - 1
                    n_match += q + 1
                    counts[LEN_SYM[first]] += 1
                    counts[LEN_SYM[MIN_MATCH]] += 1
                    xbits += LEN_NEXTRA[first] + LEN_NEXTRA[MIN_MATCH]
            elif m >= MIN_MATCH:
                short_runs[m] += 1
            else:
                literal_bytes += gap
        if i < b:
            if s == 1:
                counts[payload[i]] += 1
            else:
                for j in range(i * s, i * s + s):
                    counts[payload[j]] += 1
    counts[EOB] += 1
    counts[285] += n_full
    if period == 1:
        counts[fill[0]] += literal_bytes + n_runs
    else:
        for j in range(s):
            counts[fill[j]] += literal_bytes // s + n_runs
    return n_match, xbits


@njit(cache=True, nogil=True)
def _threshold_counts(
    base: np.ndarray,
    short_runs: np.ndarray,
    fill: np.ndarray,
    period: int,
    threshold: int,
    counts: np.ndarray,
) -> tuple[int, int]:
    """``base`` plus the short runs under ``threshold``; ``(more matches, more extra bits)``."""
    counts[:] = base
    n_match = 0
    xbits = 0
    for m in range(MIN_MATCH, 11):
        h = short_runs[m]
        if h == 0:
            continue
        if m >= threshold:
            for j in range(period):
                counts[fill[j]] += h
            counts[LEN_SYM[m]] += h
            n_match += h
            xbits += h * LEN_NEXTRA[m]
        elif period == 1:
            counts[fill[0]] += h * (m + 1)
        else:
            for j in range(len(fill)):
                counts[fill[j]] += h * ((m + period - j + len(fill) - 1) // len(fill))
    return n_match, xbits


@njit(cache=True, nogil=True)
def _estimated_bits(counts: np.ndarray) -> float:
    """Entropy of ``counts`` in bits: what an optimal code spends on them, near enough."""
    total = 0
    for i in range(len(counts)):
        total += counts[i]
    bits = 0.0
    for i in range(len(counts)):
        c = counts[i]
        if c:
            bits += c * np.log2(total / c)
    return bits


@njit(cache=True, nogil=True)
def _choose_threshold(
    base: np.ndarray, short_runs: np.ndarray, fill: np.ndarray, period: int, counts: np.ndarray
) -> int:
    """The candidate threshold whose symbols have the least estimated size (first if tied)."""
    best_t = RUN_MATCH_CANDIDATES[0]
    best = -1.0
    last_sig = -1
    for c in range(len(RUN_MATCH_CANDIDATES)):
        t = RUN_MATCH_CANDIDATES[c]
        sig = 0  # candidates that treat every short run alike give the same symbols
        for m in range(t, 11):
            sig += short_runs[m]
        if sig == last_sig:
            continue
        if last_sig == -1 and sig == 0:
            return t  # no short run at all
        last_sig = sig
        n_match, xbits = _threshold_counts(base, short_runs, fill, period, t, counts)
        bits = _estimated_bits(counts) + xbits + n_match
        if best < 0 or bits < best:
            best = bits
            best_t = t
    return best_t


@njit(cache=True, nogil=True)
def _plan_gene(
    payload: np.ndarray,
    rows: np.ndarray,
    a: int,
    b: int,
    n_cells: int,
    fill: np.ndarray,
    work: tuple,
    lit_len: np.ndarray,
) -> tuple[int, int]:
    """A gene's run threshold and literal/length code (into ``lit_len``); ``(threshold, bytes)``.

    Threshold -1: stored blocks are smaller. -2: the rows are not sorted,
    distinct and in ``0..n_cells-1``.
    """
    base, counts, short_runs, dist_len, seq, cl_sym, cl_xval, cl_len = work
    period = _period(fill)
    n_match, xbits = _base_counts(payload, rows, a, b, n_cells, fill, period, base, short_runs)
    if n_match < 0:
        return -2, 0
    t = _choose_threshold(base, short_runs, fill, period, counts)
    more_match, more_xbits = _threshold_counts(base, short_runs, fill, period, t, counts)
    huffman_lengths(counts, MAX_BITS, lit_len)
    _distance_lengths(period, dist_len)
    bits, _, _, _, _ = _header(lit_len, dist_len, seq, cl_sym, cl_xval, cl_len)
    bits += xbits + more_xbits + n_match + more_match  # one-bit distance codes
    for i in range(N_LITLEN):
        bits += counts[i] * lit_len[i]
    stored = stored_blocks_size(n_cells * len(fill))
    dynamic = (bits + 7) // 8
    if dynamic <= stored:
        return t, dynamic
    return -1, stored


@njit(cache=True, nogil=True)
def stored_blocks_size(n_bytes: int) -> int:
    """Bytes of ``n_bytes`` as stored blocks: 5 bytes of block header per 65,535 bytes."""
    return n_bytes + 5 * max(1, (n_bytes + STORED_MAX - 1) // STORED_MAX)


@njit(cache=True, nogil=True, inline="always")
def _period(fill: np.ndarray) -> int:
    """1 when the fill element's bytes are all equal (distance-1 matches), else its size."""
    for j in range(1, len(fill)):
        if fill[j] != fill[0]:
            return len(fill)
    return 1


@njit(cache=True, nogil=True)
def _distance_lengths(period: int, dist_len: np.ndarray) -> None:
    """A complete distance code: the period's code and one unused partner, one bit each."""
    dist_len[:] = 0
    code = DIST_CODE[period]
    dist_len[code] = 1
    dist_len[1 if code == 0 else 0] = 1


# -- one gene: the bits ----------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _write_dynamic(
    payload: np.ndarray,
    rows: np.ndarray,
    a: int,
    b: int,
    n_cells: int,
    fill: np.ndarray,
    threshold: int,
    lit_len: np.ndarray,
    work: tuple,
    out: np.ndarray,
    pos: int,
) -> int:
    """Write one gene's dynamic block at ``out[pos:]``; return the end position."""
    _, _, _, dist_len, seq, cl_sym, cl_xval, cl_len = work
    s = len(fill)
    period = _period(fill)
    _distance_lengths(period, dist_len)
    _, hlit, hdist, hclen, n_cl = _header(lit_len, dist_len, seq, cl_sym, cl_xval, cl_len)
    lit_code = np.empty(N_LITLEN, np.int64)
    _reversed_codes(lit_len, lit_code)
    dist_code = np.empty(len(dist_len), np.int64)
    _reversed_codes(dist_len, dist_code)
    cl_code = np.empty(19, np.int64)
    _reversed_codes(cl_len, cl_code)

    # An inner function, so numba inlines it with ``out`` as a local: a call
    # to a module-level one would update the array's reference count each time.
    def put(pos: int, acc: np.uint64, n_acc: int, value: int, n: int) -> tuple:
        """Append the ``n <= 32`` low bits of ``value``, LSB first; store 32 bits at a time."""
        acc |= np.uint64(value) << np.uint64(n_acc)
        n_acc += n
        if n_acc >= 32:
            out[pos] = acc & np.uint64(0xFF)
            out[pos + 1] = (acc >> np.uint64(8)) & np.uint64(0xFF)
            out[pos + 2] = (acc >> np.uint64(16)) & np.uint64(0xFF)
            out[pos + 3] = (acc >> np.uint64(24)) & np.uint64(0xFF)
            pos += 4
            acc >>= np.uint64(32)
            n_acc -= 32
        return pos, acc, n_acc

    acc = np.uint64(0)
    n_acc = 0
    # BFINAL=1, BTYPE=10 (dynamic), HLIT, HDIST, HCLEN
    head = 1 | (2 << 1) | ((hlit - 257) << 3) | ((hdist - 1) << 8) | ((hclen - 4) << 13)
    pos, acc, n_acc = put(pos, acc, n_acc, head, 17)
    for i in range(hclen):
        pos, acc, n_acc = put(pos, acc, n_acc, cl_len[CL_ORDER[i]], 3)
    for i in range(n_cl):
        c = cl_sym[i]
        v = cl_code[c] | (cl_xval[i] << cl_len[c])
        pos, acc, n_acc = put(pos, acc, n_acc, v, cl_len[c] + _cl_extra_bits(c))

    # a match as one token: its length code, extra bits and distance code
    dc = DIST_CODE[period]
    match_val = np.empty(MAX_MATCH + 1, np.int64)
    match_len = np.empty(MAX_MATCH + 1, np.int64)
    for ln in range(MIN_MATCH, MAX_MATCH + 1):
        sy = LEN_SYM[ln]
        nx = LEN_NEXTRA[ln]
        match_val[ln] = (
            lit_code[sy] | (LEN_XVAL[ln] << lit_len[sy]) | (dist_code[dc] << (lit_len[sy] + nx))
        )
        match_len[ln] = lit_len[sy] + nx + dist_len[dc]
    full_val, full_len = match_val[MAX_MATCH], match_len[MAX_MATCH]
    f0_val, f0_len = lit_code[fill[0]], lit_len[fill[0]]

    prev = -1
    for i in range(a, b + 1):
        r = rows[i] if i < b else n_cells
        gap = (r - prev - 1) * s
        prev = r
        if gap:
            m = gap - period
            if m >= threshold:
                for j in range(period):
                    pos, acc, n_acc = put(pos, acc, n_acc, lit_code[fill[j]], lit_len[fill[j]])
                q = m // MAX_MATCH
                rem = m - q * MAX_MATCH
                if 0 < rem < MIN_MATCH:  # 259 = 256 + 3, 260 = 257 + 3
                    q -= 1
                    first = MAX_MATCH + rem - MIN_MATCH
                    pos, acc, n_acc = put(pos, acc, n_acc, match_val[first], match_len[first])
                    rem = MIN_MATCH
                for _ in range(q):
                    pos, acc, n_acc = put(pos, acc, n_acc, full_val, full_len)
                if rem:
                    pos, acc, n_acc = put(pos, acc, n_acc, match_val[rem], match_len[rem])
            elif period == 1:
                for _ in range(gap):
                    pos, acc, n_acc = put(pos, acc, n_acc, f0_val, f0_len)
            else:
                for j in range(gap):
                    pos, acc, n_acc = put(
                        pos, acc, n_acc, lit_code[fill[j % s]], lit_len[fill[j % s]]
                    )
        if i < b:
            for j in range(i * s, i * s + s):
                pos, acc, n_acc = put(pos, acc, n_acc, lit_code[payload[j]], lit_len[payload[j]])
    pos, acc, n_acc = put(pos, acc, n_acc, lit_code[EOB], lit_len[EOB])
    while n_acc > 0:
        out[pos] = acc & np.uint64(0xFF)
        pos += 1
        acc >>= np.uint64(8)
        n_acc -= 8
    return pos


@njit(cache=True, nogil=True)
def _write_stored(
    payload: np.ndarray,
    rows: np.ndarray,
    a: int,
    b: int,
    n_cells: int,
    fill: np.ndarray,
    dense: np.ndarray,
    out: np.ndarray,
    pos: int,
) -> int:
    """Write one gene's dense bytes as stored blocks at ``out[pos:]``; return the end."""
    s = len(fill)
    n_bytes = n_cells * s
    for j in range(n_bytes):
        dense[j] = fill[j % s]
    for i in range(a, b):
        for j in range(s):
            dense[rows[i] * s + j] = payload[i * s + j]
    start = 0
    while True:
        size = min(STORED_MAX, n_bytes - start)
        final = start + size >= n_bytes
        out[pos] = 1 if final else 0
        out[pos + 1] = size & 0xFF
        out[pos + 2] = size >> 8
        out[pos + 3] = (~size) & 0xFF
        out[pos + 4] = ((~size) >> 8) & 0xFF
        pos += 5
        out[pos : pos + size] = dense[start : start + size]
        pos += size
        start += size
        if final:
            return pos


@njit(cache=True, nogil=True)
def deflate_genes(
    payload: np.ndarray, rows: np.ndarray, indptr: np.ndarray, n_cells: int, fills: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each gene's raw deflate stream; ``(buffer, offsets)``, gene ``k`` at ``offsets[k:k+2]``.

    Parameters
    ----------
    payload
        uint8: the stored values' little-endian bytes, gene after gene
        (``itemsize = fills.shape[1]`` bytes a value).
    rows
        int64: the stored values' rows, sorted and distinct within a gene.
    indptr
        int64, ``n_genes + 1`` offsets into ``rows``.
    n_cells
        Each gene's length.
    fills
        uint8, ``(n_genes, itemsize)``: the bytes of each gene's fill element.

    The offsets are ``-1`` (and the buffer empty) when some gene's rows are
    not sorted, distinct and within ``0..n_cells-1``.
    """
    n_genes = len(indptr) - 1
    s = fills.shape[1]
    work = (
        np.empty(N_LITLEN, np.int64),  # base counts
        np.empty(N_LITLEN, np.int64),  # counts
        np.zeros(11, np.int64),  # short runs by match bytes
        np.zeros(4, np.int64),  # distance code lengths
        np.zeros(N_LITLEN + 4, np.int64),  # the lengths sent
        np.zeros(N_LITLEN + 4, np.int64),  # code-length symbols
        np.zeros(N_LITLEN + 4, np.int64),  # their extra values
        np.zeros(19, np.int64),  # code-length code lengths
    )
    thresholds = np.empty(n_genes, np.int64)
    lit_lens = np.zeros((n_genes, N_LITLEN), np.int64)
    offsets = np.zeros(n_genes + 1, np.int64)
    for k in range(n_genes):
        t, size = _plan_gene(
            payload, rows, indptr[k], indptr[k + 1], n_cells, fills[k], work, lit_lens[k]
        )
        if t == -2:
            return np.empty(0, np.uint8), np.full(n_genes + 1, -1, np.int64)
        thresholds[k] = t
        offsets[k + 1] = offsets[k] + size
    out = np.empty(offsets[n_genes], np.uint8)
    dense = np.empty(0, np.uint8)
    for k in range(n_genes):
        a, b = indptr[k], indptr[k + 1]
        if thresholds[k] >= 0:
            end = _write_dynamic(
                payload,
                rows,
                a,
                b,
                n_cells,
                fills[k],
                thresholds[k],
                lit_lens[k],
                work,
                out,
                offsets[k],
            )
        else:
            if len(dense) == 0:
                dense = np.empty(n_cells * s, np.uint8)
            end = _write_stored(payload, rows, a, b, n_cells, fills[k], dense, out, offsets[k])
        if end != offsets[k + 1]:
            raise AssertionError("a deflate stream is not the size its plan gave")  # noqa: EM101 (numba: a constant)
    return out, offsets
