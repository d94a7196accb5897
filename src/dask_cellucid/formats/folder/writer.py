"""The folder format's pieces for the engine: begin, the block task, finish.

- :meth:`FolderWriter.check` refuses what must be refused, before any write;
- :meth:`FolderWriter.begin` withdraws an old export (``force``) or resumes an
  interrupted one, keyed on the commit file ``var_manifest.json`` and the journal;
- :func:`write_block` is the block task: encode, write payloads, then the
  block's journal record;
- :meth:`FolderWriter.finish` writes the manifest (the commit file) last, with
  the dataset files before it, and clears the journal.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from dask_cellucid import codecs
from dask_cellucid.errors import (
    ExportWarning,
    InputShapeError,
    InputValueError,
    TargetExistsError,
)

from . import dataset, journal, kernels, manifest, naming, sparse_gzip
from .spec import MANIFEST_NAME, VAR_DIR, Encoding, FolderOptions, GeneEntry, Layout

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from dask_cellucid.storage import Target
    from dask_cellucid.types import Plan

log = logging.getLogger("dask_cellucid")

_SHOW = 5


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote.

    Attributes
    ----------
    url
        The export folder (local path or URL).
    n_cells, n_genes
        Payload length and number of genes in the manifest.
    n_genes_written
        Genes written by this run (fewer than ``n_genes`` when it resumed).
    payload_bytes
        Total size of the gene payload files.
    seconds
        Wall time of the run.
    layout
        ``"key"`` or ``"index"``.
    manifest
        The ``var_manifest.json`` written, as a dict.
    """

    url: str
    n_cells: int
    n_genes: int
    n_genes_written: int
    payload_bytes: int
    seconds: float
    layout: Layout
    manifest: dict[str, Any] = field(repr=False)

    def __str__(self) -> str:
        resumed = self.n_genes - self.n_genes_written
        extra = f" ({resumed} already written by an earlier run)" if resumed else ""
        return (
            f"Exported {self.n_genes:,} genes x {self.n_cells:,} cells to {self.url}{extra}: "
            f"{_size(self.payload_bytes)} of payloads in {self.seconds:.1f} s."
        )


def _size(n: int) -> str:
    if n >= 2**20:
        return f"{n / 2**20:,.1f} MiB"
    return f"{n / 2**10:,.1f} kB"


def folder_options(
    gene_ids: Sequence[str],
    *,
    encoding: Encoding,
    layout: Layout,
    var_gene_id_column: str | None,
    make_unique: bool,
) -> tuple[list[str], FolderOptions]:
    """Check ids for the layout (renaming them only if asked) and name their files."""
    ids = naming.resolve_ids(gene_ids, layout=layout, make_names_unique=make_unique)
    renamed = sum(a != b for a, b in zip(ids, gene_ids, strict=True))
    if renamed:
        log.info("renamed %d gene id(s) to make them unique", renamed)
    stems = (
        [naming.sanitize_key(i) for i in ids]
        if layout == "key"
        else [str(k) for k in range(len(ids))]
    )
    naming.check_file_name_lengths(ids, stems, encoding.suffix)
    return ids, FolderOptions(encoding, layout, var_gene_id_column, tuple(stems))


# -- the block task -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class BlockJob:
    """What one block task needs: only its own slice of the plan (cheap to ship)."""

    start: int
    n_cells: int
    gene_ids: tuple[str, ...]
    paths: tuple[str, ...]
    encoding: Encoding
    fingerprint: str


def block_jobs(plan: Plan) -> list[BlockJob]:
    fp = plan.fingerprint()
    options: FolderOptions = plan.options
    return [
        BlockJob(
            start=s,
            n_cells=plan.n_cells,
            gene_ids=plan.gene_ids[s : s + n],
            paths=tuple(options.payload_path(p) for p in range(s, s + n)),
            encoding=options.encoding,
            fingerprint=fp,
        )
        for s, n in plan.blocks()
    ]


