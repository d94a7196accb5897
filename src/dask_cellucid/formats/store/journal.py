"""The store's journal: what lets an interrupted store be finished by a re-run.

``.dask-cellucid/store.json`` names the fingerprint of what is being written
(the input's token, the genes, and every setting the chunk bytes depend on;
not how the chunks are cut into tasks, so a re-run with another ``max_memory``
or worker count still resumes). Each finished segment task leaves
``.dask-cellucid/chunks/<fingerprint>-<kind>-<first>-<stop>.json``, naming the
files it wrote and their sizes, once they are durable. A re-run of the same
store trusts a chunk only when a record of that fingerprint names it and every
file of the record is on storage with the recorded size; everything else is
written again. The journal is removed with the consolidated metadata's arrival,
so a finished store carries none.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from dask_cellucid import storage

if TYPE_CHECKING:
    from collections.abc import Mapping

    from dask_cellucid.storage import Target

JOURNAL_DIR = ".dask-cellucid"
_HEAD = f"{JOURNAL_DIR}/store.json"
_RECORDS = f"{JOURNAL_DIR}/chunks"


def read_fingerprint(target: Target) -> str | None:
    """The fingerprint of the unfinished store in ``target``, if there is one."""
    return storage.read_fingerprint(target, _HEAD)


def begin(target: Target, fingerprint: str) -> None:
    """Record which store is being written, before its first chunk."""
    head = {"tool": "dask-cellucid", "format": "cellucid-ready-zarr", "fingerprint": fingerprint}
    target.write({_HEAD: json.dumps(head).encode()})


def segment_record(
    fingerprint: str, kind: str, first: int, stop: int, files: Mapping[str, int]
) -> tuple[str, bytes]:
    """The path and bytes of one segment's record: chunks ``[first, stop)`` of ``kind``
    (``"sparse"``: chunks of ``X/data`` and ``X/indices``; ``"dense"``: column strips),
    and the ``{path: size}`` of the files written for them."""
    body = {
        "fingerprint": fingerprint,
        "kind": kind,
        "first": first,
        "stop": stop,
        "files": dict(files),
    }
    return f"{_RECORDS}/{fingerprint}-{kind}-{first}-{stop}.json", json.dumps(body).encode()


def completed(target: Target, fingerprint: str, kind: str) -> set[int]:
    """Chunks (or strips) of ``kind`` written intact by an earlier run of this store.

    A chunk counts only if a record of this fingerprint covers it and every file
    the record names is on storage with the recorded size: a missing, truncated
    or foreign file, or a damaged record, gets its chunks written again.
    """
    records = sorted(
        p for p in target.sizes(_RECORDS) if p.rsplit("/", 1)[-1].startswith(f"{fingerprint}-")
    )
    if not records:
        return set()
    on_disk = target.sizes("X")
    done: set[int] = set()
    for raw in target.read_many(records).values():
        try:
            body = json.loads(raw or b"")
            ok = (
                body["fingerprint"] == fingerprint
                and body["kind"] == kind
                and all(on_disk.get(str(p)) == int(n) for p, n in body["files"].items())
            )
            first, stop = int(body["first"]), int(body["stop"])
        except (ValueError, KeyError, TypeError, AttributeError):
            continue  # a damaged record proves nothing: its chunks are redone
        if ok:
            done.update(range(first, stop))
    return done


def clear(target: Target) -> None:
    """Remove the journal (with the consolidated metadata's arrival, or to start over)."""
    target.remove_tree(JOURNAL_DIR)
