"""The pure block kernels, tested without Dask or storage (spec section 2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dask_cellucid.formats.folder import kernels

BITS = [8, 16]


def _finite_bounds(col: np.ndarray) -> tuple[float, float]:
    f = col[np.isfinite(col)].astype(np.float64)
    return (float(f.min()), float(f.max())) if f.size else (np.nan, np.nan)


values = st.one_of(
    st.floats(-1e6, 1e6, width=32),
    st.sampled_from([0.0, np.nan, np.inf, -np.inf, 1.0, -2.5]),
)
blocks = hnp.arrays(
    np.float32,
    st.tuples(st.integers(1, 40), st.integers(1, 6)),
    elements=values,
)


@pytest.mark.parametrize("bits", BITS)
@settings(max_examples=150, deadline=None)
@given(x=blocks)
def test_nearest_decodes_within_half_a_step(x: np.ndarray, bits: int) -> None:
    out = kernels.encode_dense(x, bits, "nearest")
    top = kernels.max_code(bits)
    for k in range(x.shape[1]):
        col = x[:, k]
        lo, hi = _finite_bounds(col)
        assert (np.isnan(out.lo[k]) and np.isnan(lo)) or (out.lo[k], out.hi[k]) == (lo, hi)
        codes = out.values[k]
        finite = np.isfinite(col)
        # NaN, +Inf, -Inf -> the marker; finite -> a code in [0, top]
        assert (codes[~finite] == top + 1).all()
        assert (codes[finite] <= top).all()
        assert out.n_nonfinite[k] == (~finite).sum()
        if not finite.any():
            continue
        if lo == hi:
            assert (codes[finite] == 0).all()
            continue
        decoded = kernels.decode(codes, lo, hi, bits).astype(np.float64)
        step = (hi - lo) / top
        err = np.abs(decoded[finite] - col[finite].astype(np.float64))
        # half a step, plus float32 rounding of the decoded value
        slack = np.abs(decoded[finite]) * 2**-23 + 1e-300
        assert (err <= step / 2 + slack).all()


@pytest.mark.parametrize("bits", BITS)
@settings(max_examples=100, deadline=None)
@given(x=blocks)
def test_floor_is_never_above_and_within_one_step(x: np.ndarray, bits: int) -> None:
    out = kernels.encode_dense(x, bits, "floor")
    top = kernels.max_code(bits)
    for k in range(x.shape[1]):
        col, codes = x[:, k], out.values[k]
        finite = np.isfinite(col)
        lo, hi = _finite_bounds(col)
        if not finite.any() or lo == hi:
            continue
        decoded = kernels.decode(codes, lo, hi, bits).astype(np.float64)
        step = (hi - lo) / top
        v = col[finite].astype(np.float64)
        slack = np.abs(decoded[finite]) * 2**-23 + step * 1e-6
        assert (decoded[finite] <= v + slack).all()
        assert (v - decoded[finite] < step + slack).all()


@st.composite
def sparse_like_blocks(draw: st.DrawFn) -> np.ndarray:
    """Small float blocks with a random share of zeros (implicit in sparse form)."""
    shape = st.tuples(st.integers(1, 30), st.integers(1, 6))
    x = draw(hnp.arrays(np.float32, shape, elements=values)).copy()
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x[rng.random(x.shape) < draw(st.floats(0, 1))] = 0  # zeros inside and outside the bounds
    x[x == 0] = 0  # -0.0 has no sparse form: scipy drops it like any zero
    return x


def _assert_same_bounds(got: kernels.BlockPayloads, want: kernels.BlockPayloads) -> None:
    np.testing.assert_array_equal(got.lo, want.lo)
    np.testing.assert_array_equal(got.hi, want.hi)
    np.testing.assert_array_equal(got.n_nonfinite, want.n_nonfinite)


@pytest.mark.parametrize("bits", [None, 8, 16])
@settings(max_examples=150, deadline=None)
@given(x=sparse_like_blocks())
def test_sparse_path_gives_the_dense_path_bytes(x, bits) -> None:
    dense = kernels.encode_dense(x, bits)
    for fmt in ("csr", "csc", "coo"):
        got = kernels.encode_block(sp.coo_matrix(x).asformat(fmt), bits)
        assert got.values.tobytes() == dense.values.tobytes()
        _assert_same_bounds(got, dense)


@pytest.mark.parametrize("bits", [8, 16, None])
@settings(max_examples=100, deadline=None)
@given(x=sparse_like_blocks())
def test_one_row_at_a_time_gives_each_gene_the_block_bytes(x, bits) -> None:
    whole = kernels.encode_block(sp.csc_matrix(x), bits)
    streamed = kernels.encode_block(sp.csr_matrix(x), bits, one_row=True)
    assert streamed.values is None  # the block's payloads are never all held
    buffers = set()
    got = []
    for row in streamed.rows():
        buffers.add(row.__array_interface__["data"][0])
        got.append(row.tobytes())  # each row is valid until the next is drawn
    assert got == [r.tobytes() for r in whole.values]
    assert len(buffers) == 1  # one reused vector of n_cells values
    _assert_same_bounds(streamed, whole)


def test_implicit_zero_widens_bounds() -> None:
    # stored values all positive, but the column also has implicit zeros
    x = sp.csc_matrix(np.array([[0.0], [3.0], [5.0]], dtype=np.float32))
    out = kernels.encode_block(x, 8)
    assert (out.lo[0], out.hi[0]) == (0.0, 5.0)
    assert out.values[0].tolist() == [0, round(3 / 5 * 254), 254]
    # a column with every cell stored has no implicit zero
    full = sp.csc_matrix(np.array([[2.0], [3.0], [5.0]], dtype=np.float32))
    assert kernels.encode_block(full, 8).lo[0] == 2.0


def test_negative_values_and_zero_code() -> None:
    x = np.array([[-2.0], [0.0], [2.0]], dtype=np.float32)
    out = kernels.encode_dense(x, 8)
    assert (out.lo[0], out.hi[0]) == (-2.0, 2.0)
    assert out.values[0].tolist() == [0, 127, 254]
    assert kernels.encode_block(sp.csr_matrix(x), 8).values.tobytes() == out.values.tobytes()


def test_duplicate_coo_entries_are_summed() -> None:
    coo = sp.coo_matrix(([1.0, 2.0], ([0, 0], [0, 0])), shape=(2, 1))
    out = kernels.encode_block(coo, None)
    assert out.values[0].tolist() == [3.0, 0.0]


@pytest.mark.parametrize("dtype", [np.int32, np.uint16, np.int64, np.float16, np.float64, bool])
def test_any_real_dtype_is_exported_as_its_float32_values(dtype) -> None:
    rng = np.random.default_rng(0)
    x = (rng.integers(0, 50, (20, 3)) * (rng.random((20, 3)) < 0.5)).astype(dtype)
    out = kernels.encode_block(x, None)
    np.testing.assert_array_equal(out.values, x.astype(np.float32).T)
    assert out.values.dtype == np.dtype("<f4")


def test_float32_payload_keeps_nan_and_inf_bit_exact() -> None:
    x = np.array([[np.nan], [np.inf], [-np.inf], [1.5]], dtype=np.float32)
    out = kernels.encode_dense(x, None)
    assert out.values.tobytes() == x.T.tobytes()
    assert (out.lo[0], out.hi[0], out.n_nonfinite[0]) == (1.5, 1.5, 3)


def test_floor_matches_reference_truncation_at_integer_boundaries() -> None:
    # (v - lo) * scale lands a hair below an integer: the reference nudges by 1e-8
    x = np.array([[0.0], [0.1], [0.3], [1.0]], dtype=np.float32)
    out = kernels.encode_dense(x, 8, "floor")
    v = x[:, 0].astype(np.float64)
    expected = np.floor((v - v.min()) * (254 / (v.max() - v.min())) + 1e-8)
    assert out.values[0].tolist() == expected.astype(int).tolist()


def test_kernels_import_neither_dask_nor_fsspec() -> None:
    # the package __init__ imports the api (and so dask); load the modules alone
    root = str(Path(kernels.__file__).parents[2])
    code = (
        "import sys, types;"
        f"pkg = types.ModuleType('dask_cellucid'); pkg.__path__ = [{root!r}];"
        "sys.modules['dask_cellucid'] = pkg;"
        "import dask_cellucid.formats.folder.kernels, dask_cellucid.codecs;"
        "import dask_cellucid.formats.folder.naming, dask_cellucid.formats.folder.spec;"
        "bad = [m for m in ('dask', 'fsspec') if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