def encode_files(
    block: Any, job: BlockJob, *, zero_copy: bool = False
) -> tuple[Iterator[Any], list[GeneEntry]]:
    """Encode one block into its payloads, in the order of ``job.paths`` (no I/O).

    Payloads come one gene at a time, and ``entries`` (the manifest entries)
    fills as they are drawn. A sparse block is encoded into one reused
    vector, so the block's payloads are never all in memory. With
    ``zero_copy``, uncompressed payloads are byte views of that vector (or of
    a dense block's encoded array), valid until the next one is drawn: for a
    sink that writes each before drawing the next, such as a local file.
    Otherwise they are copies.
    """
    enc = job.encoding
    _check_block_shape(block, job)
    overflow = kernels.float32_overflow(block)
    if overflow is not None:
        raise InputValueError(overflow_message([job.gene_ids[k] for k in np.flatnonzero(overflow)]))
    # compressed payloads are copies anyway; uncompressed ones may be views
    one_row = bool(enc.compression) or zero_copy
    payloads = kernels.encode_block(block, enc.bits, enc.rounding, one_row=one_row)
    members = _sparse_members(payloads, job.n_cells, enc)
    skip = None
    if members:
        skip = np.zeros(len(job.gene_ids), bool)
        skip[list(members)] = True
    entries: list[GeneEntry] = []

    def each_payload() -> Iterator[Any]:
        for k, row in enumerate(payloads.rows(skip)):
            if k in members:
                data: Any = members[k]
            elif enc.compression:
                data = codecs.gzip_member(row, enc.compression, enc.codec)
            else:
                data = memoryview(row).cast("B") if zero_copy else row.tobytes()
            entries.append(
                GeneEntry(
                    position=job.start + k,
                    gene_id=job.gene_ids[k],
                    lo=float(payloads.lo[k]),
                    hi=float(payloads.hi[k]),
                    n_nonfinite=int(payloads.n_nonfinite[k]),
                    nbytes=len(data),
                )
            )
            yield data

    return each_payload(), entries


def overflow_message(gene_ids: Sequence[str]) -> str:
    """What to say about genes with finite values beyond float32's range."""
    shown = ", ".join(map(repr, gene_ids[:_SHOW])) + (", ..." if len(gene_ids) > _SHOW else "")
    return (
        f"{len(gene_ids)} gene(s) hold finite values beyond float32's range "
        f"(|x| > {kernels.FLOAT32_MAX:.3g}): {shown}. The viewer stores float32, where they "
        "would become Inf. These are not NaN from preprocessing: the values are too large. "
        "Rescale them (e.g. log1p) or clip them, and export again."
    )


def _sparse_members(
    payloads: kernels.BlockPayloads, n_cells: int, enc: Encoding
) -> dict[int, bytes]:
    """Gzip members made by the sparse-aware encoder, by gene, for the genes where it pays.

    Only for compressed payloads: its work grows with the cells that differ
    from the code of zero, not with ``n_cells``, and its output is smaller
    than libdeflate's at level 6 up to a measured density
    (:func:`sparse_gzip.sparse_pays`); denser genes keep the generic codec.
    The choice depends only on a gene's values, so every input kind, block
    size and scheduler gives the same bytes.
    """
    if not enc.compression or enc.sparse == "off":
        return {}
    stored = payloads.stored()
    if stored is None:
        return {}
    # decide and encode on the cells that differ from the fill, whichever the
    # input's kind: a sparse and a dense input of the same values give the same bytes
    stored = kernels.without_fill(stored)
    ptr = stored.indptr.tolist()
    chosen = [
        k
        for k in range(len(ptr) - 1)
        if enc.sparse == "always"
        or sparse_gzip.sparse_pays(ptr[k + 1] - ptr[k], n_cells, enc.itemsize)
    ]
    if not chosen:
        return {}
    if len(chosen) == len(ptr) - 1:
        codes, rows, indptr, fill = stored.codes, stored.indices, stored.indptr, stored.fill
    else:
        spans = [(ptr[k], ptr[k + 1]) for k in chosen]
        codes = np.concatenate([stored.codes[a:b] for a, b in spans])
        rows = np.concatenate([stored.indices[a:b] for a, b in spans])
        indptr = np.concatenate([[0], np.cumsum([b - a for a, b in spans])])
        fill = stored.fill[chosen]
    made = sparse_gzip.gzip_members_csc(codes, rows, indptr, n_cells, fill)
    return dict(zip(chosen, made, strict=True))


def _check_block_shape(block: Any, job: BlockJob) -> None:
    """A block must be what the input's chunks declared: a Dask array can lie."""
    want = (job.n_cells, len(job.gene_ids))
    shape = tuple(getattr(block, "shape", ()))
    if shape != want:
        msg = (
            f"the input's block for genes {job.start}-{job.start + want[1] - 1} has shape "
            f"{shape}, but its chunks declare {want}: a function mapped over the Dask array "
            "(map_blocks...) changed the number of rows or columns without saying so. Fix "
            "that function, or pass chunks=/drop_axis= to map_blocks, and re-run."
        )
        raise InputShapeError(msg)


