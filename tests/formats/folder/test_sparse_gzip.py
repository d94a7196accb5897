"""formats/folder/sparse_gzip.py: gzip members written from the stored values alone.

Every member is checked against three inflaters (Python's gzip, zlib, libdeflate),
the project's strict reader, the spec's fixed header, CRC-32, ISIZE and the size
bound.
"""

from __future__ import annotations

import gzip
import heapq
import struct
import zlib

import deflate
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dask_cellucid import codecs
from dask_cellucid import deflate_kernels as sd
from dask_cellucid.formats.folder import kernels
from dask_cellucid.formats.folder import sparse_gzip as sg

DTYPES = [np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32)]
# fills with equal bytes (one literal per run, distance 1) and with distinct ones
# (itemsize literals, distance itemsize); for float32, 7.0 has 4 bytes 00 00 e0 40
FILLS = {
    np.dtype(np.uint8): [0, 7, 254],
    np.dtype(np.uint16): [0, 0x0101, 7, 40000],
    np.dtype(np.float32): [0.0, -0.0, 7.0],
}


def _dense(rows, codes, n_cells, fill, dtype) -> bytes:
    d = np.full(n_cells, fill, dtype)
    d[np.asarray(rows, np.intp)] = np.asarray(codes, dtype)
    return d.tobytes()


