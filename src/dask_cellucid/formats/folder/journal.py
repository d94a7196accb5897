"""The export's journal: what lets an interrupted export resume safely.

``.dask-cellucid/export.json`` names the plan's fingerprint (settings, gene
list, file names); each finished block task leaves
``.dask-cellucid/blocks/<fingerprint>-<start>.json`` with its genes' results and
payload sizes. A re-run with the same plan trusts a gene only when its record
carries the same fingerprint and the file on storage has the recorded size.
The journal is removed once the manifest is written.
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING

from dask_cellucid import storage

from .spec import MANIFEST_NAME, VAR_DIR, GeneEntry

if TYPE_CHECKING:
    from collections.abc import Sequence

    from dask_cellucid.storage import Target
    from dask_cellucid.types import Plan

JOURNAL_DIR = ".dask-cellucid"
_HEAD = f"{JOURNAL_DIR}/export.json"
_BLOCKS = f"{JOURNAL_DIR}/blocks"


def read_fingerprint(target: Target) -> str | None:
    """The fingerprint of the unfinished export in ``target``, if there is one."""
    return storage.read_fingerprint(target, _HEAD)


def begin(target: Target, plan: Plan) -> None:
    """Record which plan is being written, before its first payload.

    Besides the fingerprint (all that resuming needs), the head records the
    input's token and a digest of everything else, so that a refusal to resume
    can say which of the two differs.
    """
    head = {
        "tool": "dask-cellucid",
        "fingerprint": plan.fingerprint(),
        "n_genes": plan.n_genes,
        "source": plan.source_token,
        "settings": settings_digest(plan),
    }
    target.write({_HEAD: json.dumps(head).encode()})


def read_head(target: Target) -> dict[str, object]:
    """The journal's head as a dict (empty when absent or unreadable)."""
    raw = target.read(_HEAD)
    try:
        head = json.loads(raw) if raw is not None else {}
    except ValueError:
        return {}
    return head if isinstance(head, dict) else {}


def settings_digest(plan: Plan) -> str:
    """The plan's fingerprint without the input's token: genes, names and settings."""
    return dataclasses.replace(plan, source_token="").fingerprint()


def block_record(
    plan_fingerprint: str, start: int, entries: Sequence[GeneEntry]
) -> tuple[str, bytes]:
    """The path and bytes of one block's record (written by the block task)."""
    # Plain dicts: dataclasses.asdict deep-copies every field (0.45 CPU-s on 2,000
    # genes). NaN bounds of empty genes are stored as null: records are strict JSON.
    rows = [
        {
            "position": e.position,
            "gene_id": e.gene_id,
            "lo": e.lo if e.has_finite else None,
            "hi": e.hi if e.has_finite else None,
            "n_nonfinite": e.n_nonfinite,
            "nbytes": e.nbytes,
        }
        for e in entries
    ]
    text = json.dumps({"fingerprint": plan_fingerprint, "entries": rows}, allow_nan=False)
    return f"{_BLOCKS}/{plan_fingerprint}-{start}.json", text.encode()


def completed(target: Target, plan: Plan) -> dict[int, GeneEntry]:
    """Genes already written intact by an earlier run of the same plan.

    A gene counts only if a block record of this plan's fingerprint names it
    (at its position, with its id) and its payload is on storage with exactly
    the recorded size: a missing, truncated or foreign file is redone.
    """
    fp = plan.fingerprint()
    records = sorted(p for p in target.sizes(_BLOCKS) if p.rsplit("/", 1)[-1].startswith(fp + "-"))
    if not records:
        return {}
    on_disk = target.sizes(VAR_DIR)
    done: dict[int, GeneEntry] = {}
    for raw in target.read_many(records).values():
        try:
            body = json.loads(raw or b"")
            if body["fingerprint"] != fp:
                continue
            entries = [_entry(e) for e in body["entries"]]
        except (ValueError, KeyError, TypeError):
            continue  # a damaged record proves nothing; the block is redone
        for e in entries:
            ok = (
                0 <= e.position < plan.n_genes
                and plan.gene_ids[e.position] == e.gene_id
                and on_disk.get(plan.options.payload_path(e.position)) == e.nbytes
            )
            if ok:
                done[e.position] = e
    return done


def _entry(d: dict[str, object]) -> GeneEntry:
    nan = float("nan")
    return GeneEntry(
        position=int(d["position"]),  # type: ignore[arg-type]
        gene_id=str(d["gene_id"]),
        lo=nan if d["lo"] is None else float(d["lo"]),  # type: ignore[arg-type]
        hi=nan if d["hi"] is None else float(d["hi"]),  # type: ignore[arg-type]
        n_nonfinite=int(d["n_nonfinite"]),  # type: ignore[arg-type]
        nbytes=int(d["nbytes"]),  # type: ignore[arg-type]
    )


def clear(target: Target) -> None:
    """Remove the journal (once the manifest is written, or with ``force``)."""
    target.remove_tree(JOURNAL_DIR)


def has_payloads(target: Target) -> bool:
    """Whether ``var/`` holds any payload (temporary files left by a crash aside)."""
    return any(not p.rsplit("/", 1)[-1].startswith(".") for p in target.sizes(VAR_DIR))


def has_manifest(target: Target) -> bool:
    """Whether a finished export (its ``var_manifest.json``) is in ``target``."""
    return target.exists(MANIFEST_NAME)