def write_block(
    block: Any, job: BlockJob, target: Target, flush_group: str | None = None
) -> list[GeneEntry]:
    """The block task: encode, write payloads, then the journal record.

    Each payload is written before the next is encoded. The record is written
    only once every payload of the block is durable. With a ``flush_group``
    that may happen after the task returns (on the process's background flush
    thread): the engine awaits the group's flushes before :meth:`FolderWriter.finish`.
    """
    payloads, entries = encode_files(block, job, zero_copy=target.is_local)
    if job.encoding.compression:
        # Compressed payloads are small copies: write them in one burst at the
        # end, not one file between two compressions (threads creating files
        # in one folder at the same time contend for its lock).
        payloads = iter(list(payloads))

    def write_record() -> None:  # entries are complete once every payload is written
        rel, record = journal.block_record(job.fingerprint, job.start, entries)
        target.write({rel: record})

    # in place: nothing names these files until the record
    target.write_payloads(job.paths, payloads, write_record, flush_group=flush_group)
    return entries


# -- begin and finish -----------------------------------------------------------------------
@dataclass
class FolderWriter:
    """The export folder, as the engine writes it: one per run.

    ``embeddings`` (``{dim: coords}``) and ``identity_options`` make the folder
    open in the viewer on its own (points, obs manifest, identity).
    """

    plan: Plan
    target: Target
    force: bool = False
    resume: bool = True
    embeddings: dict[int, Any] = field(default_factory=dict, repr=False)
    identity_options: dict[str, Any] = field(default_factory=dict, repr=False)
    _done: dict[int, GeneEntry] = field(default_factory=dict, repr=False)
    _existing_identity: dict[str, Any] | None = field(default=None, repr=False)

    block_task = staticmethod(write_block)

    @property
    def encoding(self) -> Encoding:
        return self.plan.options.encoding  # type: ignore[no-any-return]

    def check(self) -> None:
        """Refuse what must be refused, reading only; remember an identity to update."""
        target = self.target
        ident_raw = target.read(dataset.IDENTITY_NAME)
        if self.embeddings:
            if ident_raw is not None and not self.force:
                msg = (
                    f"{target.display_url} already holds a dataset (dataset_identity.json). Pass "
                    "force=True to replace its embedding and identity, or leave out X_umap_* "
                    "to only add genes to it."
                )
                raise TargetExistsError(msg)
            return
        self._existing_identity = dataset.check_existing(
            ident_raw,
            target.read(dataset.OBS_MANIFEST_NAME),
            self.plan.n_cells,
            self.encoding,
        )

    def begin(self) -> list[int]:
        """Withdraw or resume, then record the plan; return the blocks already written."""
        plan, target = self.plan, self.target
        self._done = self._withdraw_or_resume()
        target.prepare(VAR_DIR)
        journal.begin(target, plan)
        done = self._done
        return [
            i for i, (s, n) in enumerate(plan.blocks()) if all(p in done for p in range(s, s + n))
        ]

    def jobs(self, skip: Sequence[int]) -> list[tuple[int, BlockJob]]:
        skipped = set(skip)
        return [(i, job) for i, job in enumerate(block_jobs(self.plan)) if i not in skipped]

    def finish(self, entries: list[GeneEntry], seconds: float) -> ExportResult:
        """Write the dataset files, then the manifest (the commit file), then clear the journal.

        Every payload is durable when this is called (the engine awaited the flushes).
        """
        plan, target, encoding = self.plan, self.target, self.encoding
        written = len(entries)
        have = {e.position for e in entries}
        entries = entries + [e for p, e in self._done.items() if p not in have]
        _warn_about(entries)
        doc = manifest.build(plan, entries)
        if self.embeddings:
            files = dataset.embedding_files(self.embeddings, plan.n_cells, encoding)
            files[dataset.OBS_MANIFEST_NAME] = dataset.dumps(
                dataset.obs_manifest(plan.n_cells, encoding.compression)
            )
            target.write(files)
        target.write({MANIFEST_NAME: manifest.dumps(doc)})
        ident = self._identity()
        if ident is not None:
            target.write({dataset.IDENTITY_NAME: dataset.dumps(ident)})
        journal.clear(target)
        return ExportResult(
            url=target.display_url,
            n_cells=plan.n_cells,
            n_genes=plan.n_genes,
            n_genes_written=written,
            payload_bytes=sum(e.nbytes for e in entries),
            seconds=seconds,
            layout=plan.options.layout,
            manifest=doc,
        )

    def check_identity(self) -> None:
        """Build the identity now, so that a bad ``dataset_id`` is refused before any write."""
        if self.embeddings:
            self._identity(n_genes=0)

    def _identity(self, n_genes: int | None = None) -> dict[str, Any] | None:
        plan = self.plan
        if self.embeddings:
            return dataset.identity(
                n_cells=plan.n_cells,
                n_genes=plan.n_genes if n_genes is None else n_genes,
                dims=sorted(self.embeddings),
                encoding=self.encoding,
                layout=plan.options.layout,
                **self.identity_options,
            )
        if self._existing_identity is not None:
            return dataset.with_genes(self._existing_identity, plan.n_genes, self.encoding.bits)
        return None

    def _withdraw_or_resume(self) -> dict[int, GeneEntry]:
        """Withdraw an old export (with ``force``) or pick up an interrupted one."""
        target, plan = self.target, self.plan
        if journal.has_manifest(target):
            if not self.force:
                msg = (
                    f"{target.display_url} already holds a gene export ({MANIFEST_NAME}). Pass "
                    "force=True to replace it, or choose another out_dir."
                )
                raise TargetExistsError(msg)
            # Withdraw the manifest before the first old payload is touched, so no
            # reader can pair old bounds with new payloads.
            target.remove(MANIFEST_NAME)
            journal.clear(target)
            target.remove_tree(VAR_DIR)
            return {}
        fp = journal.read_fingerprint(target)
        if fp == plan.fingerprint() and self.resume:
            done = journal.completed(target, plan)
            if done:
                log.info("resuming: %d of %d genes already written intact", len(done), plan.n_genes)
            return done
        if fp is not None or journal.has_payloads(target):
            if not self.force:
                # say why this export cannot resume the unfinished one
                if fp == plan.fingerprint():
                    msg = (
                        f"{target.display_url} holds an unfinished run of this same export, and "
                        "resume=False was given. Drop resume=False to finish it, or pass "
                        "force=True to discard it and start over."
                    )
                    raise TargetExistsError(msg)
                raise TargetExistsError(_why_not_resumable(target, plan))
            journal.clear(target)
            target.remove_tree(VAR_DIR)
        return {}


