"""formats/folder/spec.py: payload dtypes, encodings, and where a manifest field points."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dask_cellucid.formats.folder import kernels, manifest
from dask_cellucid.formats.folder.spec import (
    BY_BITS,
    DTYPES,
    Encoding,
    FolderOptions,
    GeneEntry,
    field_location,
    field_locations,
    layout_of,
)
from dask_cellucid.formats.folder.writer import folder_options
from dask_cellucid.plan import build_plan


def test_the_three_payload_dtypes():
    assert {n: (d.ext, d.numpy, d.bits) for n, d in DTYPES.items()} == {
        "float32": ("f32", "<f4", None),
        "uint8": ("u8", "<u1", 8),
        "uint16": ("u16", "<u2", 16),
    }
    for name, d in DTYPES.items():
        assert np.dtype(d.numpy).name == name
        assert d.itemsize == np.dtype(d.numpy).itemsize


def test_by_bits_is_dtypes_reindexed():
    assert set(BY_BITS) == {None, 8, 16}
    assert {d.name for d in BY_BITS.values()} == set(DTYPES)
    for bits, d in BY_BITS.items():
        assert d.bits == bits
        assert DTYPES[d.name] is d


@pytest.mark.parametrize("bits", [None, 8, 16])
@pytest.mark.parametrize("compression", [None, 0, 6])
def test_encoding_agrees_with_its_payload_dtype(bits, compression):
    enc = Encoding(bits, compression)
    d = BY_BITS[bits]
    assert enc.payload_dtype is d
    assert (enc.ext, enc.dtype, enc.itemsize) == (d.ext, d.name, d.itemsize)
    gz = ".gz" if compression else ""
    assert enc.suffix == f".values.{d.ext}{gz}"
    # the kernels encode into the same dtype the name promises
    assert kernels.code_dtype(bits) == np.dtype(d.numpy)


def test_folder_options_payload_paths_and_fingerprint_fields():
    opts = FolderOptions(Encoding(8, 6), "key", None, ("A_B", "C"))
    assert opts.payload_path(0) == "var/A_B.values.u8.gz"
    assert opts.payload_path(1) == "var/C.values.u8.gz"
    other = FolderOptions(Encoding(16, 6), "key", None, ("A_B", "C"))
    assert opts.fingerprint_fields() != other.fingerprint_fields()
    assert opts.fingerprint_fields()["stems"] == ("A_B", "C")


def test_gene_entry_flags():
    assert GeneEntry(0, "a", 0.0, 0.0, 0, 1).all_zero
    assert not GeneEntry(0, "a", 0.0, 0.0, 1, 1).all_zero  # zeros and a NaN
    assert not GeneEntry(0, "a", 0.0, 1.0, 0, 1).all_zero
    assert GeneEntry(0, "a", 0.0, 1.0, 0, 1).has_finite
    assert not GeneEntry(0, "a", math.nan, math.nan, 3, 1).has_finite


def test_layout_of():
    assert layout_of({"_varSchema": {"pathPattern": "var/{index}.values.u8"}}) == "index"
    assert layout_of({"_varSchema": {"pathPattern": "var/{key}.values.u8"}}) == "key"
    assert layout_of({}) == "key"


def test_field_location_key_layout_sanitises_the_id():
    loc = field_location(["CD4/x y", 0.5, 2.0], "var/{key}.values.u8.gz", "key")
    assert loc.gene_id == "CD4/x y"
    assert loc.path == "var/CD4_x_y.values.u8.gz"
    assert tuple(loc.bounds) == (0.5, 2.0)


def test_field_location_index_layout_uses_the_position():
    loc = field_location([12, "CD4/x y", 0.5, 2.0], "var/{index}.values.u16", "index")
    assert loc.gene_id == "CD4/x y"
    assert loc.path == "var/12.values.u16"
    assert tuple(loc.bounds) == (0.5, 2.0)


def test_float32_fields_have_no_bounds():
    assert tuple(field_location(["G"], "var/{key}.values.f32", "key").bounds) == ()
    assert tuple(field_location([0, "G"], "var/{index}.values.f32", "index").bounds) == ()


@pytest.mark.parametrize("layout", ["key", "index"])
def test_manifest_fields_resolve_to_the_paths_the_writer_writes(layout):
    ids = ["CD4", "HLA-A/B", ".lead", "x y"]
    ids, options = folder_options(
        ids, encoding=Encoding(8, 6), layout=layout, var_gene_id_column=None, make_unique=False
    )
    plan = build_plan(
        n_cells=3, gene_ids=ids, source_columns=range(4), block_size=2, options=options
    )
    entries = [GeneEntry(i, g, 0.0, 1.0, 0, 3) for i, g in enumerate(ids)]
    locs = field_locations(manifest.build(plan, entries))
    assert [loc.gene_id for loc in locs] == ids
    assert [loc.path for loc in locs] == [options.payload_path(i) for i in range(4)]
    if layout == "key":
        assert locs[1].path == "var/HLA-A_B.values.u8.gz"
        assert locs[2].path == "var/lead.values.u8.gz"
