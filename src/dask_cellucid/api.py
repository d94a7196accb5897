"""The user-facing entry point: :func:`prepare` and the :class:`Export` it plans."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import uuid
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from . import _graph, _progress, _scheduler, codecs, dataset, journal, manifest, sink
from . import plan as planning
from .adapters import Source, as_source, parse_memory
from .errors import (
    ExportWarning,
    GeneIdError,
    InputShapeError,
    InvalidOptionError,
    TargetExistsError,
)
from .sink import Target
from .types import MANIFEST_NAME, VAR_DIR, Encoding, GeneEntry, Layout, Plan, Rounding

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

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
            f"{self.payload_bytes / 2**20:,.1f} MiB of payloads in {self.seconds:.1f} s."
        )


@dataclass
class Export:
    """A planned export: nothing has been read or written yet.

    Returned by ``prepare(..., compute=False)``; run it with :meth:`execute`.
    """

    plan: Plan
    source: Source
    target: Target
    force: bool = False
    resume: bool = True
    embeddings: dict[int, Any] = field(default_factory=dict, repr=False)
    identity_options: dict[str, Any] = field(default_factory=dict, repr=False)

    def execute(
        self,
        scheduler: Any = None,
        num_workers: int | None = None,
        *,
        progress: bool | None = None,
    ) -> ExportResult:
        """Write every payload, then the manifest (and folder files), and return a summary.

        Parameters
        ----------
        scheduler
            ``None`` (the current distributed Client if any, else threads),
            ``"threads"``, ``"processes"``, ``"synchronous"``, ``"distributed"``
            (the current Client, or a LocalCluster started and closed here), a
            scheduler address, or a :class:`distributed.Client`.
        num_workers
            Threads or processes for local schedulers; workers for a LocalCluster.
        progress
            Show a progress bar; by default only when stderr is a terminal.
        """
        t0 = time.perf_counter()
        plan, target = self.plan, self.target
        if progress is None:
            progress = sys.stderr.isatty()
        _scheduler.check(scheduler)  # refuse an unknown scheduler before any write
        existing_identity = self._check_target()
        # Uploads wait on the network: on object storage, twice as many threads as
        # cores keep both cores encoding (measured: 4 threads saturate 2 cores).
        threads = num_workers or (None if target.is_local else 2 * (os.cpu_count() or 1))
        # The cluster starts before the first write, so a cluster that cannot
        # start leaves nothing behind.
        with _scheduler.resolve(scheduler, num_workers) as (local, client):
            entries, n_done = self._write_payloads(local, client, threads, progress=progress)
        _warn_about(entries)

        # Every payload is in place and durable (_write_payloads waited for the
        # flushes) before the manifest names it.
        doc = manifest.build(plan, entries)
        files = {}
        if self.embeddings:
            files.update(dataset.embedding_files(self.embeddings, plan.n_cells, plan.encoding))
            files[dataset.OBS_MANIFEST_NAME] = dataset.dumps(
                dataset.obs_manifest(plan.n_cells, plan.encoding.compression)
            )
            target.write(files)
        target.write({MANIFEST_NAME: manifest.dumps(doc)})
        if self.embeddings:
            ident = dataset.identity(
                n_cells=plan.n_cells,
                n_genes=plan.n_genes,
                dims=sorted(self.embeddings),
                encoding=plan.encoding,
                layout=plan.layout,
                **self.identity_options,
            )
            target.write({dataset.IDENTITY_NAME: dataset.dumps(ident)})
        elif existing_identity is not None:
            ident = dataset.with_genes(existing_identity, plan.n_genes, plan.encoding.bits)
            target.write({dataset.IDENTITY_NAME: dataset.dumps(ident)})
        journal.clear(target)
        result = ExportResult(
            url=target.display_url,
            n_cells=plan.n_cells,
            n_genes=plan.n_genes,
            n_genes_written=plan.n_genes - n_done,
            payload_bytes=sum(e.nbytes for e in entries),
            seconds=time.perf_counter() - t0,
            layout=plan.layout,
            manifest=doc,
        )
        log.info("%s", result)
        return result

    def _write_payloads(
        self, local: str | None, client: Any, threads: int | None, *, progress: bool
    ) -> tuple[list[GeneEntry], int]:
        """Withdraw or resume, then run one task per block still to write.

        Returns every gene's entry (this run's and those resumed) and how many
        genes an earlier run had already written.
        """
        plan, target = self.plan, self.target
        done = self._withdraw_or_resume()
        target.prepare()
        journal.begin(target, plan)
        skip = [
            i
            for i, (s, n) in enumerate(zip(plan.block_starts, plan.block_sizes, strict=True))
            if all(p in done for p in range(s, s + n))
        ]
        x = self.source.column_blocks(plan.source_columns, plan.block_sizes)
        # Tasks may leave their flush (and journal record) to a background
        # thread of their process where this run can wait for it afterwards:
        # in this process, or on every worker of a cluster (not in a pool of
        # processes that is gone once the tasks are done).
        flush_group = None if local == "processes" else f"export-{uuid.uuid4().hex}"
        tasks = _graph.build(x, plan, target, skip=skip, flush_group=flush_group)
        n_done = sum(plan.block_sizes[i] for i in skip)
        log.info(
            "exporting %d genes x %d cells in %d block tasks to %r%s",
            plan.n_genes,
            plan.n_cells,
            len(tasks),
            target,
            f" ({n_done} genes already written)" if n_done else "",
        )
        try:
            results = _progress.run(
                tasks,
                n_genes=plan.n_genes,
                initial=n_done,
                scheduler=local,
                client=client,
                num_workers=threads,
                progress=progress,
            )
        except BaseException:
            # a retry may start at once: let no record of this run land after it
            with contextlib.suppress(Exception):
                _await_flushes(client, flush_group)
            raise
        # every payload durable and every journal record written before the manifest
        _await_flushes(client, flush_group)
        entries = [e for part in results for e in part]
        for i in skip:
            s, n = plan.block_starts[i], plan.block_sizes[i]
            entries.extend(done[p] for p in range(s, s + n))
        return entries, n_done

    # -- before the first write -------------------------------------------------------
    def _check_target(self) -> dict[str, Any] | None:
        """Refuse what must be refused; return an existing identity to update."""
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
            return None
        return dataset.check_existing(
            ident_raw, target.read(dataset.OBS_MANIFEST_NAME), self.plan.n_cells, self.plan.encoding
        )

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
                msg = (
                    f"{target.display_url} holds an unfinished export with other settings, "
                    "genes or input data. Re-run with the same arguments to resume it, or pass "
                    "force=True to discard it."
                )
                raise TargetExistsError(msg)
            journal.clear(target)
            target.remove_tree(VAR_DIR)
        return {}


def _await_flushes(client: Any, flush_group: str | None) -> None:
    """Wait for the background flushes of ``flush_group`` here, or on every worker."""
    if flush_group is None:
        return
    if client is None:
        sink.await_flushes(flush_group)
    else:
        client.run(sink.await_flushes, flush_group)


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
        warnings.warn(msg, ExportWarning, stacklevel=3)
    zero = [e.gene_id for e in entries if e.all_zero]
    if zero:
        shown = ", ".join(map(repr, zero[:_SHOW])) + (", ..." if len(zero) > _SHOW else "")
        msg = (
            f"{len(zero)} gene(s) are zero in every cell ({shown}); "
            "they are exported, but colour nothing. Filter them out "
            "(e.g. scanpy.pp.filter_genes(adata, min_cells=1)) if that is unexpected."
        )
        warnings.warn(msg, ExportWarning, stacklevel=3)


# -- argument checking ---------------------------------------------------------------
def _check_bits(var_quantization: Any) -> Literal[8, 16] | None:
    if var_quantization is None or (type(var_quantization) is int and var_quantization in (8, 16)):
        return var_quantization  # type: ignore[no-any-return]
    msg = (
        f"var_quantization={var_quantization!r} must be None (float32), 8 or 16. 8 bits is "
        "the compact default most users want; 16 keeps 256x finer steps."
    )
    raise InvalidOptionError(msg)


def _check_compression(compression: Any) -> int | None:
    if compression is None or (compression == 0 and type(compression) is int):
        return None
    if type(compression) is int and 1 <= compression <= 9:
        return compression
    msg = (
        f"compression={compression!r} must be None or 0 (off), or a gzip level from 1 to 9 "
        "(6 is typical)."
    )
    raise InvalidOptionError(msg)


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        msg = f"{name}={value!r} must be one of {', '.join(map(repr, choices))}."
        raise InvalidOptionError(msg)


def _as_var(var: Any) -> pd.DataFrame | None:
    if var is None or isinstance(var, pd.DataFrame):
        return var
    if isinstance(var, pd.Index | pd.Series | list | tuple) or hasattr(var, "__array__"):
        return pd.DataFrame(index=pd.Index([str(v) for v in var]))
    msg = f"var must be a pandas DataFrame (or a list of gene names), got {type(var).__name__}."
    raise InvalidOptionError(msg)


def gene_ids_from_var(
    var: pd.DataFrame, var_gene_id_column: str | None
) -> tuple[list[str], str | None]:
    """The ids of every column, and the value the manifest records for their origin."""
    if var_gene_id_column is None or var_gene_id_column == "index":
        values, recorded = var.index, var_gene_id_column
    elif var_gene_id_column in var.columns:
        values, recorded = var[var_gene_id_column], var_gene_id_column
    else:
        cols = list(map(str, var.columns))
        msg = (
            f"var_gene_id_column={var_gene_id_column!r} is not a column of var. Available: "
            f"{cols[:20]}{' ...' if len(cols) > 20 else ''}; or 'index' for var's index."
        )
        raise InvalidOptionError(msg)
    missing = pd.isna(pd.Series(values)).to_numpy()
    if missing.any():
        where = f"var[{var_gene_id_column!r}]" if recorded not in (None, "index") else "var.index"
        msg = (
            f"{int(missing.sum())} gene id(s) in {where} are missing (NaN/None), e.g. at "
            f"row {int(missing.argmax())}. Fill them, or choose another var_gene_id_column."
        )
        raise GeneIdError(msg)
    return [str(v) for v in values], recorded


def _check_alignment(var: pd.DataFrame, shape: tuple[int, int]) -> None:
    n_cells, n_genes = shape
    if len(var) == n_genes:
        return
    if len(var) == n_cells:
        msg = (
            f"gene_expression has shape {shape} (cells x genes) but var has {len(var)} rows, "
            f"the number of cells: the matrix looks transposed. Pass gene_expression.T "
            "(rows must be cells, columns genes)."
        )
        raise InputShapeError(msg)
    msg = (
        f"var has {len(var)} rows but gene_expression has {n_genes} genes (columns); they must "
        "describe the same genes in the same order. Pass adata.var with adata.X (not a var "
        "from before filtering genes)."
    )
    raise InputShapeError(msg)


def _check_var_matches(var: pd.DataFrame, own: pd.DataFrame, shape: tuple[int, int]) -> None:
    """A ``var`` passed with an AnnData must describe the AnnData's genes, in order."""
    n_cells, n_genes = shape
    if len(var) == n_cells and len(var) != n_genes:
        msg = (
            f"var has {len(var)} rows, one per cell, but must have one per gene ({n_genes}): "
            "it looks like adata.obs. Pass var=adata.var, or leave var out (the AnnData's "
            "own var is used)."
        )
        raise InputShapeError(msg)
    if len(var) != len(own) or not var.index.equals(own.index):
        msg = (
            f"var (index {list(var.index[:3])}..., {len(var)} rows) is not the AnnData's var "
            f"(var_names {list(own.index[:3])}..., {len(own)} rows); they must list the same "
            "genes in the same order. Leave var out to use the AnnData's own var, and use "
            "var_gene_id_column= to take gene ids from one of its columns."
        )
        raise InputShapeError(msg)