def _check(member: bytes, dense: bytes) -> None:
    """``member`` is one spec-conforming gzip member of exactly ``dense``."""
    assert member[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" == codecs.GZIP_HEADER
    assert gzip.decompress(member) == dense
    assert zlib.decompress(member, wbits=31) == dense
    assert bytes(deflate.gzip_decompress(member)) == dense  # libdeflate: a second inflater
    crc, isize = struct.unpack("<II", member[-8:])
    assert crc == zlib.crc32(dense)
    assert isize == len(dense) & 0xFFFFFFFF
    data, problems = codecs.inflate(member)
    assert data == dense
    assert problems == []
    # exactly one member: a raw inflater consumes the body and leaves only the trailer
    d = zlib.decompressobj(-15)
    d.decompress(member[10:])
    assert d.eof
    assert d.unused_data == member[-8:]
    assert len(member) <= sg.stored_size(len(dense))


def _encode(rows, codes, n_cells, fill, dtype) -> bytes:
    member = sg.gzip_member_sparse(
        np.asarray(rows, np.int64), np.asarray(codes, dtype), n_cells, fill
    )
    _check(member, _dense(rows, codes, n_cells, fill, dtype))
    return member


def _gene_from_runs(gaps, values):
    """Rows and codes of a gene: ``gaps[i]`` fill cells, then ``values[i]``; then ``gaps[-1]``."""
    rows, at = [], 0
    for g in gaps[:-1]:
        at += g
        rows.append(at)
        at += 1
    return np.array(rows, np.int64), np.asarray(values), at + gaps[-1]


# -- hypothesis: random genes ---------------------------------------------------------
RUN_LENGTHS = st.one_of(
    st.integers(0, 6),
    st.sampled_from([7, 8, 11, 12, 13, 63, 64, 65, 128, 129, 130, 131]),
    st.sampled_from([256, 257, 258, 259, 260, 261, 262, 515, 516, 517, 518, 774, 1000]),
    st.integers(0, 3000),
)


@st.composite
def genes(draw, dtype=None):
    dtype = draw(st.sampled_from(DTYPES)) if dtype is None else dtype
    fill = draw(st.sampled_from(FILLS[dtype]))
    n_values = draw(st.integers(0, 60))
    gaps = draw(st.lists(RUN_LENGTHS, min_size=n_values + 1, max_size=n_values + 1))
    if dtype.kind == "f":
        special = [fill, 0.0, -0.0, np.nan, np.inf, 1.5]
        pool = st.one_of(st.sampled_from(special), st.floats(width=32, allow_nan=False))
    else:
        top = np.iinfo(dtype).max  # the missing marker
        pool = st.one_of(st.sampled_from([fill, top, top - 1, 0, 1]), st.integers(0, top))
    values = draw(st.lists(pool, min_size=n_values, max_size=n_values))
    rows, codes, n_cells = _gene_from_runs(gaps, np.array(values, dtype))
    return rows, codes, n_cells, fill, dtype


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(gene=genes())
def test_random_genes_round_trip(gene) -> None:
    _encode(*gene)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(block=st.lists(genes(dtype=np.dtype(np.uint16)), min_size=1, max_size=6))
def test_a_block_is_its_genes_encoded_alone(block) -> None:
    """Every choice is per gene: the block a gene lands in never changes its bytes."""
    n_cells = max(g[2] for g in block)
    fills = [g[3] for g in block]
    counts = [len(g[0]) for g in block]
    rows = np.concatenate([g[0] for g in block])
    codes = np.concatenate([g[1] for g in block]).astype(np.uint16)
    indptr = np.r_[0, np.cumsum(counts)]
    members = sg.gzip_members_csc(codes, rows, indptr, n_cells, fills)
    assert len(members) == len(block)
    for k, (r, c, _, f, dt) in enumerate(block):
        assert members[k] == sg.gzip_member_sparse(r, c, n_cells, f)
        _check(members[k], _dense(r, c, n_cells, f, dt))


# -- the cases the issue names ----------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_no_stored_value(dtype) -> None:
    for n_cells in (0, 1, 2, 3, 4, 5, 257, 258, 259, 260, 100_000):
        for fill in FILLS[dtype]:
            _encode([], [], n_cells, fill, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_cell_stored(dtype) -> None:
    rng = np.random.default_rng(1)
    for n_cells in (1, 2, 3, 1000):
        codes = rng.integers(0, 200, n_cells).astype(dtype)
        _encode(np.arange(n_cells), codes, n_cells, FILLS[dtype][-1], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("run", [1, 2, 3, 4, 5, 257, 258, 259, 260, 261, 100_000])
def test_runs_of_each_length(dtype, run) -> None:
    one = np.asarray(1, dtype)
    for fill in FILLS[dtype]:
        # a run inside, at the start and at the end of the gene
        _encode([run], [one], 2 * run + 1, fill, dtype)
        _encode([0, run + 1], [one, one], run + 2, fill, dtype)
        _encode([run], [one], run + 1, fill, dtype)


def test_one_cell() -> None:
    for dtype in DTYPES:
        for fill in FILLS[dtype]:
            _encode([], [], 1, fill, dtype)
            _encode([0], [np.asarray(3, dtype)], 1, fill, dtype)


def test_missing_marker_and_fill_valued_codes() -> None:
    # the marker (255 / 65535) everywhere, and stored values equal to the fill
    for dtype, marker in ((np.dtype(np.uint8), 255), (np.dtype(np.uint16), 65535)):
        _encode(np.arange(500), np.full(500, marker), 500, 0, dtype)
        _encode(np.arange(0, 500, 3), np.full(167, marker), 500, 9, dtype)
        _encode(np.arange(0, 500, 3), np.full(167, 9), 500, 9, dtype)  # all equal the fill
        rows = np.arange(0, 500, 2)
        _encode(rows, np.where(rows % 4 == 0, 9, marker), 500, 9, dtype)


def test_one_symbol_only() -> None:
    """A code of one used symbol (plus end-of-block) must still be a complete code."""
    for dtype in DTYPES:
        one = np.asarray(5, dtype)
        _encode(np.arange(10_000), np.full(10_000, one), 10_000, 0, dtype)
        _encode([0], [one], 1, 0, dtype)
        _encode([], [], 300, FILLS[dtype][0], dtype)


def test_negative_minimum_gives_a_nonzero_fill() -> None:
    """With a negative minimum the code of zero is not 0: the runs repeat that code."""
    rng = np.random.default_rng(2)
    n_cells, n_genes = 5000, 4
    dense = np.where(rng.random((n_cells, n_genes)) < 0.1, rng.normal(0, 2, (n_cells, n_genes)), 0)
    dense[0, :] = -3.0  # a negative minimum in every gene
    csc = sp.csc_matrix(dense.astype(np.float32))
    for bits in (8, 16):
        payloads = kernels.encode_csc(csc.data, csc.indices, csc.indptr, n_cells, bits)
        lo0 = np.nan_to_num(payloads.lo)
        fill = kernels.codes_for(
            np.zeros(n_genes), lo0, kernels._scales(payloads.lo, payloads.hi, bits), bits, "nearest"
        )
        assert (fill > 0).all()
        gene = np.repeat(np.arange(n_genes), np.diff(csc.indptr))
        codes = payloads.values[gene, csc.indices]
        members = sg.gzip_members_csc(codes, csc.indices, csc.indptr, n_cells, fill)
        for k in range(n_genes):
            _check(members[k], payloads.values[k].tobytes())


def test_incompressible_values_fall_back_to_stored_blocks() -> None:
    rng = np.random.default_rng(3)
    for n_cells in (100, 65_535, 65_536, 140_000):
        codes = rng.integers(0, 256, n_cells).astype(np.uint8)
        member = _encode(np.arange(n_cells), codes, n_cells, 0, np.dtype(np.uint8))
        assert len(member) <= sg.stored_size(n_cells)


def test_float32_values_with_long_codes() -> None:
    """float32 values: four literals a value, codes up to 15 bits, fills 0.0 and 7.0."""
    rng = np.random.default_rng(4)
    n_cells = 20_000
    rows = np.sort(rng.choice(n_cells, 3000, replace=False))
    for fill in (0.0, 7.0):
        codes = rng.normal(0, 1, 3000).astype(np.float32)
        _encode(rows, codes, n_cells, fill, np.dtype(np.float32))


def test_dense_genes_of_many_short_runs() -> None:
    """Runs of 3..10 bytes of match, where the per-gene threshold choice matters."""
    rng = np.random.default_rng(5)
    n_cells = 30_000
    for itemsize_dtype, fill in ((np.uint8, 0), (np.uint16, 0x0102), (np.float32, 7.0)):
        gaps = rng.integers(0, 14, n_cells // 8)
        rows, _, n = _gene_from_runs([*gaps, 5], np.zeros(len(gaps)))
        codes = rng.integers(1, 250, len(rows)).astype(itemsize_dtype)
        _encode(rows, codes, n, fill, np.dtype(itemsize_dtype))


def test_rare_fill_bytes_split_a_run_into_literals_and_match_tokens() -> None:
    """Four distinct, rare fill bytes: a run's literals and its match need two tokens."""
    rng = np.random.default_rng(9)
    fill = np.frombuffer(b"\x01\x02\x03\x04", np.float32)[0]
    n_cells = 40_000
    # four runs of 60 elements: literals (4 rare bytes, 12+ bits each), then one
    # match of 236 bytes (a rare length code, 5 extra bits and the distance bit)
    run_starts = np.sort(rng.choice(np.arange(0, n_cells - 100, 100), 4, replace=False))
    in_run = np.zeros(n_cells, bool)
    for a in run_starts:
        in_run[a : a + 60] = True
    rows = np.flatnonzero(~in_run)
    # value bytes 5..254, skewed so that the rare symbols get long codes
    value_bytes = (5 + rng.random((len(rows), 4)) ** 2 * 250).astype(np.uint8)
    codes = value_bytes.view(np.float32).ravel()
    _encode(rows, codes, n_cells, fill, np.dtype(np.float32))


def test_sparse_matrix_block_matches_the_dense_payloads() -> None:
    """A realistic block: encode_csc's own payloads, gene by gene."""
    n_cells, n_genes = 20_000, 12
    x = sp.random(n_cells, n_genes, density=0.08, format="csc", dtype=np.float32, random_state=6)
    x.data = np.log1p(x.data * 10).astype(np.float32)
    x.data[x.indices < 50] = 0  # explicit zeros: stored values equal to the fill
    x = sp.csc_matrix(x.toarray() * (np.arange(n_genes) != 3))  # gene 3 empty
    x.sort_indices()
    for bits in (8, 16, None):
        payloads = kernels.encode_csc(x.data, x.indices, x.indptr, n_cells, bits)
        gene = np.repeat(np.arange(n_genes), np.diff(x.indptr))
        codes = payloads.values[gene, x.indices]
        if bits is None:
            fill = 0.0
        else:
            scale = kernels._scales(payloads.lo, payloads.hi, bits)
            fill = kernels.codes_for(
                np.zeros(n_genes), np.nan_to_num(payloads.lo), scale, bits, "nearest"
            )
        members = sg.gzip_members_csc(codes, x.indices, x.indptr, n_cells, fill)
        for k in range(n_genes):
            _check(members[k], payloads.values[k].tobytes())
        if bits is not None:  # smaller than libdeflate level 6 on the dense payloads
            ours = sum(map(len, members))
            ref = sum(len(codecs.gzip_member(r, 6, "libdeflate")) for r in payloads.values)
            assert ours < ref


def test_deterministic() -> None:
    rng = np.random.default_rng(7)
    rows = np.sort(rng.choice(50_000, 4000, replace=False))
    codes = rng.integers(0, 255, 4000).astype(np.uint8)
    a = sg.gzip_member_sparse(rows, codes, 50_000, 3)
    b = sg.gzip_member_sparse(rows.astype(np.int32), codes.copy(), 50_000, np.uint8(3))
    assert a == b


# -- input checks -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("rows", "n_cells"),
    [([3, 1], 10), ([1, 1], 10), ([0, 10], 10), ([-1], 10)],
    ids=["unsorted", "duplicate", "past the end", "negative"],
)
def test_bad_rows_are_refused(rows, n_cells) -> None:
    with pytest.raises(ValueError, match="sorted, distinct"):
        sg.gzip_member_sparse(np.array(rows), np.ones(len(rows), np.uint8), n_cells, 0)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="1, 2 or 4-byte"):
        sg.gzip_member_sparse(np.array([0]), np.array([1.0]), 3, 0.0)
    with pytest.raises(ValueError, match="indptr"):
        sg.gzip_members_csc(np.ones(2, np.uint8), np.arange(2), np.array([0, 3]), 5, 0)
    with pytest.raises(ValueError, match="cannot be a uint8"):
        sg.gzip_member_sparse(np.array([0]), np.ones(1, np.uint8), 3, 300)
    with pytest.raises(ValueError, match="fill has"):
        sg.gzip_members_csc(np.ones(2, np.uint8), np.arange(2), np.array([0, 2]), 5, [0, 0])
    with pytest.raises(ValueError, match="integers"):
        sg.gzip_member_sparse(np.array([0.0]), np.ones(1, np.uint8), 3, 0)
    assert sg.gzip_members_csc(np.ones(0, np.uint8), np.arange(0), np.array([0]), 5, 0) == []


# -- pieces -------------------------------------------------------------------------------
def _huffman(counts: list[int]) -> tuple[int, int]:
    """Total bits and depth of an optimal (unlimited) prefix code, by a heap."""
    heap = [(c, 0) for c in counts if c]  # (weight, height of the subtree)
    heapq.heapify(heap)
    cost = 0
    while len(heap) > 1:
        (a, ha), (b, hb) = heapq.heappop(heap), heapq.heappop(heap)
        cost += a + b
        heapq.heappush(heap, (a + b, max(ha, hb) + 1))
    return cost, heap[0][1]


def _code_lengths(counts: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """``(counts, lengths)``: at least two used symbols, then their 15-bit-limited code."""
    c = np.array(counts, np.int64)
    if (c > 0).sum() < 2:
        c[:2] += 1
    lengths = np.zeros(len(c), np.int64)
    sd.huffman_lengths(c, 15, lengths)
    return c, lengths


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 10_000), min_size=2, max_size=286))
def test_code_lengths_are_optimal_complete_and_limited(counts) -> None:
    counts, lengths = _code_lengths(counts)
    used = counts > 0
    assert ((lengths > 0) == used).all()
    assert lengths.max() <= 15
    assert sum(2.0 ** -int(x) for x in lengths[used]) == 1.0  # complete
    cost, depth = _huffman(counts.tolist())
    # a Huffman code where one fits in 15 bits (heaps may break ties into other
    # trees, never into other costs); when it does not, no better than Huffman's
    if depth <= 15:
        assert (lengths * counts).sum() == cost
    else:
        assert (lengths * counts).sum() >= cost


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=2, max_size=40))
def test_code_lengths_are_ordered_by_count_then_symbol(counts) -> None:
    """A commoner symbol never has a longer code; equal counts: the lower symbol's is longer."""
    counts, n = _code_lengths(counts)
    used = np.flatnonzero(counts)
    for i in used:
        for j in used:
            if counts[i] > counts[j] or (counts[i] == counts[j] and i > j):
                assert n[i] <= n[j]


