"""formats/folder/manifest.py: the manifest built from block results, and strict JSON."""

from __future__ import annotations

import json
import math

import pytest

from dask_cellucid.formats.folder import manifest
from dask_cellucid.formats.folder.spec import Encoding, GeneEntry
from dask_cellucid.formats.folder.writer import folder_options
from dask_cellucid.plan import build_plan

NAN = math.nan


def _plan(ids, *, bits=8, layout="key", compression=None, n_cells=7, column=None):
    ids, options = folder_options(
        ids,
        encoding=Encoding(bits, compression),
        layout=layout,
        var_gene_id_column=column,
        make_unique=False,
    )
    return build_plan(
        n_cells=n_cells,
        gene_ids=ids,
        source_columns=range(len(ids)),
        block_size=2,
        options=options,
    )


# a varying gene, a constant one, one with no finite value
ENTRIES = [
    GeneEntry(0, "Vary", -0.5, 3.25, 0, 7),
    GeneEntry(1, "Const", 2.5, 2.5, 0, 7),
    GeneEntry(2, "Empty", NAN, NAN, 7, 7),
]


def test_key_layout_keeps_min_below_max():
    doc = manifest.build(_plan(["Vary", "Const", "Empty"], layout="key"), ENTRIES)
    assert doc["fields"] == [["Vary", -0.5, 3.25], ["Const", 2.5, 3.5], ["Empty", 0.0, 1.0]]


def test_index_layout_writes_constant_and_empty_bounds_as_they_are():
    doc = manifest.build(_plan(["Vary", "Const", "Empty"], layout="index"), ENTRIES)
    assert doc["fields"] == [
        [0, "Vary", -0.5, 3.25],
        [1, "Const", 2.5, 2.5],
        [2, "Empty", 0.0, 0.0],
    ]


@pytest.mark.parametrize(
    ("layout", "expected"),
    [
        ("key", [["Vary"], ["Const"], ["Empty"]]),
        ("index", [[0, "Vary"], [1, "Const"], [2, "Empty"]]),
    ],
)
def test_float32_fields_carry_no_bounds(layout, expected):
    doc = manifest.build(_plan(["Vary", "Const", "Empty"], bits=None, layout=layout), ENTRIES)
    assert doc["fields"] == expected
    assert doc["quantization"] is None
    assert "quantizationBits" not in doc["_varSchema"]
    assert doc["_varSchema"]["dtype"] == "float32"


def test_written_bounds_per_layout():
    const, empty = ENTRIES[1], ENTRIES[2]
    assert manifest.written_bounds(const, "key") == (2.5, 3.5)
    assert manifest.written_bounds(const, "index") == (2.5, 2.5)
    assert manifest.written_bounds(empty, "key") == (0.0, 1.0)
    assert manifest.written_bounds(empty, "index") == (0.0, 0.0)
    assert manifest.written_bounds(ENTRIES[0], "key") == (-0.5, 3.25)


def test_fields_follow_positions_not_the_order_results_arrive_in():
    plan = _plan(["Vary", "Const", "Empty"], layout="index")
    doc = manifest.build(plan, reversed(ENTRIES))
    assert [f[:2] for f in doc["fields"]] == [[0, "Vary"], [1, "Const"], [2, "Empty"]]


@pytest.mark.parametrize(
    "entries",
    [
        ENTRIES[:2],  # a gene missing
        [*ENTRIES, ENTRIES[0]],  # a gene twice
        [ENTRIES[0], ENTRIES[1], GeneEntry(3, "Empty", NAN, NAN, 7, 7)],  # outside the plan
    ],
    ids=["missing", "duplicate", "outside"],
)
def test_entries_must_cover_every_gene_exactly_once(entries):
    with pytest.raises(AssertionError, match="cover every exported gene"):
        manifest.build(_plan(["Vary", "Const", "Empty"]), entries)


def test_header_keys_order_and_schema():
    plan = _plan(["Vary", "Const", "Empty"], bits=16, layout="key", compression=6, column="ids")
    doc = manifest.build(plan, ENTRIES)
    assert tuple(doc) == manifest.MANIFEST_KEYS
    assert doc["_format"] == "compact_v1"
    assert doc["n_points"] == 7
    assert doc["var_gene_id_column"] == "ids"
    assert doc["compression"] == 6
    assert doc["quantization"] == 16
    assert doc["_varSchema"] == {
        "kind": "continuous",
        "pathPattern": "var/{key}.values.u16.gz",
        "ext": "u16",
        "dtype": "uint16",
        "quantized": True,
        "quantizationBits": 16,
    }


def test_index_layout_path_pattern_and_no_compression_is_null():
    doc = manifest.build(_plan(["Vary", "Const", "Empty"], layout="index"), ENTRIES)
    assert doc["_varSchema"]["pathPattern"] == "var/{index}.values.u8"
    assert doc["compression"] is None
    assert manifest.layout_of(doc) == "index"


def test_a_nonfinite_bound_is_a_bug_not_a_manifest():
    plan = _plan(["A"])
    with pytest.raises(AssertionError, match="not finite"):
        manifest.build(plan, [GeneEntry(0, "A", 0.0, math.inf, 0, 7)])


def test_dumps_is_compact_strict_json_and_round_trips():
    doc = manifest.build(_plan(["Vary", "Const", "Empty"]), ENTRIES)
    raw = manifest.dumps(doc)
    assert isinstance(raw, bytes)
    assert raw == json.dumps(doc).encode()  # the reference writer's separators
    assert manifest.loads(raw) == doc
    assert manifest.loads(raw.decode()) == doc


@pytest.mark.parametrize("bad", [NAN, math.inf, -math.inf])
def test_dumps_refuses_nonfinite_numbers(bad):
    with pytest.raises(ValueError):
        manifest.dumps({"fields": [["A", bad, 1.0]]})


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_loads_refuses_nonstandard_tokens(token):
    with pytest.raises(ValueError, match=token):
        manifest.loads(f'{{"fields": [["A", {token}, 1.0]]}}')