def _n_threads(scheduler: Any, num_workers: int | None) -> int:
    if hasattr(scheduler, "nthreads"):
        try:
            return max(1, sum(scheduler.nthreads().values()))
        except Exception:
            return os.cpu_count() or 1
    return num_workers or os.cpu_count() or 1


def prepare(
    gene_expression: Any = None,
    var: Any = None,
    *,
    layer: str | None = None,
    use_raw: bool = False,
    max_memory: int | str | None = None,
    out_dir: str | os.PathLike[str] = "./exports",
    var_gene_id_column: str | None = None,
    gene_identifiers: Sequence[str] | None = None,
    var_quantization: int | None = None,
    compression: int | None = None,
    force: bool = False,
    layout: Layout = "key",
    rounding: Rounding = "nearest",
    codec: str = "auto",
    make_unique: bool = False,
    missing_genes: Literal["raise", "warn"] = "raise",
    genes_per_block: int | None = None,
    block_memory: int | str | None = None,
    scheduler: Any = None,
    num_workers: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
    progress: bool | None = None,
    resume: bool = True,
    X_umap_1d: Any = None,
    X_umap_2d: Any = None,
    X_umap_3d: Any = None,
    dataset_id: str | None = None,
    dataset_name: str | None = None,
    dataset_description: str = "",
    created_at: str | None = None,
    compute: bool = True,
    verify: bool = False,  # [validate.py] opt-in verification pass
) -> ExportResult | Export:
    """Export gene expression to a Cellucid folder, one Dask task per block of genes.

    A drop-in for the gene part of ``cellucid.prepare``: the same argument
    names mean the same things, and the output follows the same format. Every
    check runs before anything is written; the manifest is written last.

    Parameters
    ----------
    gene_expression
        ``(n_cells, n_genes)`` matrix: NumPy, scipy.sparse (any format, matrix
        or array), or a Dask array (dense or sparse chunks). Any real dtype.
        Also an ``AnnData`` (in memory or backed) or the path/URL of an
        ``.h5ad`` file or ``.zarr`` store, read lazily in bounded memory.
    var
        Gene metadata: a DataFrame with one row per column of the matrix (or
        just a list of gene names). Taken from the AnnData when not given.
    layer, use_raw
        Which matrix of an AnnData input: ``adata.layers[layer]``, or
        ``adata.raw.X`` (with ``adata.raw.var``). Default ``adata.X``.
    max_memory
        Memory budget for reading out-of-core inputs, bytes or a string like
        ``"4GiB"``; by default a fraction of this machine's RAM.
    out_dir
        Export folder: a local path or any fsspec URL (``s3://bucket/prefix``).
    var_gene_id_column
        Where gene ids come from: ``None`` (``var.index``; the manifest records
        ``null``, as cellucid does), ``"index"``, or a column of ``var``.
    gene_identifiers
        Export only these genes, in this order. ``None`` exports every gene.
    var_quantization
        ``None`` (float32), ``8`` or ``16`` bits per value, per-gene min/max.
    compression
        gzip level 1-9, or ``None``/``0`` for none.
    force
        Replace an existing export in ``out_dir``. Without it, an existing
        export is refused (an interrupted one is resumed).
    layout
        ``"key"`` (files named by gene id; cellucid v0.9.0-era viewers) or
        ``"index"`` (files named by position; cellucid-python 0.9.1/0.9.2).
    rounding
        ``"nearest"`` (decoded values within half a step) or ``"floor"`` (the
        reference writer's truncation, up to one step low; same bytes as it).
    codec
        Deflate encoder for gzip: ``"auto"`` (libdeflate when installed, else
        zlib), ``"libdeflate"``, ``"zlib"`` or ``"isal"``. All produce standard
        gzip; they differ in speed and size.
    make_unique
        Rename repeated ids (and ids that would share a file name) ``X-1``,
        ``X-2``, ... instead of refusing them.
    missing_genes
        What to do with ``gene_identifiers`` absent from ``var``: ``"raise"``
        or ``"warn"`` (and skip them).
    genes_per_block
        Genes per task. By default chosen from ``block_memory`` and the number
        of threads.
    block_memory
        Target working memory of one task, bytes or a string like ``"256MiB"``
        (default 64 MiB).
    scheduler, num_workers, progress
        How to run: see :meth:`Export.execute`.
    storage_options
        Passed to fsspec for ``out_dir`` URLs (credentials, ``endpoint_url``,
        ``client_kwargs``...). Never logged.
    resume
        Pick up an interrupted export of the same plan, skipping genes already
        written intact (checked by size).
    X_umap_1d, X_umap_2d, X_umap_3d
        Embeddings; when given, the folder also gets ``points_<d>d.bin``, an
        empty obs manifest and ``dataset_identity.json``, so it opens in the
        viewer on its own.
    dataset_id, dataset_name, dataset_description, created_at
        Identity of the dataset written with an embedding (id defaults to the
        folder name). ``created_at`` is left out unless given, so that
        re-exports are byte-identical.
    compute
        ``False`` returns the planned :class:`Export` without running it.
    verify
        After writing, read every gene back and compare it with the source
        (:func:`dask_cellucid.verify`); raise :class:`VerificationError` if any
        is wrong. Reads the source a second time.

    Returns
    -------
    ExportResult or Export

    Raises
    ------
    InvalidOptionError, InputShapeError, UnsupportedInputError, GeneIdError
        Bad arguments or data, before anything is written.
    TargetExistsError
        ``out_dir`` already holds an export and ``force`` is not set.
    VerificationError
        With ``verify=True``: a gene read back does not match the source.
    """
    bits = _check_bits(var_quantization)
    level = _check_compression(compression)
    _check_choice("layout", layout, ("key", "index"))
    _check_choice("rounding", rounding, ("nearest", "floor"))
    _check_choice("missing_genes", missing_genes, ("raise", "warn"))
    for flag, value in (
        ("force", force),
        ("make_unique", make_unique),
        ("resume", resume),
        ("verify", verify),
    ):
        if not isinstance(value, bool):
            msg = f"{flag} must be True or False, got {value!r}."
            raise InvalidOptionError(msg)
    encoding = Encoding(
        bits=bits, compression=level, rounding=rounding, codec=codecs.resolve_codec(codec)
    )
    if gene_expression is None:
        msg = "gene_expression is required: the (n_cells, n_genes) matrix to export."
        raise InvalidOptionError(msg)

    read_budget = parse_memory(max_memory)
    source = as_source(gene_expression, layer=layer, use_raw=use_raw, max_memory=read_budget)
    var_df = _as_var(var) if var is not None else source.var
    if var is not None and source.var is not None and var_df is not None:
        _check_var_matches(var_df, source.var, source.shape)  # a given var must be the AnnData's
    if var_df is None:
        msg = (
            "var is required with a bare matrix: pass var=adata.var (or a list of gene "
            "names), one row per column of gene_expression."
        )
        raise InvalidOptionError(msg)
    _check_alignment(var_df, source.shape)
    all_ids, recorded = gene_ids_from_var(var_df, var_gene_id_column)
    ids, columns = planning.select_genes(
        all_ids, gene_identifiers, missing_genes=missing_genes, make_names_unique=make_unique
    )
    n_cells = source.shape[0]
    n_threads = _n_threads(scheduler, num_workers)
    if genes_per_block is None:
        task_budget = parse_memory(block_memory) or planning.DEFAULT_BLOCK_MEMORY
        if read_budget and block_memory is None:
            # the block tasks run beside the reader: keep them inside max_memory too
            task_budget = max(2**20, min(task_budget, read_budget // (4 * n_threads)))
        genes_per_block = planning.genes_per_block(
            n_cells,
            len(ids),
            source.bytes_per_value(),
            block_memory=task_budget,
            n_threads=n_threads,
        )
    elif not (type(genes_per_block) is int and genes_per_block > 0):
        msg = f"genes_per_block={genes_per_block!r} must be a positive integer."
        raise InvalidOptionError(msg)
    the_plan = planning.build_plan(
        n_cells=n_cells,
        gene_ids=ids,
        source_columns=columns,
        encoding=encoding,
        layout=layout,
        var_gene_id_column=recorded,
        block_size=genes_per_block,
        make_names_unique=make_unique,
        source_token=source.data_token(),
    )

    target = Target.from_url(out_dir, storage_options)
    embeddings = {
        d: e for d, e in ((1, X_umap_1d), (2, X_umap_2d), (3, X_umap_3d)) if e is not None
    }
    identity_options: dict[str, Any] = {}
    if embeddings:
        # Check the embeddings now, before anything is written.
        dataset.embedding_files(embeddings, n_cells, Encoding(None, None))
        folder = target.display_url.rstrip("/").rsplit("/", 1)[-1]
        dataset_id = dataset_id or dataset.dataset_id_from(folder)
        identity_options = {
            "dataset_id": dataset_id,
            "name": dataset_name or dataset_id,
            "description": dataset_description,
            "created_at": created_at,
        }
        dataset.identity(
            n_cells=n_cells,
            n_genes=0,
            dims=sorted(embeddings),
            encoding=encoding,
            layout=layout,
            **identity_options,
        )
    export = Export(
        the_plan,
        source,
        target,
        force=force,
        resume=resume,
        embeddings=embeddings,
        identity_options=identity_options,
    )
    if not compute:
        if verify:  # [validate.py]
            msg = "verify=True needs compute=True; after execute(), call dask_cellucid.verify()."
            raise InvalidOptionError(msg)
        return export
    result = export.execute(scheduler=scheduler, num_workers=num_workers, progress=progress)
    if verify:  # [validate.py] begin: opt-in verification pass
        from .errors import VerificationError
        from .verification import verify_source

        report = verify_source(
            target,
            source,
            dict(zip(the_plan.gene_ids, the_plan.source_columns, strict=True)),
            tolerance=1.0 if rounding == "floor" else 0.5,
            genes_per_block=max(the_plan.block_sizes),
            scheduler=scheduler,
            num_workers=num_workers,
        )
        if not report.ok:
            msg = (
                f"the export in {target.display_url} does not match its source (the folder was "
                f"written; re-export it with force=True):\n{report}"
            )
            raise VerificationError(msg)
        log.info("verified: %d genes match the source", len(report.genes))
    # [validate.py] end
    return result
