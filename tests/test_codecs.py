"""gzip framing: the spec's fixed header, one member, any codec, read by the stdlib."""

from __future__ import annotations

import gzip
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dask_cellucid import InvalidOptionError
from dask_cellucid.codecs import GZIP_HEADER, available_codecs, gzip_member, resolve_codec

CODECS = available_codecs()


@pytest.mark.parametrize("codec", CODECS)
@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=5000), level=st.integers(1, 9))
def test_member_round_trips_through_stdlib_gzip(codec: str, data: bytes, level: int) -> None:
    member = gzip_member(data, level, codec)
    assert member[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" == GZIP_HEADER
    assert gzip.decompress(member) == data
    crc, isize = struct.unpack("<II", member[-8:])
    assert (crc, isize) == (zlib.crc32(data), len(data))
    # exactly one member: a raw inflater consumes the body and leaves only the trailer
    d = zlib.decompressobj(-15)
    d.decompress(member[10:])
    assert d.eof and d.unused_data == member[-8:]


def test_zlib_level6_is_byte_identical_to_python_gzip_without_name() -> None:
    data = np.random.default_rng(0).integers(0, 5, 10_000).astype(np.uint8).tobytes()
    ours = gzip_member(data, 6, "zlib")
    ref = gzip.compress(data, compresslevel=6, mtime=0)
    # Python stamps OS=255 since 3.11? compare bodies and trailers, and headers modulo OS
    assert ours[10:] == ref[10:]


def test_numpy_rows_are_accepted_without_copying() -> None:
    row = np.arange(1000, dtype="<u2")
    assert gzip.decompress(gzip_member(row, 6, CODECS[0])) == row.tobytes()


def test_codec_resolution() -> None:
    assert resolve_codec("auto") in ("libdeflate", "zlib")
    with pytest.raises(InvalidOptionError, match="not one of"):
        resolve_codec("brotli")
