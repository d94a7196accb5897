"""options.py: max_memory parsed once, and the checks of shared scalar options."""

from __future__ import annotations

import os

import pytest

from dask_cellucid import options
from dask_cellucid.errors import InvalidOptionError


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("4GiB", 4 * 2**30),
        ("500MB", 500 * 10**6),
        ("64MiB", 64 * 2**20),
        ("1 kB", 1000),
        (2_000_000_000, 2_000_000_000),
        (1, 1),
        (1.5e9, 1_500_000_000),
    ],
)
def test_parse_memory(value, expected):
    n = options.parse_memory(value)
    assert n == expected
    assert type(n) is int


def test_parse_memory_keeps_none():
    assert options.parse_memory(None) is None


@pytest.mark.parametrize("bad", ["lots", "4 GiBs", "GiB4", "nan", b"4GiB", float("nan")])
def test_parse_memory_refuses_what_is_not_a_size(bad):
    with pytest.raises(InvalidOptionError, match="is not a memory size; write it like 4GiB"):
        options.parse_memory(bad)


@pytest.mark.parametrize("bad", ["", " "])
def test_parse_memory_refuses_an_empty_string(bad):
    # dask's parse_bytes reads "" as one byte: a budget nobody means
    with pytest.raises(InvalidOptionError, match="is not a memory size"):
        options.parse_memory(bad)


@pytest.mark.parametrize("bad", [[4], {"GiB": 4}, object(), float("inf")])
def test_parse_memory_refuses_other_values_with_its_own_error(bad):
    # not an AttributeError or OverflowError from inside dask
    with pytest.raises(InvalidOptionError, match="max_memory="):
        options.parse_memory(bad)


@pytest.mark.parametrize("bad", [True, False])
def test_parse_memory_refuses_bools_naming_the_value_given(bad):
    # True would otherwise be one byte; the message shows what the user passed
    with pytest.raises(InvalidOptionError, match=rf"max_memory={bad!r} is not a memory size"):
        options.parse_memory(bad)


@pytest.mark.parametrize("bad", [0, "0B", -1, "-1GiB"])
def test_parse_memory_refuses_zero_and_less(bad):
    with pytest.raises(InvalidOptionError):
        options.parse_memory(bad)
    with pytest.raises(InvalidOptionError, match="must be more than zero"):
        options.parse_memory(0)


def test_parse_memory_names_the_option():
    with pytest.raises(InvalidOptionError, match="block_memory='lots'"):
        options.parse_memory("lots", "block_memory")


def test_resolve_memory_default_is_a_quarter_of_the_machine(monkeypatch):
    monkeypatch.setattr(options, "total_memory", lambda: 8 * 2**30)
    assert options.default_max_memory() == 2 * 2**30
    assert options.resolve_memory(None) == 2 * 2**30
    assert options.resolve_memory("1GiB") == 2**30


def test_total_memory_is_positive_and_not_above_physical():
    total = options.total_memory()
    assert total > 0
    assert total <= os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def test_check_flag():
    assert options.check_flag("force", True) is True
    assert options.check_flag("force", False) is False
    with pytest.raises(InvalidOptionError, match="force must be True or False, got 1"):
        options.check_flag("force", 1)


def test_check_choice():
    assert options.check_choice("layout", "key", ("key", "index")) == "key"
    with pytest.raises(InvalidOptionError, match=r"layout='keys' must be one of 'key', 'index'\."):
        options.check_choice("layout", "keys", ("key", "index"))
    with pytest.raises(InvalidOptionError):
        options.check_choice("layout", ["key"], ("key", "index"))


@pytest.mark.parametrize("ok", [None, 8, 16])
def test_check_bits_accepts(ok):
    assert options.check_bits(ok) == ok


@pytest.mark.parametrize("bad", [0, 4, 32, 8.0, "8", True])
def test_check_bits_refuses(bad):
    with pytest.raises(InvalidOptionError, match=r"must be None \(float32\), 8 or 16"):
        options.check_bits(bad)


def test_check_compression():
    assert options.check_compression(None) is None
    assert options.check_compression(0) is None
    assert [options.check_compression(k) for k in range(1, 10)] == list(range(1, 10))
    for bad in (10, -1, 6.0, "6", True, False):
        with pytest.raises(InvalidOptionError, match="gzip level from 1 to 9"):
            options.check_compression(bad)


def test_check_positive_int():
    assert options.check_positive_int("genes_per_block", 3) == 3
    for bad in (0, -2, 2.0, True, "3"):
        with pytest.raises(
            InvalidOptionError, match=r"genes_per_block=.* must be a positive integer"
        ):
            options.check_positive_int("genes_per_block", bad)


def test_check_tolerance():
    assert options.check_tolerance(0) == 0.0
    assert options.check_tolerance(0.5) == 0.5
    assert isinstance(options.check_tolerance(1), float)
    for bad in (-0.1, float("nan"), True, "0.5", None):
        with pytest.raises(
            InvalidOptionError, match=r"tolerance=.* must be a number of steps >= 0"
        ):
            options.check_tolerance(bad)
