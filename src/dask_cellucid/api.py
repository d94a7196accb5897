"""The user-facing entry points: :func:`prepare` and :func:`verify`.

Thin on purpose: check the options, read the genes from ``var``, make the
plan, hand it to the format's writer and the engine. Everything else lives in
its own module (see ``docs/architecture.md``).
"""

from __future__ import annotations

import inspect
import logging
import os
from typing import TYPE_CHECKING, Any, Literal

from . import _scheduler, codecs, genes, options
from . import plan as planning
from .adapters import as_source, other_matrices
from .engine import Export, run_blocks
from .errors import InputValueError, InvalidOptionError, VerificationError
from .formats.detect import detect
from .formats.folder import dataset, kernels
from .formats.folder import read as folder_read
from .formats.folder import validate as folder_validate
from .formats.folder import verify as folder_verify
from .formats.folder.spec import Encoding, Layout, Rounding, layout_of
from .formats.folder.writer import ExportResult, FolderWriter, folder_options, overflow_message
from .formats.store.read import read_named_genes
from .formats.store.validate import validate_store
from .storage import Target
from .store_api import prepare_store, verify_store

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import numpy as np
    import pandas as pd

    from ._scheduler import Compute
    from .adapters import Source
    from .formats.folder.validate import ValidationReport
    from .formats.folder.verify import VerifyReport
    from .formats.store.validate import StoreValidationReport
    from .formats.store.verify import StoreVerifyReport
    from .types import Plan

log = logging.getLogger("dask_cellucid")


