"""The store as the engine writes it: :class:`StoreWriter` and the block task.

Each block task gets exactly the genes of one segment (:mod:`.segments`) and
writes whole chunks of ``X/data`` and ``X/indices`` (sparse) or whole column
strips of ``X`` (dense); no two tasks write the same chunk. ``finish`` writes
everything else (:mod:`.elements`), then the consolidated metadata, last.

On a local disk the store is written under a staging name beside
``out_path`` and renamed into place at the end, so a reader never sees a half
store there. On object storage there is no rename: the chunks and documents go
straight to ``out_path``, the consolidated metadata last (a re-run withdraws it
first), and until it exists the store does not open in the browser.

The consolidated metadata is ``.zmetadata`` in zarr v2 and the root
``zarr.json`` in v3 (chunk keys ``c/0`` there). A ``.zarr.zip`` is written as
a folder under a staging name (beside ``out_path``, on a local disk or in the
bucket) and packed into one file at the end (:mod:`.archive`).
"""

from __future__ import annotations

import logging
import os
import posixpath
import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from dask_cellucid.errors import TargetExistsError

from . import archive, journal, kernels
from .elements import Elements, XLayout, metadata_files
from .spec import CONSOLIDATED, V3_METADATA, chunk_name, consolidated_name, strip_chunks

if TYPE_CHECKING:
    from collections.abc import Sequence

    from dask_cellucid.storage import Target
    from dask_cellucid.types import Plan

    from .segments import Segment

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SparseJob:
    """One segment of a sparse ``X``: its chunks, and its genes' global positions."""

    first_chunk: int
    stop_chunk: int
    indptr: np.ndarray  # the segment's genes' n + 1 global positions in X/data
    chunk: int
    nnz: int
    dtype: str
    indices_dtype: str
    codec: str = "zlib"
    fingerprint: str = ""
    zarr_format: int = 2


@dataclass(frozen=True, slots=True)
class DenseJob:
    """Column strips ``[first_strip, ...)`` of a dense ``X``."""

    first_strip: int
    chunks: tuple[int, int]
    dtype: str
    codec: str = "zlib"
    fingerprint: str = ""
    zarr_format: int = 2


