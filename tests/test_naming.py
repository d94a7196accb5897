"""Gene id -> file name rules (spec section 3), with property-based tests."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dask_cellucid import GeneIdError
from dask_cellucid.formats.folder.naming import make_unique, resolve_ids, sanitize_key


@pytest.mark.parametrize(
    ("gene", "stem"),
    [
        ("A/B", "A_B"),
        ("cell type", "cell_type"),
        (".hidden_", "hidden"),
        ("Gene.1", "Gene.1"),
        ("HLA-DRB1", "HLA-DRB1"),
        ("a//b  c", "a_b_c"),
        ("基因", ""),
        ("__x__", "x"),
        ("-x-", "-x-"),
    ],
)
def test_spec_examples(gene: str, stem: str) -> None:
    assert sanitize_key(gene) == stem


@given(st.text())
def test_sanitized_names_are_safe_and_stable(gene: str) -> None:
    stem = sanitize_key(gene)
    assert re.fullmatch(r"[A-Za-z0-9._-]*", stem)
    assert not stem.startswith((".", "_")) and not stem.endswith((".", "_"))
    assert sanitize_key(stem) == stem  # idempotent


@given(st.text(alphabet="AB-_1 ", max_size=6).filter(lambda s: s.strip("._ ")))
def test_safe_ids_are_their_own_stem(gene: str) -> None:
    if re.fullmatch(r"[A-Za-z0-9-]([A-Za-z0-9._-]*[A-Za-z0-9-])?", gene):
        assert sanitize_key(gene) == gene


@given(st.lists(st.sampled_from(["X", "X-1", "Y", "Z", "X-2"]), max_size=12))
def test_make_unique_keeps_first_and_never_collides(ids: list[str]) -> None:
    out = make_unique(ids)
    assert len(out) == len(ids)
    assert len(set(out)) == len(out)
    seen: set[str] = set()
    for before, after in zip(ids, out, strict=True):
        if before not in seen:
            assert after == before
        seen.add(before)


def test_make_unique_is_anndatas() -> None:
    ad = pytest.importorskip("anndata")
    import pandas as pd

    ids = ["a", "a", "b", "a", "a-1", "b"]
    assert make_unique(ids) == list(ad.utils.make_index_unique(pd.Index(ids)))


@pytest.mark.parametrize(
    ("ids", "fragment"),
    [
        (["A", "B", "A"], "occur more than once"),
        (["A/B", "A_B"], "share one file"),
        (["Gene", "GENE"], "letter case"),
        (["ok", "基因"], "no character usable"),
    ],
)
def test_key_layout_refuses_hazards(ids: list[str], fragment: str) -> None:
    with pytest.raises(GeneIdError, match=fragment):
        resolve_ids(ids, layout="key", make_names_unique=False)


@given(st.lists(st.text(alphabet="aAbB/_ .", min_size=1, max_size=4), min_size=1, max_size=15))
def test_make_unique_resolves_every_key_collision(ids: list[str]) -> None:
    if any(not sanitize_key(i) for i in ids):  # no suffix makes such an id usable
        with pytest.raises(GeneIdError, match="no character usable"):
            resolve_ids(ids, layout="key", make_names_unique=True)
        return
    out = resolve_ids(ids, layout="key", make_names_unique=True)
    stems = [sanitize_key(i).lower() for i in out]
    assert len(set(stems)) == len(stems)
    assert len(set(out)) == len(out)


def test_index_layout_allows_any_unicode_but_not_blank_names() -> None:
    assert resolve_ids(["基因", "A/B", "A_B"], layout="index", make_names_unique=False)
    for bad in (["ok", " padded"], ["tab\tinside"], [""]):
        with pytest.raises(GeneIdError):
            resolve_ids(bad, layout="index", make_names_unique=False)