def prepare_folder(
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
    input_storage_options: Mapping[str, Any] | None = None,
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
    verify: bool = False,
) -> ExportResult | Export:
    """Export gene expression to a Cellucid export folder, one Dask task per block of genes.

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
        Memory budget of the export, bytes or a string like ``"4GiB"``; by
        default a quarter of this machine's RAM. It covers the input's working
        set when a file is read out of core and the block tasks' buffers; for
        an input already in memory it sizes the block tasks only (see
        :mod:`dask_cellucid.options`).
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
        Deflate encoder for gzip: ``"auto"`` (for a sparse input, the
        sparse-aware encoder for every gene whose density is below the limit
        it measured smaller and faster than libdeflate at; libdeflate, else
        zlib, for the rest), ``"sparse"`` (the sparse-aware encoder for every
        gene of a sparse input), or one generic encoder for every gene:
        ``"libdeflate"``, ``"zlib"`` (the reference writer's bytes) or
        ``"isal"``. All produce standard gzip; they differ in speed and size.
        The sparse-aware encoder ignores the ``compression`` level (it makes
        the same bytes at every level).
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
        ``client_kwargs``...). Never logged. The storage is probed once
        before anything is written: missing credentials, an unreachable
        endpoint or a missing bucket raise a
        :class:`~dask_cellucid.StorageError` saying so.
    input_storage_options
        The same, for an input given as a URL (``s3://bucket/data.h5ad``).
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
    encoding = _encoding(var_quantization, compression, layout, rounding, codec)
    options.check_choice("missing_genes", missing_genes, ("raise", "warn"))
    for flag, value in (
        ("force", force),
        ("make_unique", make_unique),
        ("resume", resume),
        ("verify", verify),
        ("compute", compute),
    ):
        options.check_flag(flag, value)
    if verify and not compute:
        msg = "verify=True needs compute=True; after execute(), call dask_cellucid.verify()."
        raise InvalidOptionError(msg)
    _scheduler.check(scheduler, num_workers)
    if gene_expression is None:
        msg = "gene_expression is required: the (n_cells, n_genes) matrix to export."
        raise InvalidOptionError(msg)
    budget = options.resolve_memory(max_memory)
    task_budget = options.parse_memory(block_memory, "block_memory")
    if genes_per_block is not None:
        options.check_positive_int("genes_per_block", genes_per_block)

    source, var_df = _read_input(
        gene_expression,
        var,
        layer=layer,
        use_raw=use_raw,
        budget=budget,
        storage_options=input_storage_options,
    )
    all_ids, recorded = genes.gene_ids_from_var(var_df, var_gene_id_column)
    ids, columns = genes.select_genes(
        all_ids,
        gene_identifiers,
        missing_genes=missing_genes,
        rename=genes.make_unique if make_unique else None,
    )
    if not ids:
        msg = "no gene is selected for export; check gene_identifiers and var."
        raise InvalidOptionError(msg)
    _check_float32_range(source, ids, columns)
    ids, folder = folder_options(
        ids, encoding=encoding, layout=layout, var_gene_id_column=recorded, make_unique=make_unique
    )
    if genes_per_block is None:
        n_threads = _scheduler.planned_threads(scheduler, num_workers)
        genes_per_block = planning.genes_per_block(
            source.shape[0],
            len(ids),
            source.bytes_per_value(),
            block_memory=planning.task_memory(budget, n_threads, task_budget),
            n_threads=n_threads,
        )
    the_plan = planning.build_plan(
        n_cells=source.shape[0],
        gene_ids=ids,
        source_columns=columns,
        block_size=genes_per_block,
        options=folder,
        source_token=source.data_token(),
    )
    options.check_path("out_dir", out_dir)
    target = Target.from_url(out_dir, storage_options)
    target.check_access()  # credentials, endpoint, bucket: before anything is written
    embeddings = {
        d: e for d, e in ((1, X_umap_1d), (2, X_umap_2d), (3, X_umap_3d)) if e is not None
    }
    identity = {
        "dataset_id": dataset_id,
        "name": dataset_name,
        "description": dataset_description,
        "created_at": created_at,
    }
    writer = _folder_writer(the_plan, target, embeddings, identity, force=force, resume=resume)
    export = Export(the_plan, source, writer)
    if not compute:
        return export
    with export.computing(scheduler, num_workers) as where:
        result: ExportResult = export.run(where, progress=progress)
        if verify:
            _verify_export(export, where, tolerance=1.0 if rounding == "floor" else 0.5)
    return result


_SPARSE_USE = {"auto": "auto", "sparse": "always"}


def _encoding(
    var_quantization: Any, compression: Any, layout: Any, rounding: Any, codec: Any
) -> Encoding:
    """The folder's encoding from ``prepare``'s arguments, each checked."""
    bits = options.check_bits(var_quantization)
    level = options.check_compression(compression)
    options.check_choice("layout", layout, ("key", "index"))
    options.check_choice("rounding", rounding, ("nearest", "floor"))
    sparse = (
        {"auto": "auto", "sparse": "always"}.get(codec, "off") if isinstance(codec, str) else "off"
    )
    generic = codecs.resolve_codec("auto" if sparse != "off" else codec)
    return Encoding(bits=bits, compression=level, rounding=rounding, codec=generic, sparse=sparse)


def _read_input(
    matrix: Any,
    var: Any,
    *,
    layer: str | None,
    use_raw: bool,
    budget: int,
    storage_options: Mapping[str, Any] | None,
) -> tuple[Source, pd.DataFrame]:
    """The input as a :class:`Source` (nothing read yet) and the ``var`` that describes it."""
    source = as_source(
        matrix, layer=layer, use_raw=use_raw, max_memory=budget, storage_options=storage_options
    )
    return source, genes.var_for(var, source.var, source.shape)


def _folder_writer(
    plan: Plan,
    target: Target,
    embeddings: dict[int, Any],
    identity: dict[str, Any],
    *,
    force: bool,
    resume: bool,
) -> FolderWriter:
    """The folder's writer; with embeddings, checked now so that nothing is written first."""
    identity_options: dict[str, Any] = {}
    if embeddings:
        dataset.embedding_files(embeddings, plan.n_cells, Encoding(None, None))
        folder_name = target.display_url.rstrip("/").rsplit("/", 1)[-1]
        dataset_id = identity["dataset_id"] or dataset.dataset_id_from(folder_name)
        identity_options = {
            **identity,
            "dataset_id": dataset_id,
            "name": identity["name"] or dataset_id,
        }
    writer = FolderWriter(
        plan,
        target,
        force=force,
        resume=resume,
        embeddings=embeddings,
        identity_options=identity_options,
    )
    writer.check_identity()
    return writer


def _verify_export(export: Export, compute: Compute, *, tolerance: float) -> None:
    """``prepare(verify=True)``: read every gene back on the export's own ``compute``."""
    plan, target = export.plan, export.target
    report = verify_source(
        target,
        export.source,
        dict(zip(plan.gene_ids, plan.source_columns, strict=True)),
        compute=compute,
        tolerance=tolerance,
        genes_per_block=max(plan.block_sizes),
    )
    if not report.ok:
        msg = (
            f"the export in {target.display_url} does not match its source (the folder "
            f"was written; re-export it with force=True):\n{report}"
        )
        raise VerificationError(msg)
    log.info("verified: %d genes match the source", len(report.genes))


