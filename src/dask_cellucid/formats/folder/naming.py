"""Gene ids and the file names they become (spec section 3).

Pure functions over strings: no I/O, no NumPy, so they are cheap to test with
property-based tests.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from typing import TYPE_CHECKING

from dask_cellucid.errors import GeneIdError
from dask_cellucid.genes import duplicates, make_unique

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

_OUTSIDE_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_SHOW = 10  # how many offenders an error message lists


def sanitize_key(gene_id: str) -> str:
    """The file stem the viewer substitutes for ``gene_id`` in the ``key`` layout.

    Every run of characters outside ``[A-Za-z0-9._-]`` becomes one ``_``, then
    leading and trailing ``.`` and ``_`` are stripped. Returns ``""`` when
    nothing is left (the caller refuses such ids; the lenient reader would fall
    back to ``field``, the strict one throws).

    Examples
    --------
    >>> sanitize_key("A/B"), sanitize_key("cell type"), sanitize_key(".hidden_")
    ('A_B', 'cell_type', 'hidden')
    """
    return _OUTSIDE_SAFE.sub("_", gene_id).strip("._")


def _listing(groups: Iterable[Iterable[str]]) -> str:
    groups = list(groups)
    shown = "; ".join(" / ".join(repr(g) for g in group) for group in groups[:_SHOW])
    more = f" (and {len(groups) - _SHOW} more)" if len(groups) > _SHOW else ""
    return shown + more


def resolve_ids(ids: Sequence[str], *, layout: str, make_names_unique: bool) -> list[str]:
    """Check exported ids for the layout, renaming only if asked.

    Raises
    ------
    GeneIdError
        Listing every duplicate, file-name collision or unusable id.
    """
    ids = [str(i) for i in ids]
    dup = duplicates(ids)
    if dup:
        if not make_names_unique:
            msg = (
                f"{len(dup)} gene id(s) occur more than once among the exported genes: "
                f"{_listing([d] for d in dup)}. Pass make_unique=True to rename repeats "
                "'X-1', 'X-2', ... (as anndata's var_names_make_unique does), or choose a "
                "var_gene_id_column whose values are unique."
            )
            raise GeneIdError(msg)
        ids = make_unique(ids)
    if layout == "index":
        _check_index_names(ids)
        return ids
    return _resolve_key_collisions(ids, make_names_unique=make_names_unique)


#: The longest file name (bytes) on the common filesystems (ext4, APFS, NTFS, XFS).
MAX_FILE_NAME = 255


def check_file_name_lengths(ids: Sequence[str], stems: Sequence[str], suffix: str) -> None:
    """Refuse ids whose payload file name would be too long for a filesystem.

    Raises
    ------
    GeneIdError
        Naming every such id, before anything is written.
    """
    long = [
        i
        for i, stem in zip(ids, stems, strict=True)
        if len((stem + suffix).encode()) > MAX_FILE_NAME
    ]
    if long:
        msg = (
            f"{len(long)} gene id(s) make payload file names longer than {MAX_FILE_NAME} "
            f"bytes, the limit of common filesystems: {_listing([i[:60] + '...'] for i in long)}. "
            "Shorten them in var (or take ids from another column with "
            "var_gene_id_column=), or use layout='index', where ids never reach a path."
        )
        raise GeneIdError(msg)


def _check_index_names(ids: Sequence[str]) -> None:
    bad = [
        i for i in ids if not i or i != i.strip() or any(unicodedata.category(c) == "Cc" for c in i)
    ]
    if bad:
        msg = (
            f"{len(bad)} gene id(s) are empty, carry leading/trailing white space or "
            f"control characters, which the 'index' layout's reader refuses: "
            f"{_listing([b] for b in bad)}. Clean them in var (e.g. var_names.str.strip())."
        )
        raise GeneIdError(msg)


def _resolve_key_collisions(ids: list[str], *, make_names_unique: bool) -> list[str]:
    empty = [i for i in ids if not sanitize_key(i)]
    if empty:
        msg = (
            f"{len(empty)} gene id(s) have no character usable in a file name "
            f"(only [A-Za-z0-9._-] survive): {_listing([e] for e in empty)}. Rename them, "
            "or use layout='index', where names never reach a path."
        )
        raise GeneIdError(msg)
    by_file: dict[str, list[str]] = defaultdict(list)
    for name in ids:
        by_file[sanitize_key(name).lower()].append(name)
    clashes = [group for group in by_file.values() if len(group) > 1]
    if not clashes:
        return ids
    if not make_names_unique:
        msg = (
            f"{len(clashes)} group(s) of gene ids would share one file under var/ (ids that "
            "differ only in characters outside [A-Za-z0-9._-], or only in letter case, which "
            f"collide on macOS and Windows): {_listing(clashes)}. Pass make_unique=True to "
            "rename the later ones 'X-1', 'X-2', ..., or use layout='index'."
        )
        raise GeneIdError(msg)
    taken = {sanitize_key(i).lower() for i in ids}
    seen: set[str] = set()
    out = []
    for name in ids:
        stem = sanitize_key(name).lower()
        if stem not in seen:
            seen.add(stem)
            out.append(name)
            continue
        k = 1
        while sanitize_key(f"{name}-{k}").lower() in taken:
            k += 1
        new = f"{name}-{k}"
        taken.add(sanitize_key(new).lower())
        seen.add(sanitize_key(new).lower())
        out.append(new)
    return out
