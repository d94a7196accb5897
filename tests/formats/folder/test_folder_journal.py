"""formats/folder/journal.py: block records, and which genes a resumed export may trust."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from dask_cellucid.formats.folder import journal
from dask_cellucid.formats.folder.spec import Encoding, GeneEntry
from dask_cellucid.formats.folder.writer import folder_options
from dask_cellucid.plan import build_plan
from dask_cellucid.storage import Target

IDS = ["A", "B", "C", "D"]


def _plan(ids=IDS, bits=8):
    ids, options = folder_options(
        ids, encoding=Encoding(bits, None), layout="key", var_gene_id_column=None, make_unique=False
    )
    return build_plan(
        n_cells=10, gene_ids=ids, source_columns=range(len(ids)), block_size=2, options=options
    )


def _entries(plan, start, n, nbytes=10):
    return [
        GeneEntry(p, plan.gene_ids[p], float(p), float(p) + 1.5, p % 2, nbytes)
        for p in range(start, start + n)
    ]


def _write_block(target, plan, start, n, *, sizes=None, fingerprint=None):
    """What a block task leaves: its payloads, then its record."""
    entries = _entries(plan, start, n)
    files = {
        plan.options.payload_path(e.position): b"x" * (sizes or {}).get(e.position, e.nbytes)
        for e in entries
    }
    rel, raw = journal.block_record(fingerprint or plan.fingerprint(), start, entries)
    target.write({**files, rel: raw})
    return entries


def _as_tuples(entries):
    """Comparable rows (NaN bounds as None: NaN != NaN)."""
    return sorted(
        (
            e.position,
            e.gene_id,
            None if math.isnan(e.lo) else e.lo,
            None if math.isnan(e.hi) else e.hi,
            e.n_nonfinite,
            e.nbytes,
        )
        for e in entries
    )


@pytest.fixture
def target(tmp_path):
    t = Target.from_url(tmp_path / "out")
    t.prepare("var")
    return t


def test_block_record_path_and_strict_json():
    entries = [GeneEntry(4, "E", math.nan, math.nan, 10, 12), GeneEntry(5, "F", 0.0, 2.0, 0, 8)]
    rel, raw = journal.block_record("abc123", 4, entries)
    assert rel == ".dask-cellucid/blocks/abc123-4.json"
    body = json.loads(raw, parse_constant=lambda t: pytest.fail(f"non-JSON token {t}"))
    assert body["fingerprint"] == "abc123"
    assert body["entries"][0] == {
        "position": 4,
        "gene_id": "E",
        "lo": None,
        "hi": None,
        "n_nonfinite": 10,
        "nbytes": 12,
    }
    assert body["entries"][1]["lo"] == 0.0
    assert body["entries"][1]["hi"] == 2.0


def test_records_round_trip_through_completed(target):
    plan = _plan()
    written = _write_block(target, plan, 0, 2) + _write_block(target, plan, 2, 2)
    # an empty gene too: its NaN bounds come back as NaN
    empty = GeneEntry(3, "D", math.nan, math.nan, 10, 10)
    rel, raw = journal.block_record(plan.fingerprint(), 2, [written[2], empty])
    target.write({rel: raw})
    done = journal.completed(target, plan)
    assert sorted(done) == [0, 1, 2, 3]
    assert _as_tuples(done.values()) == _as_tuples([*written[:3], empty])


def test_nothing_is_trusted_without_records(target):
    plan = _plan()
    target.write({plan.options.payload_path(0): b"x" * 10})
    assert journal.completed(target, plan) == {}


def test_a_record_of_another_plan_is_not_trusted(target):
    plan, other = _plan(), _plan(bits=16)
    assert plan.fingerprint() != other.fingerprint()
    _write_block(target, other, 0, 2)  # same ids and paths, other settings
    assert journal.completed(target, plan) == {}
    assert sorted(journal.completed(target, other)) == [0, 1]


def test_a_record_whose_body_names_another_fingerprint_is_not_trusted(target):
    plan = _plan()
    entries = _write_block(target, plan, 0, 2)
    rel, _ = journal.block_record(plan.fingerprint(), 0, entries)
    _, foreign = journal.block_record("0" * 32, 0, entries)
    target.write({rel: foreign})  # named for this plan, written for another
    assert journal.completed(target, plan) == {}


def test_a_payload_of_the_wrong_size_or_missing_is_redone(target):
    plan = _plan()
    _write_block(target, plan, 0, 2, sizes={1: 9})  # gene 1 truncated
    _write_block(target, plan, 2, 2)
    target.remove(plan.options.payload_path(3))  # gene 3 gone
    assert sorted(journal.completed(target, plan)) == [0, 2]


def test_a_record_naming_another_gene_at_a_position_is_not_trusted(target):
    plan = _plan()
    entries = _entries(plan, 0, 2)
    swapped = [GeneEntry(0, "B", 0.0, 1.0, 0, 10), entries[1]]
    target.write({plan.options.payload_path(p): b"x" * 10 for p in (0, 1)})
    rel, raw = journal.block_record(plan.fingerprint(), 0, swapped)
    target.write({rel: raw})
    assert sorted(journal.completed(target, plan)) == [1]


def test_a_damaged_record_proves_nothing(target):
    plan = _plan()
    _write_block(target, plan, 0, 2)
    rel, raw = journal.block_record(plan.fingerprint(), 2, _entries(plan, 2, 2))
    target.write({plan.options.payload_path(p): b"x" * 10 for p in (2, 3)})
    target.write({rel: raw[: len(raw) // 2]})
    assert sorted(journal.completed(target, plan)) == [0, 1]


def test_begin_read_fingerprint_and_clear(target):
    plan = _plan()
    assert journal.read_fingerprint(target) is None
    journal.begin(target, plan)
    assert journal.read_fingerprint(target) == plan.fingerprint()
    _write_block(target, plan, 0, 2)
    journal.clear(target)
    assert journal.read_fingerprint(target) is None
    assert target.sizes(journal.JOURNAL_DIR) == {}
    # clearing the journal leaves the payloads, but nothing vouches for them any more
    assert plan.options.payload_path(0) in target.sizes("var")
    assert journal.completed(target, plan) == {}
    journal.clear(target)  # nothing left to clear: no error


def test_an_unreadable_head_is_reported_as_such(target):
    target.write({".dask-cellucid/export.json": b"{not json"})
    assert journal.read_fingerprint(target) == "<unreadable>"
    assert journal.read_head(target) == {}


def test_the_head_tells_the_input_token_from_the_settings(target):
    plan = _plan()
    other_input = dataclasses.replace(plan, source_token="another-token")
    assert journal.read_head(target) == {}
    journal.begin(target, plan)
    head = journal.read_head(target)
    assert head["fingerprint"] == plan.fingerprint()
    assert head["source"] == plan.source_token
    assert head["settings"] == journal.settings_digest(plan)
    # the digest ignores the input's token, the fingerprint does not
    assert journal.settings_digest(other_input) == journal.settings_digest(plan)
    assert other_input.fingerprint() != plan.fingerprint()
    assert journal.settings_digest(_plan(bits=16)) != journal.settings_digest(plan)


def test_has_payloads_ignores_temporary_files_and_has_manifest(target):
    assert not journal.has_payloads(target)
    target.write({"var/.A.values.u8.tmp": b"x"})
    assert not journal.has_payloads(target)
    target.write({"var/A.values.u8": b"x"})
    assert journal.has_payloads(target)
    assert not journal.has_manifest(target)
    target.write({"var_manifest.json": b"{}"})
    assert journal.has_manifest(target)