def prepare(*args: Any, format: str | None = None, **kwargs: Any) -> Any:
    """Export for the Cellucid viewer: an export folder, or (with ``format=``) an AnnData store.

    Two call forms, one per viewer generation:

    - ``prepare(gene_expression, var, out_dir=..., ...)``, without ``format``:
      the export folder of cellucid-python's ``prepare`` (``var/`` payloads
      and ``var_manifest.json``), which the viewers of ``cellucid==0.0.9``
      (``layout="key"``) and ``cellucid==0.9.2`` (``layout="index"``) open.
      The arguments are those of :func:`prepare_folder`.
    - ``prepare(out_path, format="zarr" | "zarr.zip", data=adata, ...)``: the
      Cellucid-ready AnnData store of ``cellucid>=0.9.5`` (what ``pip install
      cellucid`` gives; zarr v2 or ``zarr_format=3``, a ``.zarr`` folder or one
      ``.zarr.zip`` file), with cellucid 0.9.5's arguments: see
      :func:`~dask_cellucid.store_api.prepare_store`.

    Both run on the same engine: Dask tasks over blocks of genes, any input
    (NumPy, scipy.sparse, Dask, AnnData, ``.h5ad``/``.zarr`` paths), local
    disk or any fsspec URL, threads or a distributed cluster.
    """
    if format is None:
        return prepare_folder(*args, **kwargs)
    return prepare_store(*args, format=format, **kwargs)


def _prepare_signature() -> inspect.Signature:
    """Both forms' keywords, for ``help()`` and tools that read signatures."""
    folder = inspect.signature(prepare_folder)
    params = list(folder.parameters.values())
    have = {p.name for p in params}
    for p in inspect.signature(prepare_store).parameters.values():
        if p.name in have or p.name in ("out_path", "chunk_values"):
            continue
        default = None if p.name == "format" else p.default
        params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY, default=default))
    return folder.replace(parameters=params, return_annotation=Any)


prepare.__signature__ = _prepare_signature()  # type: ignore[attr-defined]


def _check_float32_range(source: Source, ids: Sequence[str], columns: Sequence[int]) -> None:
    """Refuse finite values the viewer's float32 cannot hold, when the matrix is in memory.

    Lazy inputs are checked by each block task instead (before its block is written).
    """
    resident = source.resident()
    over = None if resident is None else kernels.float32_overflow(resident)
    if over is not None:
        bad = [gene for gene, col in zip(ids, columns, strict=True) if over[col]]
        if bad:
            raise InputValueError(overflow_message(bad))