def test_a_lone_symbol_gets_a_partner() -> None:
    """One used symbol: a second, unused one makes the code complete (two 1-bit codes)."""
    for lone in (0, 3):
        counts = np.zeros(5, np.int64)
        counts[lone] = 9
        lengths = np.full(5, 7, np.int64)
        sd.huffman_lengths(counts, 15, lengths)
        assert lengths[lone] == 1
        assert sorted(lengths.tolist()) == [0, 0, 0, 1, 1]


def test_code_lengths_are_limited_for_fibonacci_counts() -> None:
    fib = [1, 1]
    while len(fib) < 25:
        fib.append(fib[-1] + fib[-2])
    for limit in (7, 15):
        lengths = np.zeros(len(fib), np.int64)
        sd.huffman_lengths(np.array(fib, np.int64), limit, lengths)
        assert lengths.max() == limit
        assert sum(2.0 ** -int(x) for x in lengths) == 1.0
    # and a gene whose literals have those counts decodes
    codes = np.repeat(np.arange(25), fib).astype(np.uint8)
    np.random.default_rng(8).shuffle(codes)
    _encode(np.arange(len(codes)), codes, len(codes), 200, np.dtype(np.uint8))


def test_sparse_pays_follows_the_density_limit() -> None:
    assert sg.sparse_pays(0, 100)
    assert sg.sparse_pays(85, 100, 1)
    assert not sg.sparse_pays(86, 100, 1)
    assert sg.sparse_pays(85, 100, 2)
    assert not sg.sparse_pays(86, 100, 2)
    assert sg.sparse_pays(10, 100, 4)
    assert not sg.sparse_pays(11, 100, 4)
    assert sg.sparse_pays(0, 0)


def test_stored_size() -> None:
    assert sg.stored_size(0) == 23
    assert sg.stored_size(65_535) == 18 + 65_535 + 5
    assert sg.stored_size(65_536) == 18 + 65_536 + 10


def test_strided_inputs() -> None:
    """Views with a stride (a column of a 2-D array) are read as they are, not refused."""
    rng = np.random.default_rng(10)
    rows = np.sort(rng.choice(5_000, 300, replace=False))
    codes = rng.integers(1, 200, 300).astype(np.uint8)
    wide_rows = np.stack([rows, rows * 0]).T  # rows is column 0: stride 16 bytes
    wide_codes = np.stack([codes, codes]).T
    member = sg.gzip_member_sparse(wide_rows[:, 0], wide_codes[:, 0], 5_000, 0)
    assert member == sg.gzip_member_sparse(rows, codes, 5_000, 0)
    _check(member, _dense(rows, codes, 5_000, 0, np.uint8))