def write_segment(
    block: Any, job: SparseJob | DenseJob, target: Target, flush_group: str | None = None
) -> list[Any]:
    """Encode one segment's whole chunks, write them, then the segment's journal record.

    Returns ``[(kind, first, stop)]``. The record is written only once the
    chunks are durable (with a ``flush_group``, perhaps after this returns:
    the engine awaits the group before :meth:`StoreWriter.finish`).
    """
    if isinstance(job, DenseJob):
        arr = block.toarray() if hasattr(block, "toarray") else np.asarray(block)
        arr = arr.astype(job.dtype, copy=False)
        pieces = kernels.dense_chunks(arr, job.first_strip, job.chunks, job.codec, job.zarr_format)
        named = [(f"X/{key}", payload) for key, payload in pieces if payload is not None]
        record = ("dense", job.first_strip, job.first_strip + -(-arr.shape[1] // job.chunks[1]))
    else:
        m = kernels.stored_csc(block, job.dtype)
        counts = np.diff(m.indptr)
        if not np.array_equal(counts, np.diff(job.indptr)):
            msg = (
                "the input changed between the counting pass and the write: a segment's genes "
                "hold other numbers of values now"
            )
            raise AssertionError(msg)
        pieces = kernels.sparse_chunks(
            m,
            int(job.indptr[0]),
            job.first_chunk,
            job.stop_chunk,
            job.chunk,
            job.nnz,
            job.indices_dtype,
            job.codec,
            job.zarr_format,
        )
        named = []
        for c, data, indices in pieces:
            key = chunk_name((c,), job.zarr_format)
            if data is not None:
                named.append((f"X/data/{key}", data))
            if indices is not None:
                named.append((f"X/indices/{key}", indices))
        record = ("sparse", job.first_chunk, job.stop_chunk)
    kind, first, stop = record
    rel, body = journal.segment_record(
        job.fingerprint, kind, first, stop, {path: len(payload) for path, payload in named}
    )
    if named:
        paths, payloads = zip(*named, strict=True)

        def write_record() -> None:
            target.write({rel: body})

        target.write_payloads(list(paths), list(payloads), write_record, flush_group=flush_group)
    else:
        target.write({rel: body})
    return [record]


def count_block(block: Any, start: int, sparse: bool) -> list[kernels.BlockStats]:  # noqa: FBT001
    """The first pass's task: per-gene counts of one block (nothing is written)."""
    return [kernels.block_stats(block, start, sparse=sparse)]


def count_rows(
    block: Any, job: int, positions: np.ndarray | None, n_genes: int
) -> list[kernels.BlockStats]:
    """The first pass's task over a block of rows: per-gene counts of every gene."""
    return [kernels.row_block_stats(block, positions, n_genes)]


@dataclass(frozen=True)
class StoreResult:
    """What :func:`~dask_cellucid.store_api.prepare_store` wrote."""

    path: str
    n_cells: int
    n_genes: int
    nnz: int
    dtype: str
    sparse: bool
    n_tasks: int
    seconds: float
    #: Segment tasks an earlier, interrupted run had finished (not run again).
    n_tasks_reused: int = 0

    def __str__(self) -> str:
        what = f"{self.nnz:,} stored values" if self.sparse else "dense"
        reused = ""
        if self.n_tasks_reused:
            reused = f", {self.n_tasks_reused} reused from an earlier run"
        return (
            f"wrote {self.path}: {self.n_cells:,} cells x {self.n_genes:,} genes ({what}, "
            f"{self.dtype}) in {self.n_tasks} tasks{reused}, {self.seconds:.2f} s"
        )


def is_zarr_store(target: Target) -> bool:
    return target.exists(".zgroup") or target.exists(V3_METADATA)


@dataclass
class StoreWriter:
    """One run's writer. ``target`` is where the chunks go (the staging folder on a local
    disk), ``final`` the store's place."""

    plan: Plan
    target: Target
    final: Target
    segments: Sequence[Segment]
    elements: Elements = field(repr=False)
    layout: XLayout = field(repr=False)
    force: bool = False
    #: What the chunk bytes depend on (see :mod:`.journal`); resuming needs it.
    fingerprint: str = ""
    n_reused: int = field(default=0, init=False)
    _builder: ThreadPoolExecutor | None = field(default=None, init=False, repr=False)
    _metadata: Future[Any] | None = field(default=None, init=False, repr=False)

    block_task = staticmethod(write_segment)

    def check(self) -> None:
        """Refuse an existing ``out_path`` without ``force``, and anything but a store with it."""
        check_destination(self.final, force=self.force, zipped=self.plan.options.zipped)

    def begin(self) -> list[int]:
        """Resume an unfinished run of this same store, or withdraw what is there.

        Returns the segments whose every chunk an earlier run wrote intact. An
        old complete store (``force``) loses its consolidated metadata before
        anything else, so no reader pairs it with new chunks; an unfinished run
        of another store is discarded. A ``.zarr.zip`` is replaced only when
        the new one is packed: its staging folder is what resumes.
        """
        target, kind = self.target, ("sparse" if self.layout.sparse else "dense")
        opts = self.plan.options
        done: set[int] = set()
        in_place = not (self.final.is_local or opts.zipped)
        finished = in_place and (self.final.exists(CONSOLIDATED) or self.final.exists(V3_METADATA))
        if finished:
            # a reader must never open a mix of the old store and this one
            self.final.remove(CONSOLIDATED)
            self.final.remove(V3_METADATA)
            self.final.remove_tree("")
        elif journal.read_fingerprint(target) == self.fingerprint and self.fingerprint:
            done = journal.completed(target, self.fingerprint, kind)
        elif not in_place or journal.read_fingerprint(target) is not None:
            # the staging folder, or an unfinished store of other data or settings
            target.remove_tree("")
        grid = "" if opts.zarr_format == 2 else "/c"
        arrays = ("X/data", "X/indices") if self.layout.sparse else ("X",)
        self.target.prepare(*(f"{a}{grid}" for a in arrays))
        journal.begin(target, self.fingerprint)
        skip = [
            i
            for i, seg in enumerate(self.segments)
            if all(c in done for c in range(seg.first_chunk, seg.stop_chunk))
        ]
        if skip:
            log.info(
                "resuming: %d of %d segment tasks already written intact",
                len(skip),
                len(self.segments),
            )
        self.n_reused = len(skip)
        # The other elements' bytes (obs, var, obsm, uns, X's metadata) need nothing the
        # chunk tasks compute: build them on a thread of this process while the tasks
        # run (most of their time is spent in deflate, outside the GIL).
        self._builder = ThreadPoolExecutor(1, thread_name_prefix="store-metadata")
        self._metadata = self._builder.submit(
            metadata_files, self.elements, self.layout, opts.zarr_format
        )
        return skip

    def jobs(self, skip: Sequence[int]) -> list[tuple[int, Any]]:
        done = set(skip)
        opts = self.plan.options
        out: list[tuple[int, Any]] = []
        for i, seg in enumerate(self.segments):
            if i in done:
                continue
            if opts.sparse:
                assert self.layout.indptr is not None
                job: Any = SparseJob(
                    seg.first_chunk,
                    seg.stop_chunk,
                    np.asarray(
                        self.layout.indptr[seg.first_gene : seg.stop_gene + 1], dtype=np.int64
                    ),
                    self.layout.chunk,
                    opts.nnz,
                    opts.dtype,
                    "int64" if self.plan.n_cells > 2**31 - 1 else "int32",
                    opts.codec,
                    self.fingerprint,
                    zarr_format=opts.zarr_format,
                )
            else:
                job = DenseJob(
                    seg.first_chunk,
                    strip_chunks(*self.layout.shape),
                    opts.dtype,
                    opts.codec,
                    self.fingerprint,
                    zarr_format=opts.zarr_format,
                )
            out.append((i, job))
        return out

    def finish(self, records: list[Any], seconds: float) -> StoreResult:
        """Everything else, then the consolidated metadata; then the rename into place."""
        zarr_format = self.plan.options.zarr_format
        if self._metadata is not None:  # built while the chunk tasks ran
            files, consolidated = self._metadata.result()
        else:
            files, consolidated = metadata_files(self.elements, self.layout, zarr_format)
        self._stop_builder()
        self.target.prepare(*sorted({posixpath.dirname(k) for k in files} - {""}))
        self.target.write(files)
        self.target.write({consolidated_name(zarr_format): consolidated})
        journal.clear(self.target)
        if self.plan.options.zipped:
            archive.pack_into_place(self.target, self.final)
        elif self.final.is_local and self.target.root != self.final.root:
            place(self.target.root, self.final.root)
        n_cells, n_genes = self.layout.shape
        return StoreResult(
            path=self.final.display_url,
            n_cells=n_cells,
            n_genes=n_genes,
            nnz=self.plan.options.nnz,
            dtype=self.plan.options.dtype,
            sparse=self.layout.sparse,
            n_tasks=len(self.segments),
            seconds=seconds,
            n_tasks_reused=self.n_reused,
        )

    def _stop_builder(self) -> None:
        if self._builder is not None:
            self._builder.shutdown(wait=False, cancel_futures=True)
            self._builder = None

    def abandon(self) -> None:
        """Say where a failed run's chunks are: the same call finishes the store from them."""
        self._stop_builder()
        if self.target.exists(journal.JOURNAL_DIR + "/store.json"):
            log.warning(
                "the store is unfinished (its chunks so far are in %s); run the same export "
                "again to finish it",
                self.target.display_url,
            )


def check_destination(final: Target, *, force: bool, zipped: bool = False) -> None:
    """``out_path`` absent, or (with ``force``) a zarr store that may be replaced.

    A ``.zarr.zip`` (``zipped``) replaces only a file, never a folder or a link.
    """
    if zipped:
        archive.check_zip_destination(final, force=force)
        return
    if final.is_local:
        path = final.root
        if not (os.path.lexists(path)):
            return
        if not force:
            msg = f"{path} already exists; pass force=True to replace it."
            raise TargetExistsError(msg)
        if os.path.islink(path) or not os.path.isdir(path) or not is_zarr_store(final):
            msg = (
                f"{path} exists and is not a Zarr store, so force=True does not replace it; "
                "remove it yourself if it should go."
            )
            raise TargetExistsError(msg)
        return
    unfinished = journal.read_fingerprint(final) is not None and not final.exists(CONSOLIDATED)
    if force or unfinished:
        return  # replaced, or an unfinished run of ours: finished or started over
    if final.exists(CONSOLIDATED) or is_zarr_store(final):
        msg = f"{final.display_url} already holds a store; pass force=True to replace it."
        raise TargetExistsError(msg)


def staging_path(final_root: str) -> str:
    """The local staging folder beside ``final_root``: one name, so a re-run finds it."""
    parent, name = os.path.split(final_root.rstrip("/"))
    return os.path.join(parent, f".{name}.partial")


def staging_target(final: Target, *, zipped: bool = False) -> Target:
    """Where the chunks go: a staging folder beside a local ``out_path`` (or beside a
    ``.zarr.zip`` URL, packed and uploaded at the end), else ``out_path`` itself."""
    if final.is_local:
        return type(final).from_url(staging_path(final.root))
    if zipped:
        parent, name = final.url.rstrip("/").rsplit("/", 1)
        return type(final)(f"{parent}/.{name}.partial", final.storage_options)
    return final


def place(staging: str, final: str) -> None:
    """Move the complete staging folder to ``final``, replacing an old store only then."""
    replaced = f"{staging}.replaced"
    had = os.path.lexists(final)
    if had:
        os.replace(final, replaced)
    try:
        os.replace(staging, final)
    except BaseException:
        if had:
            os.replace(replaced, final)
        raise
    if had:
        if os.path.isdir(replaced) and not os.path.islink(replaced):
            shutil.rmtree(replaced, ignore_errors=True)
        else:
            os.unlink(replaced)
