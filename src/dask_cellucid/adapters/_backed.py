"""Gene-column blocks from a matrix on disk, in bounded memory.

* **CSC** storage is read by column blocks directly: one task per block reads
  that block's columns (anndata's ``sparse_dataset``), one pass over the file.
* **Dense** storage is read in tiles: one task per block reads its columns in
  row tiles of at most ``_TILE_BYTES``.
* **CSR** storage is stored by cells but written by genes. Row slabs are read
  once each, converted to CSC (one conversion beats slicing columns out of
  CSR), and gene-column blocks are assembled from the pieces. Three ways,
  chosen by :func:`choose_strategy`:

  ``memory``
      One pass: every slab's CSC pieces are kept in memory until the blocks are
      assembled. Used when the selected genes' stored values fit the budget.
  ``spill``
      One pass: each slab's CSC piece goes to a scratch file (a *shard*).
      Then one *regroup* task per group of consecutive blocks (a group's
      stored values fit one task's share of the budget) reads the group's
      column range from every shard (three large reads per shard), interleaves
      the pieces into the group's CSC and writes one scratch file per block;
      each block task reads its file in one go (and removes it). Reads per
      shard grow with the groups, not with the blocks, so the cost stays
      linear in the stored values; regrouping overlaps with the encoding of
      the groups already done. Memory is a few slabs, groups and blocks,
      whatever the matrix size. Needs scratch space up to twice the size of
      the selected stored values, visible to every worker.
  ``passes``
      Several passes, one per group of genes that fits the budget: no scratch
      space, at the cost of reading the file once per group.

Each task opens the file itself (from a picklable :class:`MatrixRef`).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import uuid
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import dask
import dask.array as da
import numpy as np
import scipy.sparse as sp
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from dask_cellucid._graph import READ_PREFIX
from dask_cellucid.errors import InvalidOptionError, UnsupportedInputError
from dask_cellucid.options import process_rss

from ._base import Source
from ._stack import column_counts, put_piece, stacked_layout

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._files import Inspected, MatrixRef

log = logging.getLogger(__name__)

Strategy = Literal["auto", "memory", "spill", "passes"]
STRATEGIES = ("auto", "memory", "spill", "passes")

# Working memory of one slab task per stored value read: the value and its
# index as read, the export position of its column (int32) and the kept-mask,
# and the CSC copy (value + int32 row index).
_SLAB_BYTES_PER_NNZ_EXTRA = 4 + 1 + 4 + 8
# A slab task never holds more than this, whatever the budget: larger slabs
# only add memory, not speed.
_MAX_SLAB_BYTES = 256 * 2**20
_MIN_SLAB_ROWS = 16
_TILE_BYTES = 32 * 2**20
# Shards of slabs with at most this many rows keep their row indices as uint16.
_U16_ROWS = 2**16
# Memory a kept CSC piece costs per stored value beyond value + row index: the
# block assembled from it while the piece is still held.
_GROUP_OVERHEAD = 2.0


@dataclass(frozen=True)
class Selection:
    """Which columns go out: ``pos`` maps each file column to its export position (or -1);
    ``cols`` lists the file column of each export position (used when one repeats).

    ``identity``: every column, in file order (the slab's own CSC is the answer).
    """

    kind: Literal["pos", "cols"]
    arr: np.ndarray
    identity: bool = False


@dataclass(frozen=True)
class Shard:
    """One slab's CSC piece in a scratch file: ``indptr`` (int64), ``indices``, ``data``.

    Row indices are local to the slab: uint16 when the slab has at most 65,536
    rows (a quarter less scratch to write and read back), int32 otherwise.
    """

    path: str
    row0: int
    n_rows: int
    n_cols: int
    nnz: int
    dtype: str
    index_dtype: str = "<i4"

    def offsets(self) -> tuple[int, int]:
        """Byte offsets of ``indices`` and ``data`` in the file."""
        at = 8 * (self.n_cols + 1)
        return at, at + np.dtype(self.index_dtype).itemsize * self.nnz


@dataclass(frozen=True)
class BlockFile:
    """One block's CSC in a scratch file, written by a regroup task for its block task."""

    path: str
    n_cols: int
    nnz: int
    dtype: str


def _token(*_: Any) -> int:
    """A tiny result that only orders tasks (the barrier between passes)."""
    return 0


@dataclass
class FileSource(Source):
    """A matrix inside an .h5ad or .zarr file, read lazily by the graph's tasks."""

    info: Inspected | None = None
    max_memory: int = 4 * 2**30
    strategy: Strategy = "auto"
    scratch_dir: str | None = None
    n_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    # filled in by column_blocks, for logs and the benchmark
    chosen: str | None = field(default=None, init=False)
    passes: int | None = field(default=None, init=False)
    _cleanup: list[Any] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            msg = f"strategy={self.strategy!r} must be one of {', '.join(STRATEGIES)}."
            raise InvalidOptionError(msg)

    @property
    def _info(self) -> Inspected:
        assert self.info is not None
        return self.info

    @property
    def shape(self) -> tuple[int, int]:
        return self._info.shape

    @property
    def dtype(self) -> np.dtype[Any]:
        return self._info.dtype

    @property
    def is_sparse(self) -> bool:
        return self._info.encoding != "array"

    @property
    def density(self) -> float:
        n = self.shape[0] * self.shape[1]
        return (self._info.nnz or 0) / n if n else 0.0

    def data_token(self) -> str:
        """The stamps (sizes, modification times) of the file, or of the zarr element."""
        from dask_cellucid.storage import Target

        ref = self._info.ref
        target = Target.from_url(ref.url, ref.storage_options or None)
        rel = ref.elem if ref.fmt == "zarr" else ""
        return f"{ref.elem}:{target.stamp(rel)}"

    def bytes_per_value(self) -> float:
        if not self.is_sparse:
            return self.dtype.itemsize + 4 + 4
        return 4 + self.density * (self.dtype.itemsize + 4 + 4 + 8 + 8)

    def row_blocks(self, values_per_block: int) -> da.Array | None:
        """CSR storage read by slabs of rows, as stored: no transposition, no scratch."""
        if not (self.is_sparse and self._info.encoding == "csr_matrix"):
            return None
        n_cells, n_genes = self.shape
        per_row = max(1.0, (self._info.nnz or 0) / max(1, n_cells))
        rows = int(min(n_cells, self.slab_rows(), max(_MIN_SLAB_ROWS, values_per_block // per_row)))
        starts = list(range(0, n_cells, max(1, rows)))
        name = f"cellucid-file-rows-{uuid.uuid4().hex}"
        layer = {
            (name, i, 0): (_read_rows, self._info.ref, r0, min(r0 + rows, n_cells))
            for i, r0 in enumerate(starts)
        }
        chunks = (tuple(min(r0 + rows, n_cells) - r0 for r0 in starts), (n_genes,))
        graph = HighLevelGraph.from_collections(name, layer, dependencies=())
        return da.Array(graph, name, chunks, meta=sp.csr_matrix((0, 0), dtype=self.dtype))

    # -- the graph --------------------------------------------------------------------
    def column_blocks(self, columns: Sequence[int], block_sizes: Sequence[int]) -> da.Array:
        cols = np.asarray(columns, dtype=np.int64)
        sizes = tuple(int(s) for s in block_sizes)
        if sum(sizes) != len(cols):
            msg = f"block sizes {sum(sizes)} do not add up to {len(cols)} columns"
            raise AssertionError(msg)
        enc = self._info.encoding
        if enc == "csc_matrix":
            self.chosen, self.passes = "columns", 1
            blocks = self._direct_blocks(cols, sizes, _read_csc_block)
        elif enc == "array":
            self.chosen, self.passes = "tiles", 1
            blocks = self._direct_blocks(cols, sizes, _read_dense_block)
        else:
            blocks = self._csr_blocks(cols, sizes)
        log.info(
            "reading %s (%s, %s) with strategy=%s; passes over the file: %d",
            self._info.ref.url,
            self._info.ref.elem,
            enc,
            self.chosen,
            self.passes,
        )
        meta = (
            sp.csc_matrix((0, 0), dtype=self.dtype)
            if self.is_sparse
            else np.empty((0, 0), self.dtype)
        )
        arrays = [
            da.from_delayed(b, shape=(self.shape[0], w), dtype=self.dtype, meta=meta)
            for b, w in zip(blocks, sizes, strict=True)
        ]
        return arrays[0] if len(arrays) == 1 else da.concatenate(arrays, axis=1)

    def _direct_blocks(self, cols: np.ndarray, sizes: tuple[int, ...], reader: Any) -> list[Any]:
        ref, n_cells = self._info.ref, self.shape[0]
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int)
        return [
            dask.delayed(reader, pure=True)(ref, cols[s : s + w], n_cells, self.dtype)
            for s, w in zip(starts, sizes, strict=True)
        ]

    # -- CSR ----------------------------------------------------------------------------
    def _slab_bytes_per_row(self) -> float:
        n_cells = self.shape[0]
        nnz = self._info.nnz or 0
        per_row = max(1.0, nnz / max(1, n_cells)) * (
            self.dtype.itemsize + 4 + _SLAB_BYTES_PER_NNZ_EXTRA
        )
        return per_row + 8  # indptr

    def slab_rows(self) -> int:
        """Rows per slab task: its working memory within its share of the budget."""
        share = min(_MAX_SLAB_BYTES, self.max_memory // (4 * max(1, self.n_threads)))
        return int(min(self.shape[0], max(_MIN_SLAB_ROWS, share // self._slab_bytes_per_row())))

    def smallest_budget(self) -> int:
        """The least ``max_memory`` this input can be read in.

        Each thread's share (a quarter of the budget per thread) must hold one
        slab of :data:`_MIN_SLAB_ROWS` rows and one block task of one gene.
        """
        one_gene = self.shape[0] * self.bytes_per_value()
        need = one_gene
        if self.is_sparse and self._info.encoding == "csr_matrix":
            need = max(need, min(self.shape[0], _MIN_SLAB_ROWS) * self._slab_bytes_per_row())
        return int(4 * max(1, self.n_threads) * need) + 1

    def check_budget(self) -> None:
        """Refuse a ``max_memory`` below :meth:`smallest_budget`, naming the least that works."""
        least = self.smallest_budget()
        if self.max_memory < least:
            msg = (
                f"max_memory={self.max_memory:,} bytes is too small to read this "
                f"{self.shape[0]:,} x {self.shape[1]:,} matrix on {self.n_threads} thread(s): "
                f"it needs at least {_size(least)} (a slab of {_MIN_SLAB_ROWS} rows and a "
                f"block task of one gene, per thread). Pass max_memory='{_size(least)}' or "
                "more (or fewer workers)."
            )
            raise InvalidOptionError(msg)
        base = process_rss()
        if base and self.max_memory < base + least:
            log.warning(
                "max_memory=%s is below what this process already holds (%s: the interpreter "
                "and libraries) plus the least the reader needs (%s): the process's peak "
                "memory will exceed it. Pass max_memory='%s' or more to bound the whole process.",
                _size(self.max_memory),
                _size(base),
                _size(least),
                _size(2 * base + least),
            )

    def selected_nnz_bytes(self, n_selected: int) -> float:
        """Estimated bytes of the selected genes' stored values (value + int32 row index)."""
        nnz = self._info.nnz or 0
        return nnz * (n_selected / max(1, self.shape[1])) * (self.dtype.itemsize + 4)

    def choose(self, n_selected: int, block_sizes: Sequence[int]) -> tuple[str, int]:
        """The CSR strategy and its number of passes over the file."""
        slab_mem = (
            self.slab_rows()
            * max(1.0, (self._info.nnz or 0) / max(1, self.shape[0]))
            * (self.dtype.itemsize + 4 + _SLAB_BYTES_PER_NNZ_EXTRA)
        )
        free = self.max_memory - self.n_threads * slab_mem
        group_cost = self.selected_nnz_bytes(n_selected) * _GROUP_OVERHEAD
        fits_once = group_cost <= free
        strategy = self.strategy
        if strategy == "auto":
            strategy = "memory" if fits_once else "spill"
        if strategy == "memory":
            if not fits_once:
                log.warning(
                    "strategy='memory' keeps ~%.0f MiB of the matrix in memory, more than "
                    "max_memory allows (%.0f MiB free)",
                    group_cost / 2**20,
                    max(0, free) / 2**20,
                )
            return "memory", 1
        if strategy == "spill":
            return "spill", 1
        passes = max(1, math.ceil(group_cost / max(1.0, free)))
        return "passes", min(passes, len(block_sizes))

    def _csr_blocks(self, cols: np.ndarray, sizes: tuple[int, ...]) -> list[Any]:
        n_cells, n_genes = self.shape
        ref = self._info.ref
        rows = self.slab_rows()
        slabs = [(r, min(r + rows, n_cells)) for r in range(0, n_cells, rows)]
        self.chosen, self.passes = self.choose(len(cols), sizes)
        unique = len(np.unique(cols)) == len(cols)
        if unique:
            col_pos = np.full(n_genes, -1, dtype=np.int32 if len(cols) < 2**31 else np.int64)
            col_pos[cols] = np.arange(len(cols), dtype=col_pos.dtype)
            identity = len(cols) == n_genes and bool(np.all(cols == np.arange(n_genes)))
            selection: Any = dask.delayed(
                Selection("pos", col_pos, identity), pure=True, traverse=False
            )
        else:  # the same column twice: select by fancy indexing
            selection = dask.delayed(Selection("cols", cols), pure=True, traverse=False)
        starts = [0, *np.cumsum(sizes).tolist()]
        if self.chosen == "spill":
            return self._spill_blocks(ref, slabs, selection, len(cols), starts)
        return self._pass_blocks(ref, slabs, selection, starts, self.passes)

    def _pass_blocks(
        self,
        ref: MatrixRef,
        slabs: list[tuple[int, int]],
        selection: Any,
        starts: list[int],
        passes: int,
    ) -> list[Any]:
        n_blocks = len(starts) - 1
        # Cut the blocks into `passes` groups of about equal gene count.
        cut = np.linspace(0, n_blocks, passes + 1).round().astype(int)
        blocks: list[Any] = []
        barrier: Any = None
        for p in range(passes):
            b0, b1 = int(cut[p]), int(cut[p + 1])
            g0, g1 = starts[b0], starts[b1]
            tag = tokenize(ref, selection, g0, g1, barrier, slabs)
            pieces = [
                dask.delayed(_read_piece, pure=True)(
                    ref,
                    r0,
                    r1,
                    selection,
                    g0,
                    g1,
                    barrier,
                    dask_key_name=f"{READ_PREFIX}-piece-{tag}-{i}",
                )
                for i, (r0, r1) in enumerate(slabs)
            ]
            # one task gathers the pass's pieces: the graph grows with slabs + blocks,
            # not slabs x blocks
            gathered = dask.delayed(_collect, pure=True)(*pieces)
            group = [
                dask.delayed(_assemble, pure=True)(gathered, starts[b] - g0, starts[b + 1] - g0)
                for b in range(b0, b1)
            ]
            blocks.extend(group)
            if p + 1 < passes:
                # The next pass starts only once this pass's blocks are assembled, so at
                # most one group of pieces is held at a time.
                barrier = dask.delayed(_token, pure=True)(
                    *[dask.delayed(_token, pure=True)(b) for b in group]
                )
        return blocks

    def _spill_blocks(
        self,
        ref: MatrixRef,
        slabs: list[tuple[int, int]],
        selection: Any,
        n_sel: int,
        starts: list[int],
    ) -> list[Any]:
        base = (
            self.scratch_dir
            or dask.config.get("temporary-directory", None)
            or tempfile.gettempdir()
        )
        os.makedirs(base, exist_ok=True)
        scratch = tempfile.mkdtemp(prefix="dask-cellucid-spill-", dir=base)
        # Removed when this source is dropped (or at exit); a new export gets its own.
        self._cleanup.append(weakref.finalize(self, shutil.rmtree, scratch, True))
        log.info("spilling CSC shards to %s", scratch)
        tag = uuid.uuid4().hex[:8]
        shards = [
            dask.delayed(_write_shard, pure=False)(
                ref,
                r0,
                r1,
                selection,
                n_sel,
                os.path.join(scratch, f"shard-{i:06d}-{tag}.bin"),
                dask_key_name=f"{READ_PREFIX}-shard-{tag}-{i}",
            )
            for i, (r0, r1) in enumerate(slabs)
        ]
        # one task gathers the shards' small descriptions: the graph grows with
        # slabs + groups + blocks, not slabs x blocks
        written = dask.delayed(_collect, pure=True)(*shards, dask_key_name=f"shards-{tag}")
        blocks: list[Any] = []
        for g, (b0, b1) in enumerate(self.groups(starts)):
            bounds = [(starts[b], starts[b + 1]) for b in range(b0, b1)]
            files = dask.delayed(_regroup, pure=False)(
                written,
                bounds,
                os.path.join(scratch, f"group-{g:06d}-{tag}"),
                dask_key_name=f"regroup-{tag}-{g}",
            )
            blocks.extend(
                dask.delayed(_load_block, pure=True)(
                    files, k, self.shape[0], self.dtype, dask_key_name=f"load-{tag}-{b0 + k}"
                )
                for k in range(b1 - b0)
            )
        return blocks

    def group_bytes(self) -> int:
        """The most stored-value bytes one regroup task gathers (its share of the budget)."""
        return max(1, self.max_memory // (4 * max(1, self.n_threads)))

    def groups(self, starts: Sequence[int]) -> list[tuple[int, int]]:
        """Consecutive blocks ``[b0, b1)`` whose stored values fit :meth:`group_bytes`."""
        per_col = (self._info.nnz or 0) / max(1, self.shape[1]) * (self.dtype.itemsize + 4)
        limit = self.group_bytes()
        out: list[tuple[int, int]] = []
        b0 = 0
        for b in range(1, len(starts)):
            if b > b0 + 1 and (starts[b] - starts[b0]) * per_col > limit:
                out.append((b0, b - 1))
                b0 = b - 1
        if len(starts) > 1:
            out.append((b0, len(starts) - 1))
        return out


# -- task functions (module level: they pickle by reference) ---------------------------
def _size(n: int) -> str:
    """``n`` bytes rounded up, as dask's parse_bytes reads it back (``12KiB``, ``3MiB``)."""
    for unit, k in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= k:
            return f"{-(-n // k)}{unit}"
    return f"{n}B"


def _collect(*parts: Any) -> list[Any]:
    return list(parts)


def _read_rows(ref: MatrixRef, r0: int, r1: int) -> sp.csr_matrix:
    """Rows ``r0:r1`` of a CSR matrix on disk, via anndata's sparse dataset."""
    from anndata.io import sparse_dataset

    with ref.open() as elem:
        ds = sparse_dataset(elem, should_cache_indptr=False)
        block = ds[r0:r1]
    return sp.csr_matrix(block)


def _select_csc(slab: sp.csr_matrix, selection: Selection, g0: int, g1: int) -> sp.csc_matrix:
    """Export positions ``g0:g1`` of a CSR slab, as CSC (sorted, in export order)."""
    kind, arr = selection.kind, selection.arr
    if selection.identity and (g0, g1) == (0, slab.shape[1]):
        return slab.tocsc()
    if kind == "cols":
        return sp.csc_matrix(slab.tocsc()[:, arr[g0:g1]])
    pos = arr[slab.indices]
    keep = (pos >= g0) & (pos < g1) if (g0, g1) != (0, int(arr.max()) + 1) else pos >= 0
    kept = np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])
    indptr = kept[slab.indptr]
    part = sp.csr_matrix(
        (slab.data[keep], (pos[keep] - g0).astype(np.int32), indptr), shape=(slab.shape[0], g1 - g0)
    )
    return sp.csc_matrix(part.tocsc())


def _read_piece(
    ref: MatrixRef,
    r0: int,
    r1: int,
    selection: Selection,
    g0: int,
    g1: int,
    barrier: Any = None,
) -> sp.csc_matrix:
    """One slab's share of one pass: its rows, the pass's genes, as CSC."""
    return _select_csc(_read_rows(ref, r0, r1), selection, g0, g1)


def _assemble(pieces: Sequence[sp.csc_matrix], c0: int, c1: int) -> sp.csc_matrix:
    """Columns ``c0:c1`` of the pieces stacked by rows, each piece copied in once."""
    ptrs = [np.asarray(p.indptr[c0 : c1 + 1], dtype=np.int64) for p in pieces]
    out = stacked_layout(np.stack([column_counts(q) for q in ptrs]), pieces[0].dtype)
    row0 = 0
    for k, (p, q) in enumerate(zip(pieces, ptrs, strict=True)):
        a, b = int(q[0]), int(q[-1])
        put_piece(out, k, q, p.indices[a:b], p.data[a:b], row0)
        row0 += p.shape[0]
    return sp.csc_matrix((out.data, out.indices, out.indptr), shape=(row0, c1 - c0))


def _write_shard(
    ref: MatrixRef, r0: int, r1: int, selection: Selection, n_sel: int, path: str
) -> Shard:
    """Read a slab, convert it to CSC over the selected genes, write it raw to ``path``.

    Layout: ``indptr`` (int64, ``n_sel + 1``), ``indices`` (uint16 or int32, nnz:
    see :class:`Shard`), ``data``. Written under a temporary name and renamed,
    so a reader never sees half a shard.
    """
    csc = _select_csc(_read_rows(ref, r0, r1), selection, 0, n_sel)
    index_dtype = np.dtype(np.uint16 if r1 - r0 <= _U16_ROWS else np.int32)
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        for arr in (
            np.asarray(csc.indptr, dtype=np.int64),
            np.asarray(csc.indices, dtype=index_dtype),
            csc.data,
        ):
            f.write(memoryview(np.ascontiguousarray(arr)).cast("B"))
    os.replace(tmp, path)
    return Shard(path, r0, r1 - r0, n_sel, int(csc.nnz), csc.data.dtype.str, index_dtype.str)


def _missing(path: str) -> UnsupportedInputError:
    """The error for a scratch file that is not there (the workers do not share it)."""
    msg = (
        f"scratch file {path} is missing: the workers do not share the scratch "
        "folder. Set dask's 'temporary-directory' to a folder every worker sees, or "
        "export with DASK_CELLUCID__CSR_STRATEGY=passes."
    )
    return UnsupportedInputError(msg)


def _pread(fd: int, dtype: np.dtype[Any], offset: int, count: int) -> np.ndarray:
    """``count`` items of ``dtype`` at byte ``offset`` of an open file, in one buffer."""
    out = np.empty(count, dtype)
    view = memoryview(out).cast("B")
    done = 0
    while done < len(view):
        n = os.preadv(fd, [view[done:]], offset + done)
        if n <= 0:
            msg = f"scratch file ended early (wanted {len(view)} bytes at {offset})"
            raise UnsupportedInputError(msg)
        done += n
    return out


def _open_shard(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY)
    except FileNotFoundError as err:
        raise _missing(path) from err


def _regroup(
    shards: Sequence[Shard], bounds: Sequence[tuple[int, int]], stem: str
) -> list[BlockFile]:
    """Columns of consecutive blocks from every shard, interleaved, one scratch file per block.

    Reads three contiguous ranges per shard (the group's ``indptr``, ``indices``
    and ``data``), places each piece in the group's CSC (see
    :mod:`._stack`) and writes each block's columns to ``{stem}-{k}.bin``.
    """
    g0, g1 = bounds[0][0], bounds[-1][1]
    # Each shard is opened for one read at a time (not all at once: an atlas has
    # more shards than a process may have open files).
    ptrs = []
    for shard in shards:
        fd = _open_shard(shard.path)
        try:
            ptrs.append(_pread(fd, np.dtype(np.int64), 8 * g0, g1 - g0 + 1))
        finally:
            os.close(fd)
    counts = np.stack([column_counts(p) for p in ptrs]) if ptrs else np.zeros((0, g1 - g0))
    dtype = np.dtype(shards[0].dtype) if shards else np.dtype(np.float32)
    out = stacked_layout(counts, dtype)
    for k, (shard, ptr) in enumerate(zip(shards, ptrs, strict=True)):
        a, b = int(ptr[0]), int(ptr[-1])
        at_indices, at_data = shard.offsets()
        index_dtype = np.dtype(shard.index_dtype)
        fd = _open_shard(shard.path)
        try:
            indices = _pread(fd, index_dtype, at_indices + index_dtype.itemsize * a, b - a)
            data = _pread(fd, dtype, at_data + dtype.itemsize * a, b - a)
        finally:
            os.close(fd)
        put_piece(out, k, ptr, indices, data, shard.row0)
        del indices, data
    files = []
    for k, (c0, c1) in enumerate(bounds):
        lo, hi = c0 - g0, c1 - g0
        a, b = int(out.indptr[lo]), int(out.indptr[hi])
        path = f"{stem}-{k}.bin"
        with open(path, "wb") as f:
            for arr in (out.indptr[lo : hi + 1] - a, out.indices[a:b], out.data[a:b]):
                f.write(memoryview(np.ascontiguousarray(arr)).cast("B"))
        files.append(BlockFile(path, hi - lo, b - a, dtype.str))
    return files


def _load_block(
    files: Sequence[BlockFile], k: int, n_cells: int, dtype: np.dtype[Any]
) -> sp.csc_matrix:
    """Block ``k`` of a regrouped group: its file read in one go, then removed."""
    f = files[k]
    try:
        raw = np.fromfile(f.path, dtype=np.uint8)
    except FileNotFoundError as err:
        raise _missing(f.path) from err
    os.unlink(f.path)
    at = 8 * (f.n_cols + 1)
    indptr = raw[:at].view(np.int64)
    indices = raw[at : at + 4 * f.nnz].view(np.int32)
    data = raw[at + 4 * f.nnz :].view(np.dtype(f.dtype))
    out = sp.csc_matrix((data, indices, indptr), shape=(n_cells, f.n_cols))
    return out.astype(dtype, copy=False)


def _ordered(cols: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Sorted unique columns to read, and how to put them back in the asked order."""
    uniq, inverse = np.unique(cols, return_inverse=True)
    if len(uniq) == len(cols) and np.array_equal(uniq, cols):
        return uniq, None
    return uniq, inverse


def _read_csc_block(
    ref: MatrixRef, cols: np.ndarray, n_cells: int, dtype: np.dtype[Any]
) -> sp.csc_matrix:
    """One block of a CSC matrix on disk: its columns, read directly."""
    from anndata.io import sparse_dataset

    uniq, inverse = _ordered(cols)
    with ref.open() as elem:
        ds = sparse_dataset(elem, should_cache_indptr=False)
        if uniq[-1] - uniq[0] + 1 == len(uniq):
            block = ds[:, int(uniq[0]) : int(uniq[-1]) + 1]
        else:
            block = ds[:, uniq]
    block = sp.csc_matrix(block)
    if inverse is not None:
        block = block[:, inverse]
    return sp.csc_matrix(block)


def _read_dense_block(
    ref: MatrixRef, cols: np.ndarray, n_cells: int, dtype: np.dtype[Any]
) -> np.ndarray:
    """One block of a dense matrix on disk, read in row tiles of its columns."""
    uniq, inverse = _ordered(cols)
    lo, hi = int(uniq[0]), int(uniq[-1]) + 1
    span = hi - lo <= 2 * len(uniq)  # read the covering range when it is mostly wanted
    width = (hi - lo) if span else len(uniq)
    rows = max(1, _TILE_BYTES // max(1, width * dtype.itemsize))
    out = np.empty((n_cells, len(uniq)), dtype=dtype)
    with ref.open() as elem:
        for r in range(0, n_cells, rows):
            r1 = min(n_cells, r + rows)
            if span:
                tile = np.asarray(elem[r:r1, lo:hi])
                out[r:r1] = tile[:, uniq - lo]
            else:
                out[r:r1] = np.asarray(elem[r:r1, uniq])
    return out if inverse is None else out[:, inverse]
