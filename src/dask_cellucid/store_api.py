"""The user-facing entry point of the Cellucid-ready store: :func:`prepare_store`.

The store format (``formats/store``) on the same engine as the folder format:
a first pass counts every gene's stored values (and refuses NaN/Inf naming the
genes, before anything is written), ``indptr`` is their running sum, ``X/data``
is cut into chunk-aligned segments, and one block task per segment writes its
whole chunks. Everything else of the store is small and written at the end,
the consolidated metadata last.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from . import _scheduler, codecs, genes, options
from . import plan as planning
from .adapters import as_source
from .engine import Export, run_blocks
from .errors import InputShapeError, InputValueError, InvalidOptionError, VerificationError
from .formats.store import archive, kernels, segments
from .formats.store import elements as el
from .formats.store.read import StoreReader
from .formats.store.spec import SLICED_CHUNK, ZIP_SUFFIX, StoreOptions, strip_chunks
from .formats.store.verify import StoreVerifyReport
from .formats.store.writer import (
    StoreResult,
    StoreWriter,
    check_destination,
    count_block,
    count_rows,
    staging_target,
)
from .genes import make_unique
from .storage import Target
from .types import Plan

log = logging.getLogger("dask_cellucid")

#: Memory one block task holds per stored value of its genes (input, canonical copy, output).
_BYTES_PER_STORED = 32
#: Segment tasks per thread, at least (when there are enough chunks).
_TASKS_PER_THREAD = 4
#: Memory a row-counting task holds per stored value (positions, masks, a few indices).
_COUNT_BYTES_PER_STORED = 24
#: Stored values per row-counting task, at most: larger tasks only add memory.
_COUNT_MAX_VALUES = 1 << 22


def _count_values_per_task(task_memory: int) -> int:
    """Stored values per row block of the counting pass, within one task's memory."""
    return max(1, min(_COUNT_MAX_VALUES, task_memory // _COUNT_BYTES_PER_STORED))


def _is_anndata(obj: Any) -> bool:
    return any(
        c.__name__ == "AnnData" and c.__module__.startswith("anndata") for c in type(obj).__mro__
    )


def _components(data: Any) -> dict[str, Any]:
    """What an AnnData supplies: obs, X with var, numeric obsm arrays, the graph, the identity."""
    if not _is_anndata(data):
        msg = f"data must be an anndata.AnnData, got {type(data).__name__}."
        raise InvalidOptionError(msg)
    out: dict[str, Any] = {"obs": data.obs}
    emb = {}
    for key, value in data.obsm.items():
        dtype = getattr(value, "dtype", None)
        if isinstance(value, pd.DataFrame) or dtype is None or np.dtype(dtype).kind not in "iuf":
            continue
        emb[key] = value
    out["embeddings"] = emb
    if data.X is not None:
        out["gene_expression"] = data
        out["var"] = data.var
    if "connectivities" in data.obsp:
        out["connectivities"] = data.obsp["connectivities"]
    record = data.uns.get("cellucid") if hasattr(data.uns, "get") else None
    if isinstance(record, Mapping):
        out.update(el.identity_arguments(_plain(record)))
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value.item()
    return value


def _gene_names(
    var: pd.DataFrame | None, n_genes: int, column: str | None
) -> tuple[list[str], list[str]]:
    """The stored var index (unique names) and the names the viewer shows (for selection)."""
    if column is not None and (var is None or column not in var.columns):
        have = [] if var is None else [str(c) for c in var.columns]
        msg = (
            f"var_gene_id_column names var[{column!r}], which var does not have. var holds: {have}."
        )
        raise InvalidOptionError(msg)
    names = el.row_names(var, n_genes, "var")
    if names is None:
        if column is None:
            msg = (
                "The genes have no names: give var an index of gene identifiers, or pass "
                "var_gene_id_column naming the var column that holds them."
            )
            raise InvalidOptionError(msg)
        names = [str(v) for v in var[column]]  # type: ignore[index]
    unique = make_unique(names)
    renamed = [(a, b) for a, b in zip(names, unique, strict=True) if a != b]
    if renamed:
        # as cellucid 0.9.5 does: repeated names are made unique, and said so
        log.warning(
            "%d repeated gene name(s) were made unique the anndata way, e.g. %s",
            len(renamed),
            ", ".join(f"{a!r} -> {b!r}" for a, b in renamed[:3]),
        )
    shown = unique if column is None else make_unique([str(v) for v in var[column]])
    return unique, shown


#: The suffix ``out_path`` ends in for each ``format``, and what that writes.
_SUFFIXES = {"zarr": (".zarr", "a .zarr folder"), "zarr.zip": (ZIP_SUFFIX, "a .zarr.zip file")}


def _check_suffix(out_path: str | os.PathLike[str], format: str) -> None:
    """``out_path`` ends in the suffix of ``format`` (and is more than the suffix)."""
    suffix, what = _SUFFIXES[format]
    name = os.fspath(out_path).rstrip("/").rsplit("/", 1)[-1]
    lowered = name.lower()
    present = next((s for s in (ZIP_SUFFIX, ".zarr") if lowered.endswith(s)), None)
    if present == suffix and lowered != suffix:
        return
    stem = name if present is None else name[: len(name) - len(present)]
    if present is None:
        problem = f"does not end in {suffix}"
    elif present == suffix:
        problem = "is only the suffix"
    else:
        other = next(f for f, (s, _) in _SUFFIXES.items() if s == present)
        problem = f'ends in {present}, which format="{other}" writes'
    msg = (
        f'format="{format}" writes {what}, and out_path {os.fspath(out_path)!r} {problem}: '
        f"name it e.g. {stem or 'data'}{suffix}."
    )
    raise InvalidOptionError(msg)


def _connectivities(graph: Any, n_cells: int) -> Any:
    import scipy.sparse as sp

    g = sp.csr_matrix(graph).astype(np.float64)
    if g.shape != (n_cells, n_cells):
        msg = f"connectivities must be {n_cells:,} x {n_cells:,}, got {g.shape}."
        raise InputShapeError(msg)
    g.sum_duplicates()
    if not np.isfinite(g.data).all() or (g.data < 0).any():
        msg_0 = "Connectivity weights must all be finite and non-negative."
        raise InputValueError(msg_0)
    g.eliminate_zeros()
    if g.diagonal().any():
        msg_0 = "Connectivity diagonal values must all be exactly zero."
        raise InputValueError(msg_0)
    if (g != g.T).nnz:
        msg_0 = "Connectivity matrix must be exactly symmetric."
        raise InputValueError(msg_0)
    g = g.astype(np.float32)
    g.sort_indices()
    return g


def _chunk_codec(codec: str) -> str:
    """The chunks' encoder for ``codec``: ``"auto"`` is libdeflate when installed."""
    options.check_choice("codec", codec, ("auto", "libdeflate", "zlib"))
    if codec == "zlib":
        return codec
    have = codecs.available_codecs()
    if "libdeflate" not in have and codec == "libdeflate":
        msg = "codec='libdeflate' needs the 'deflate' package: pip install deflate."
        raise InvalidOptionError(msg)
    return "libdeflate" if "libdeflate" in have else "zlib"


def _selected_columns(shown: Sequence[str], gene_identifiers: Sequence[str] | None) -> list[int]:
    """The columns of ``gene_identifiers`` (matched against the names the viewer shows),
    in their order; every column when None."""
    if gene_identifiers is None:
        columns = list(range(len(shown)))
    else:
        wanted = [str(g) for g in gene_identifiers]
        if len(set(wanted)) != len(wanted):
            msg_0 = "gene_identifiers must not contain duplicate identifiers."
            raise InvalidOptionError(msg_0)
        at = {g: i for i, g in enumerate(shown)}
        absent = [g for g in wanted if g not in at]
        if absent:
            msg = f"gene_identifiers contains identifiers not found in var: {absent[:5]}"
            raise InvalidOptionError(msg)
        columns = [at[g] for g in wanted]
    if not columns:
        msg_0 = "no gene is selected."
        raise InvalidOptionError(msg_0)
    return columns


def _count(
    source: Any,
    columns: Sequence[int],
    ids: Sequence[str],
    sizes: Sequence[int],
    compute: Any,
    task_memory: int,
    *,
    token: str,
    progress: bool | None,
) -> list[kernels.BlockStats]:
    """The first pass: every gene's counts, checked; nothing is written.

    By rows where the input stores rows (no transposition), else by the
    column blocks ``sizes``. NaN, Inf or values beyond float32 are refused here,
    naming the genes.
    """
    n_genes = len(columns)
    sparse = source.is_sparse
    rows = source.row_blocks(_count_values_per_task(task_memory)) if sparse else None
    if rows is not None:
        positions = None  # every column, in order: the column indices are the positions
        if list(columns) != list(range(source.shape[1])):
            positions = np.full(source.shape[1], -1, dtype=np.int64)
            positions[list(columns)] = np.arange(n_genes)
        parts = run_blocks(
            rows,
            count_rows,
            [(i, i) for i in range(rows.numblocks[0])],
            positions,
            n_genes,
            compute=compute,
            name=f"count-{token[:8]}",
            n_items=rows.numblocks[0],
            progress=progress,
            desc="Counting values by rows",
            unit="block",
        )
        stats = [kernels.sum_stats(parts)]
    else:
        x = source.column_blocks(columns, sizes)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int)
        stats = run_blocks(
            x,
            count_block,
            [(i, int(s)) for i, s in enumerate(starts)],
            sparse,
            compute=compute,
            name=f"count-{token[:8]}",
            n_items=n_genes,
            progress=progress,
            desc="Counting values",
        )
    stats = sorted(stats, key=lambda s: s.start)
    bad = np.concatenate([s.bad for s in stats])
    if bad.any():
        which = [ids[j] for j in np.flatnonzero(bad)]
        more = f" and {len(which) - 10:,} more" if len(which) > 10 else ""
        msg = (
            f"gene_expression must hold finite numbers within the float32 range; NaN, Inf or "
            f"values beyond float32 in {len(which):,} gene(s): {which[:10]}{more}. "
            "Nothing was written."
        )
        raise InputValueError(msg)
    return stats


def _segments(
    source: Any, indptr: np.ndarray, chunk_values: int, *, task_memory: int, n_threads: int
) -> tuple[int, list[segments.Segment]]:
    """The chunk size and the segment tasks: whole chunks of ``X/data`` (sparse) or whole
    column strips (dense), within a task's memory, several tasks per thread."""
    n_cells, n_genes = source.shape[0], len(indptr) - 1
    if source.is_sparse:
        nnz = int(indptr[-1])
        chunk = max(1, min(chunk_values, nnz))
        n_chunks = -(-nnz // chunk)
        per_task = segments.chunks_per_task(task_memory, chunk, _BYTES_PER_STORED)
        # several tasks per thread, so that every thread has work
        per_task = min(per_task, max(1, -(-n_chunks // (_TASKS_PER_THREAD * n_threads))))
        return chunk, segments.sparse_segments(indptr, chunk, per_task)
    strip = strip_chunks(n_cells, n_genes)[1]
    per_strip = max(1.0, n_cells * strip * (source.dtype.itemsize + 8.0))
    n_strips = -(-n_genes // strip)
    per_task = min(
        max(1, int(task_memory // per_strip)),
        max(1, -(-n_strips // (_TASKS_PER_THREAD * n_threads))),
    )
    return chunk_values, segments.dense_segments(n_genes, strip, per_task)


def _inputs(
    given: Mapping[str, Any],
    data: Any,
    *,
    var_gene_id_column: str | None,
    gene_identifiers: Sequence[str] | None,
    max_memory: int,
    input_storage_options: Mapping[str, Any] | None,
) -> tuple[Any, list[int], el.Elements]:
    """The matrix, the selected columns and every other element, checked against each
    other (``given`` arguments win over ``data``'s components); nothing is read of ``X``."""
    var, gene_expression = given["var"], given["gene_expression"]
    args = {
        **(_components(data) if data is not None else {}),
        **{k: v for k, v in given.items() if v is not None},
    }
    if var is not None and gene_expression is None and data is None:
        msg_0 = "var describes the genes of gene_expression, and none was supplied."
        raise InvalidOptionError(msg_0)
    for key in ("dataset_id", "dataset_name"):
        if args.get(key) is None:
            msg = f"prepare_store() needs {key}" + (
                ": data's uns['cellucid'] names none." if data is not None else "."
            )
            raise InvalidOptionError(msg)
    if not args.get("embeddings"):
        msg_0 = "prepare_store() needs embeddings=: at least one {obsm key: (n_cells, k) array}."
        raise InvalidOptionError(msg_0)
    if args.get("gene_expression") is None:
        msg_0 = "prepare_store() needs gene_expression= (or data= with an X)."
        raise InvalidOptionError(msg_0)
    obsm = {str(k): el.cell_matrix(v, f"Embedding {k!r}") for k, v in args["embeddings"].items()}
    n_cells = next(iter(obsm.values())).shape[0]
    if any(v.shape[0] != n_cells for v in obsm.values()):
        msg_0 = "All embeddings must have one row per cell."
        raise InputShapeError(msg_0)
    uns = el.cellucid_uns(
        args["dataset_id"],
        args["dataset_name"],
        **{k: args.get(k) for k in el.IDENTITY_ARGUMENTS},
    )
    obs_index, obs_columns = el.obs_elements(args.get("obs"), n_cells)

    source = as_source(
        args["gene_expression"], max_memory=max_memory, storage_options=input_storage_options
    )
    if source.shape[0] != n_cells:
        msg = (
            f"gene_expression has {source.shape[0]:,} rows, but the embeddings have "
            f"{n_cells:,} cells."
        )
        raise InputShapeError(msg)
    var_df = args.get("var")
    if var_df is None:
        var_df = source.var
    if isinstance(var_df, pd.DataFrame) and len(var_df) != source.shape[1]:
        msg = f"var has {len(var_df):,} rows, and gene_expression {source.shape[1]:,} columns."
        raise InputShapeError(msg)
    unique, shown = _gene_names(var_df, source.shape[1], var_gene_id_column)
    columns = _selected_columns(shown, gene_identifiers)
    frame = pd.DataFrame(index=pd.RangeIndex(source.shape[1])) if var_df is None else var_df
    frame = frame.iloc[columns]
    var_index = np.asarray([unique[c] for c in columns], dtype=object)
    elements = el.Elements(
        obs_index=obs_index,
        obs=obs_columns,
        var_index=var_index,
        var=el.frame_columns(frame, "var"),
        obsm=obsm,
        uns=uns,
    )
    if args.get("connectivities") is not None:
        elements.obsp["connectivities"] = _connectivities(args["connectivities"], n_cells)

    return source, columns, elements


def prepare_store(
    out_path: str | os.PathLike[str],
    *,
    format: str = "zarr",
    data: Any = None,
    embeddings: Mapping[str, Any] | None = None,
    dataset_id: str | None = None,
    dataset_name: str | None = None,
    obs: pd.DataFrame | None = None,
    var: pd.DataFrame | None = None,
    gene_expression: Any = None,
    gene_identifiers: Sequence[str] | None = None,
    var_gene_id_column: str | None = None,
    connectivities: Any = None,
    dataset_description: str | None = None,
    citation_text: str | None = None,
    citation_url: str | None = None,
    source_name: str | None = None,
    source_url: str | None = None,
    zarr_format: int | None = None,
    force: bool = False,
    scheduler: Any = None,
    num_workers: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
    max_memory: int | str | None = None,
    progress: bool | None = None,
    verify: bool = False,
    chunk_values: int = SLICED_CHUNK,
    input_storage_options: Mapping[str, Any] | None = None,
    codec: str = "auto",
) -> StoreResult:
    """Write a Cellucid-ready AnnData zarr store, in parallel and out of core.

    The same store as ``cellucid.prepare(out_path, format="zarr" | "zarr.zip",
    ...)`` (cellucid 0.9.5), whose argument names mean the same here: ``X`` as
    canonical CSC (sparse input) or column strips (dense), float32 (float64
    for integer counts above 2^24), chunked and deflated for the browser;
    ``obs``, ``var``, ``obsm``, ``obsp['connectivities']``, ``uns['title']``
    and ``uns['cellucid']``; the consolidated metadata written last.

    Parameters
    ----------
    out_path
        A path or fsspec URL ending in the suffix of ``format``: ``.zarr`` or
        ``.zarr.zip``. On a local disk the store is written beside it under a
        staging name and renamed into place when complete.
    format
        ``"zarr"``: a ``.zarr`` folder of small files; ``"zarr.zip"``: the
        same store in one ``.zarr.zip`` file (entries stored, chunks first,
        metadata last, fixed timestamps), for hosts that serve one file well.
        A ``.zarr.zip`` is packed from a staging folder at the end: beside
        ``out_path`` on a local disk; beside it under a staging prefix on
        object storage, then packed in a local temporary file and uploaded
        as one object. (``"h5ad"`` is not written.)
    data
        An AnnData (in memory or backed; ``X`` read out of core) supplying
        every component not given explicitly: obs, X with var, its numeric
        ``obsm`` arrays, ``obsp['connectivities']`` and the identity in
        ``uns['cellucid']`` (``id``, ``name``, ``description``, ``citation``,
        ``source``).
    embeddings
        ``{obsm key: (n_cells, k) array}``, at least one; stored as given, float32.
    dataset_id, dataset_name
        The dataset's id (``^[A-Za-z0-9][A-Za-z0-9._-]{0,179}$``, not ending in
        ``.``, no Windows reserved name) and display name (also ``uns['title']``;
        shown verbatim, so without control or zero-width characters and
        without whitespace at either end).
    obs, var
        Cell and gene metadata; every column is stored.
    gene_expression
        ``(n_cells, n_genes)``: anything :func:`dask_cellucid.prepare` takes
        (NumPy, scipy.sparse, Dask, AnnData, .h5ad/.zarr path).
    gene_identifiers
        Keep only these genes, in this order (matched against the names the
        viewer shows: ``var_gene_id_column``, else the var index).
    var_gene_id_column
        The var column naming the genes in the viewer.
    connectivities
        ``(n_cells, n_cells)`` symmetric neighbour graph, stored as
        ``obsp['connectivities']`` (CSR float32).
    dataset_description
        One paragraph about the dataset (``uns['cellucid']['description']``;
        may be empty).
    citation_text, citation_url
        How to cite the dataset (``uns['cellucid']['citation']``: ``text``,
        ``url``); the address needs the text and is an absolute http(s) URL.
    source_name, source_url
        Where the data comes from (``uns['cellucid']['source']``: ``name``,
        ``url``); the address needs the name and is an absolute http(s) URL.
    zarr_format
        2 (the default, when None) or 3. Zarr v3 stores the same arrays with
        one ``zarr.json`` per node (the root's holding the consolidated
        metadata), the ``gzip`` codec at level 6 where v2 has zlib, and
        ``blosc`` (zlib 6, byte shuffle) where v2 shuffles; unsharded, chunk
        keys ``c/0``.
    force
        Replace an existing store at ``out_path`` (never anything else).
    scheduler, num_workers, progress
        How to run, as for :func:`dask_cellucid.prepare`.
    storage_options
        fsspec options for an ``out_path`` URL.
    max_memory
        Memory budget, as for :func:`dask_cellucid.prepare`; it sizes the
        counting blocks and the chunk segments.
    verify
        Read every gene back as the browser does and compare it with the
        input (a second read of the input).
    codec
        The chunks' deflate encoder (zlib streams in zarr v2, gzip members in
        v3): ``"auto"`` (libdeflate when installed, else zlib),
        ``"libdeflate"`` (about 3x faster than zlib; other, equally standard
        streams; level 1 for a values chunk that a 4 KiB sample shows nearly
        incompressible, where level 6 gains nothing) or ``"zlib"`` (the chunk
        bytes cellucid 0.9.5 writes, byte for byte). Blosc chunks (v3
        ``X/indices``) are numcodecs' either way.
    chunk_values
        Values per chunk of ``X/data`` and ``X/indices``: 65,536, the
        contract's; smaller only for tests.
    input_storage_options
        fsspec options for a ``gene_expression`` given as a URL.

    Raises
    ------
    InvalidOptionError, InputShapeError, InputValueError
        Bad arguments or data (NaN or Inf in ``X``, naming the genes; an
        ``out_path`` not ending in the suffix of ``format``), before anything
        is written.
    TargetExistsError
        ``out_path`` exists and ``force`` is not set.
    """
    options.check_path("out_path", out_path)
    options.check_choice("format", format, ("zarr", "zarr.zip"))
    if zarr_format is not None and (type(zarr_format) is not int or zarr_format not in (2, 3)):
        msg = f"zarr_format must be 2 or 3, got {zarr_format!r}."
        raise InvalidOptionError(msg)
    zarr_format = 2 if zarr_format is None else zarr_format
    zipped = format == "zarr.zip"
    for flag, value in (("force", force), ("verify", verify)):
        options.check_flag(flag, value)
    options.check_positive_int("chunk_values", chunk_values)
    chunk_codec = _chunk_codec(codec)
    _check_suffix(out_path, format)
    _scheduler.check(scheduler, num_workers)
    budget = options.resolve_memory(max_memory)

    given = {
        "embeddings": embeddings,
        "dataset_id": dataset_id,
        "dataset_name": dataset_name,
        "dataset_description": dataset_description,
        "citation_text": citation_text,
        "citation_url": citation_url,
        "source_name": source_name,
        "source_url": source_url,
        "obs": obs,
        "var": var,
        "gene_expression": gene_expression,
        "connectivities": connectivities,
    }
    source, columns, elements = _inputs(
        given,
        data,
        var_gene_id_column=var_gene_id_column,
        gene_identifiers=gene_identifiers,
        max_memory=budget,
        input_storage_options=input_storage_options,
    )
    n_cells = source.shape[0]
    final = Target.from_url(out_path, storage_options)
    archive.check_access(final, zipped=zipped)
    check_destination(final, force=force, zipped=zipped)
    target = staging_target(final, zipped=zipped)
    sparse = source.is_sparse
    token = source.data_token()
    n_genes = len(columns)
    ids = tuple(str(v) for v in elements.var_index)

    with _scheduler.resolve(scheduler, num_workers) as compute:
        # pass 1: count and check every gene; nothing is written
        n_threads = compute.n_threads
        task_memory = planning.task_memory(budget, n_threads)
        per = planning.genes_per_block(
            n_cells,
            n_genes,
            source.bytes_per_value(),
            block_memory=task_memory,
            n_threads=n_threads,
        )
        sizes = planning.block_sizes(n_genes, per)
        stats = _count(
            source, columns, ids, sizes, compute, task_memory, token=token, progress=progress
        )
        dtype = kernels.stored_dtype(
            source.dtype,
            integral=all(s.integral for s in stats),
            max_abs=max((s.max_abs for s in stats), default=0.0),
        )
        counts = np.concatenate([s.nnz32 if dtype == "float32" else s.nnz for s in stats])
        indptr = np.zeros(n_genes + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        nnz = int(indptr[-1]) if sparse else 0

        chunk, segs = _segments(
            source, indptr, chunk_values, task_memory=task_memory, n_threads=n_threads
        )
        layout = el.XLayout(
            shape=(n_cells, n_genes),
            dtype=dtype,
            sparse=sparse,
            indptr=indptr if sparse else None,
            chunk=chunk,
        )
        plan = Plan(
            n_cells=n_cells,
            gene_ids=tuple(ids[g] for s in segs for g in range(s.first_gene, s.stop_gene)),
            source_columns=tuple(
                columns[g] for s in segs for g in range(s.first_gene, s.stop_gene)
            ),
            block_sizes=tuple(s.n_genes for s in segs),
            options=StoreOptions(
                sparse=sparse,
                dtype=dtype,
                n_genes=n_genes,
                nnz=nnz,
                chunk=chunk,
                codec=chunk_codec,
                zarr_format=zarr_format,
                zipped=zipped,
            ),
            source_token=token,
        )
        # what the chunk bytes depend on, whatever the cut into tasks: a re-run with
        # another max_memory or worker count still finishes an interrupted store
        fingerprint = Plan(
            n_cells=n_cells,
            gene_ids=ids,
            source_columns=tuple(columns),
            block_sizes=(n_genes,),
            options=plan.options,
            source_token=token,
        ).fingerprint()
        writer = StoreWriter(
            plan, target, final, segs, elements, layout, force=force, fingerprint=fingerprint
        )
        writer.check()
        try:
            if segs:
                result: StoreResult = Export(plan, source, writer).run(compute, progress=progress)
            else:
                t0 = time.perf_counter()
                writer.begin()
                result = writer.finish([], time.perf_counter() - t0)
        except BaseException:
            writer.abandon()
            raise
        if verify:
            _verify(final, source, columns, sizes, compute, progress=progress)
    return result


def verify_block(block: Any, job: Sequence[int], target: Target) -> list[tuple[int, int]]:
    """Compare one block of the input with the store's genes at positions ``job`` (one per
    column of the block); ``(position, cells that differ)`` of the wrong ones."""
    import scipy.sparse as sp

    reader = StoreReader(target)
    dense = block.toarray() if sp.issparse(block) else np.asarray(block)
    wrong = []
    for k, j in enumerate(job):
        got = reader.read_gene(j)
        want = dense[:, k].astype(got.dtype)
        if not np.array_equal(got, want):
            wrong.append((j, int(np.count_nonzero(got != want))))
    return wrong


def _compare(
    final: Target,
    source: Any,
    columns: Sequence[int],
    positions: Sequence[int],
    sizes: Sequence[int],
    compute: Any,
    *,
    progress: bool | None,
) -> list[tuple[int, int]]:
    """Store positions against source columns, one task per block of ``sizes``."""
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    x = source.column_blocks(list(columns), tuple(sizes))
    jobs = [
        (i, tuple(int(p) for p in positions[starts[i] : starts[i + 1]])) for i in range(len(sizes))
    ]
    return run_blocks(
        x,
        verify_block,
        jobs,
        final,
        compute=compute,
        name=f"verify-store-{os.urandom(4).hex()}",
        n_items=len(columns),
        progress=progress,
        desc="Verifying genes",
    )


def _verify(
    final: Target,
    source: Any,
    columns: list[int],
    sizes: tuple[int, ...],
    compute: Any,
    *,
    progress: bool | None,
) -> None:
    positions = list(range(len(columns)))
    wrong = _compare(final, source, columns, positions, sizes, compute, progress=progress)
    if wrong:
        msg = f"{len(wrong)} gene(s) of {final.display_url} do not match the input: {wrong[:10]}"
        raise VerificationError(msg)


def verify_store(
    target: Target,
    source: Any,
    var: Any = None,
    *,
    layer: str | None = None,
    use_raw: bool = False,
    var_gene_id_column: str | None = None,
    gene_identifiers: Sequence[str] | None = None,
    scheduler: Any = None,
    num_workers: int | None = None,
    progress: bool | None = None,
    max_memory: int | str | None = None,
    input_storage_options: Mapping[str, Any] | None = None,
) -> StoreVerifyReport:
    """Compare every gene of the store at ``target`` with ``source``, exactly.

    Genes are matched by name (the store's ``var`` index against the
    source's); the store's values are read as the browser reads them and
    compared with the source's cast to the store's dtype. With
    ``gene_identifiers``, only those genes (store names) are compared.
    """
    budget = options.resolve_memory(max_memory)
    _scheduler.check(scheduler, num_workers)
    src = as_source(
        source,
        layer=layer,
        use_raw=use_raw,
        max_memory=budget,
        storage_options=input_storage_options,
    )
    var_df = genes.var_for(var, src.var, src.shape)
    report = StoreVerifyReport(url=target.display_url, source=getattr(src, "description", "source"))
    try:
        reader = StoreReader(target)
        stored = reader.gene_names()
    except Exception as err:  # no metadata, a damaged document: the store cannot be compared
        report.problems.append(f"the store cannot be read: {err}")
        return report
    if reader.shape[0] != src.shape[0]:
        report.problems.append(
            f"the store has {reader.shape[0]:,} cells and the source {src.shape[0]:,}"
        )
        return report
    unique, _ = _gene_names(var_df, src.shape[1], var_gene_id_column)
    in_source = {g: c for c, g in enumerate(unique)}
    in_store = {g: j for j, g in enumerate(stored)}
    wanted = stored if gene_identifiers is None else [str(g) for g in gene_identifiers]
    report.missing = [g for g in wanted if g not in in_store]
    report.extra = [g for g in wanted if g in in_store and g not in in_source]
    names = [g for g in wanted if g in in_store and g in in_source]
    report.n_genes = len(names)
    if not names:
        return report
    columns = [in_source[g] for g in names]
    positions = [in_store[g] for g in names]
    with _scheduler.resolve(scheduler, num_workers) as compute:
        per = planning.genes_per_block(
            src.shape[0],
            len(names),
            src.bytes_per_value() + 16,
            block_memory=planning.task_memory(budget, compute.n_threads),
            n_threads=compute.n_threads,
        )
        sizes = planning.block_sizes(len(names), per)
        wrong = _compare(target, src, columns, positions, sizes, compute, progress=progress)
    by_position = {j: g for g, j in zip(names, positions, strict=True)}
    report.wrong = [(by_position[j], n) for j, n in sorted(wrong)]
    return report