def verify(
    path_or_url: str | os.PathLike[str] | Target,
    source: Any,
    var: Any = None,
    *,
    layer: str | None = None,
    use_raw: bool = False,
    var_gene_id_column: str | None = None,
    gene_identifiers: Sequence[str] | None = None,
    tolerance: float = 0.5,
    genes_per_block: int | None = None,
    scheduler: Any = None,
    num_workers: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
    progress: bool | None = None,
    max_memory: int | str | None = None,
    input_storage_options: Mapping[str, Any] | None = None,
) -> VerifyReport | StoreVerifyReport:
    """Compare every exported gene with the source matrix, in parallel.

    Reads the source as the export does (one Dask task per block of genes),
    decodes each payload as the viewer does, and reports per gene the largest
    error in quantization steps, genes whose values or bounds are wrong, NaN
    mismatches, and genes missing from or extra to the export.

    Parameters
    ----------
    path_or_url
        The export folder (local path or fsspec URL), or a Cellucid-ready
        store (a ``.zarr`` folder, :func:`~dask_cellucid.prepare_store`'s
        output): then every gene (by name, from the store's ``var`` index)
        is compared exactly with the source cast to the store's dtype, and a
        :class:`~dask_cellucid.StoreVerifyReport` is returned
        (``tolerance`` and ``genes_per_block`` do not apply).
    source
        What the export was made from: anything :func:`~dask_cellucid.prepare`
        accepts as ``gene_expression``.
    var
        Gene metadata for a bare matrix (a DataFrame or a list of names);
        taken from the source when it carries it.
    layer, use_raw
        Which matrix of an AnnData source, as for ``prepare``.
    var_gene_id_column
        Where gene ids come from; default: what the manifest records.
    gene_identifiers
        The genes the export should hold; default: the genes its manifest
        lists that the source has (so an export of a subset of genes checks
        out), and manifest genes the source lacks are reported as extra.
    tolerance
        Largest accepted error in steps: 0.5 (the default) for exports rounded
        to nearest; 1 accepts ``rounding="floor"`` (the reference writer's
        truncation). float32 exports are compared bit for bit.
    genes_per_block
        Genes per task; by default sized as ``prepare`` sizes the export's.
    scheduler, num_workers, progress
        How to run, as for ``prepare``.
    storage_options
        fsspec options for ``path_or_url``.
    max_memory
        Memory budget, as for ``prepare``.
    input_storage_options
        fsspec options for a ``source`` given as a URL.

    Returns
    -------
    VerifyReport or StoreVerifyReport
        ``.ok`` is True only when every gene is within ``tolerance`` with
        the right bounds and missing cells, and no gene is missing or extra.
    """
    tolerance = options.check_tolerance(tolerance)
    if genes_per_block is not None:
        options.check_positive_int("genes_per_block", genes_per_block)
    budget = options.resolve_memory(max_memory)
    target = Target.of(path_or_url, storage_options)
    if detect(target) == "store":
        target.check_access(write=False)
        return verify_store(
            target,
            source,
            var,
            layer=layer,
            use_raw=use_raw,
            var_gene_id_column=var_gene_id_column,
            gene_identifiers=gene_identifiers,
            scheduler=scheduler,
            num_workers=num_workers,
            progress=progress,
            max_memory=budget,
            input_storage_options=input_storage_options,
        )
    src, var_df = _read_input(
        source,
        var,
        layer=layer,
        use_raw=use_raw,
        budget=budget,
        storage_options=input_storage_options,
    )
    target.check_access(write=False)
    doc = folder_verify.read_manifest_leniently(target)
    column = var_gene_id_column or folder_verify.recorded_id_column(doc)
    all_ids, _ = genes.gene_ids_from_var(var_df, column)
    lookup, full = folder_verify.column_lookup(all_ids, layout_of(doc))
    wanted = genes.requested_ids(gene_identifiers)
    if wanted is None:
        # the genes the export holds that the source has: a subset export checks out
        exported = folder_verify.manifest_gene_ids(doc)
        wanted = [g for g in exported if g in lookup] if exported is not None else full
    report = verify_source(
        target,
        src,
        lookup,
        expected=wanted,
        tolerance=tolerance,
        genes_per_block=genes_per_block,
        scheduler=scheduler,
        num_workers=num_workers,
        progress=progress,
        max_memory=budget,
    )
    report.n_source_genes = len(all_ids)
    if report.mostly_wrong:
        report.other_matrices = other_matrices(
            source, layer=layer, use_raw=use_raw, storage_options=input_storage_options
        )
    return report


def verify_source(
    target: Target,
    source: Source,
    gene_columns: Mapping[str, int],
    *,
    expected: Sequence[str] | None = None,
    tolerance: float = 0.5,
    genes_per_block: int | None = None,
    scheduler: Any = None,
    num_workers: int | None = None,
    progress: bool | None = None,
    max_memory: int | None = None,
    compute: Compute | None = None,
) -> VerifyReport:
    """Compare an export with a :class:`~dask_cellucid.adapters.Source`, one task per block.

    ``gene_columns`` maps gene ids to their column in ``source``; ``expected``
    lists the genes the export should hold (default: every key of
    ``gene_columns``). Blocks are sized as the export sizes them, unless
    ``genes_per_block`` is given. Runs on ``compute`` when given (the export's
    own, so one call starts one cluster), else on ``scheduler``.
    """
    if compute is None:
        _scheduler.check(scheduler, num_workers)
        with _scheduler.resolve(scheduler, num_workers) as where:
            return verify_source(
                target,
                source,
                gene_columns,
                expected=expected,
                tolerance=tolerance,
                genes_per_block=genes_per_block,
                progress=progress,
                max_memory=max_memory,
                compute=where,
            )
    n_cells = source.shape[0]
    n_threads = compute.n_threads

    def per_block(n_genes: int, itemsize: int) -> int:
        if genes_per_block is not None:
            return genes_per_block
        return planning.genes_per_block(
            n_cells,
            n_genes,
            source.bytes_per_value() + itemsize + 16,
            block_memory=planning.task_memory(
                max_memory or options.default_max_memory(), n_threads
            ),
            n_threads=n_threads,
        )

    check = folder_verify.plan_verification(
        target,
        n_cells,
        gene_columns,
        genes_per_block=per_block,
        expected=expected,
        tolerance=tolerance,
        description=getattr(source, "description", "source"),
    )
    if not check.jobs:
        return check.report
    x = source.column_blocks(check.source_columns, check.block_sizes)
    log.info(
        "verifying %d genes x %d cells in %d block tasks", check.n_genes, n_cells, len(check.jobs)
    )
    checks = run_blocks(
        x,
        check.block_task,
        check.jobs,
        target,
        compute=compute,
        name=f"verify-{os.urandom(4).hex()}",
        n_items=check.n_genes,
        progress=progress,
        desc="Verifying genes",
    )
    return check.finish(checks)


