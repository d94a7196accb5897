"""deflate_kernels.deflate_literals: a raw deflate stream of literals only (the store's float chunks).

Checked with two inflaters (zlib, libdeflate) on hypothesis-drawn bytes, and
against the stored-block bound; the sparse-gene encoder of the same module is
tested in tests/formats/folder/test_sparse_gzip.py.
"""

from __future__ import annotations

import zlib

import deflate
import numpy as np
from dask_cellucid.deflate_kernels import deflate_literals
from hypothesis import given, settings
from hypothesis import strategies as st


def _inflate_both(stream: bytes, n: int) -> bytes:
    a = zlib.decompress(stream, wbits=-15)
    assert bytes(deflate.deflate_decompress(stream, n)) == a
    return a


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=5_000),
        st.lists(st.sampled_from([0, 1, 7, 255]), max_size=5_000).map(bytes),
        st.integers(0, 200_000).map(lambda n: b"\x00" * n),
    )
)
def test_literals_round_trip(data: bytes) -> None:
    stream = deflate_literals(data)
    assert _inflate_both(stream, len(data)) == data
    # never larger than stored blocks: 5 bytes a 65,535-byte block
    assert len(stream) <= len(data) + 5 * max(1, -(-len(data) // 65_535))


def test_float_values_compress_like_a_searching_encoder() -> None:
    """Continuous floats: literals alone come within 1 % of libdeflate level 6."""
    rng = np.random.default_rng(0)
    values = np.log1p(rng.geometric(0.3, 65_536) * rng.uniform(0.5, 2, 65_536))
    raw = values.astype(np.float32).tobytes()
    ours = deflate_literals(raw)
    assert _inflate_both(ours, len(raw)) == raw
    assert len(ours) < len(raw)
    assert len(ours) <= 1.01 * len(deflate.deflate_compress(raw, 6))


def test_uniform_bytes_are_stored() -> None:
    raw = bytes(range(256)) * 1_000  # every byte equally common: Huffman saves nothing
    stream = deflate_literals(raw)
    assert stream[0] & 0b110 == 0  # BTYPE 00: stored
    assert _inflate_both(stream, len(raw)) == raw