def _why_not_resumable(target: Target, plan: Plan) -> str:
    """Say what differs between this export and the unfinished one in ``target``."""
    head = journal.read_head(target)
    where = target.display_url
    if head.get("settings") == journal.settings_digest(plan) and head.get("source") not in (
        None,
        plan.source_token,
    ):
        return (
            f"{where} holds an unfinished export of the same genes and settings, but from "
            "input data with another token: the data changed, or it is a Dask array whose "
            "name changes every run (made with name=False, or from a random or "
            "time-dependent graph). Pass force=True to discard the unfinished export, or give "
            "the Dask array a fixed name (da.from_array(..., name='my-matrix')) to make runs "
            "resumable."
        )
    return (
        f"{where} holds an unfinished export with other settings, genes or input data. "
        "Re-run with the same arguments (and the same input) to resume it, or pass "
        "force=True to discard it."
    )


def _warn_about(entries: Sequence[GeneEntry]) -> None:
    nonfinite = [e for e in entries if e.n_nonfinite]
    if nonfinite:
        empty = [e.gene_id for e in nonfinite if not e.has_finite]
        names = ", ".join(repr(e.gene_id) for e in nonfinite[:_SHOW])
        msg = (
            f"{len(nonfinite)} gene(s) hold NaN or Inf values ({names}"
            f"{', ...' if len(nonfinite) > _SHOW else ''}); the viewer shows those cells as "
            "missing. This usually comes from dividing by zero in normalisation or scaling: "
            "check the preprocessing that made this matrix."
        )
        if empty:
            msg += f" {len(empty)} gene(s) have no finite value at all."
        warnings.warn(msg, ExportWarning, stacklevel=4)
    zero = [e.gene_id for e in entries if e.all_zero]
    if zero:
        shown = ", ".join(map(repr, zero[:_SHOW])) + (", ..." if len(zero) > _SHOW else "")
        msg = (
            f"{len(zero)} gene(s) are zero in every cell ({shown}); "
            "they are exported, but colour nothing. Filter them out "
            "(e.g. scanpy.pp.filter_genes(adata, min_cells=1)) if that is unexpected."
        )
        warnings.warn(msg, ExportWarning, stacklevel=4)