def validate(
    path_or_url: str | os.PathLike[str] | Target,
    storage_options: Mapping[str, Any] | None = None,
    *,
    max_workers: int | None = None,
) -> ValidationReport | StoreValidationReport:
    """Check an export folder, or a Cellucid-ready store, against its format.

    A folder with ``.zmetadata`` or a root ``zarr.json``, or whose name ends
    in ``.zarr``, or a ``.zarr.zip`` file, is a store
    (:func:`~dask_cellucid.prepare_store`'s output): it is checked against the
    Cellucid-ready AnnData contract (the metadata, the chunking and codecs of
    ``X``, ``X/indptr``, every chunk of ``X/data`` present) and a
    :class:`~dask_cellucid.StoreValidationReport` is returned. Anything else
    is an export folder, checked as
    :func:`dask_cellucid.formats.folder.validate.validate` checks it.

    Parameters
    ----------
    path_or_url
        The export folder or store: a local path or any fsspec URL.
    storage_options
        fsspec options for a URL (credentials, ``endpoint_url``, ...).
    max_workers
        Threads reading a folder's payloads (default: a few more than the
        CPUs, at most 8).

    Returns
    -------
    ValidationReport or StoreValidationReport
        ``.ok``, ``.problems`` (all of them); ``str()`` reads well.

    Examples
    --------
    >>> report = validate("exports/pbmc")  # doctest: +SKIP
    >>> report.ok, len(report.problems)  # doctest: +SKIP
    (True, 0)
    """
    target = Target.of(path_or_url, storage_options)
    if detect(target) == "store":
        return validate_store(target)
    return folder_validate.validate(path_or_url, storage_options, max_workers=max_workers)


def read_genes(
    path: str | os.PathLike[str],
    genes: Sequence[Any] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> dict[Any, np.ndarray]:
    """Decode several genes of an export folder or a store: ``{gene: vector of n_cells}``.

    From a folder, quantized values are dequantized with the viewer's formula
    (``min + code * (max - min) / max_code`` in float64, stored as float32) and
    the missing marker becomes NaN; float32 payloads come back as written
    (see :func:`dask_cellucid.formats.folder.read.read_genes`).

    From a Cellucid-ready store (a folder with ``.zmetadata`` or a root
    ``zarr.json``, a folder named ``*.zarr``, or a ``*.zarr.zip`` file), genes
    are named as in its ``var`` index (or given by their position in ``X``, as
    an int), and read as the browser reads them: the
    consolidated metadata, ``X/indptr`` and the chunks covering each gene,
    nothing else. Values come back in the store's dtype.

    Parameters
    ----------
    path
        The export folder or store: a local path or any fsspec URL.
    genes
        Gene ids; ``None`` reads every gene, in export order.
    storage_options
        fsspec options for a URL.

    Raises
    ------
    GeneIdError
        A requested gene is not in the export.
    FileNotFoundError
        A folder has no manifest, or a payload it names is missing.
    """
    if detect(path, storage_options) == "store":
        return read_named_genes(path, genes, storage_options)
    return folder_read.read_genes(path, genes, storage_options)  # type: ignore[return-value]


def read_gene(
    path: str | os.PathLike[str], gene: Any, storage_options: Mapping[str, Any] | None = None
) -> np.ndarray:
    """Decode one gene of an export folder or a store as the viewer would.

    See :func:`read_genes`: a folder gives float32 with NaN for missing
    values; a store gives its own dtype.

    Examples
    --------
    >>> values = read_gene("exports/pbmc", "CD3E")  # doctest: +SKIP
    >>> values.dtype, values.shape  # doctest: +SKIP
    (dtype('float32'), (2700,))
    """
    if detect(path, storage_options) == "store":
        return read_named_genes(path, [gene], storage_options)[gene]
    return folder_read.read_gene(path, gene, storage_options)


__all__ = [
    "Export",
    "ExportResult",
    "prepare",
    "prepare_folder",
    "read_gene",
    "read_genes",
    "validate",
    "verify",
    "verify_source",
]
