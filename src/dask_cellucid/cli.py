"""``dask-cellucid``: the command line. Parses arguments and calls the library.

Exit codes: 0 success; 1 a check found problems (validate/verify); 2 bad
input or arguments (the message says what to change); 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CellucidExportError

if TYPE_CHECKING:
    from collections.abc import Sequence

log = logging.getLogger("dask_cellucid")

DEMO_DIR = "cellucid-demo"

_EXPORT_HELP = """\
Export gene expression to a folder the Cellucid viewer opens.

With no INPUT, exports a built-in demo dataset (20,000 cells x 2,000 genes,
with a 2-D and 3-D embedding) to ./cellucid-demo, so you can see the whole
job work.

INPUT is an AnnData file: a .h5ad file or a .zarr store (a local path or a URL
such as s3://bucket/data.zarr). It is read lazily: files larger than memory
are fine. Which matrix is exported:
  adata.X                 by default
  adata.layers[NAME]      with --layer NAME (e.g. --layer counts)
  adata.raw.X             with --use-raw (log-normalised values, all genes)

examples:
  dask-cellucid export
  dask-cellucid export pbmc.h5ad out/pbmc --genes CD3E,MS4A1,NKG7
  dask-cellucid export atlas.zarr s3://bucket/atlas --quantization 8 --compression 6 \\
      --scheduler distributed
"""


def _parse_genes(value: str | None) -> list[str] | None:
    if value is None:
        return None
    path = Path(value)
    if path.is_file():
        return [
            g.strip() for g in path.read_text().splitlines() if g.strip() and not g.startswith("#")
        ]
    return [g.strip() for g in value.split(",") if g.strip()]


def _quantization(value: str) -> int | None:
    if value.lower() in ("none", "off", "float32", "0"):
        return None
    if value in ("8", "16"):
        return int(value)
    msg = f"{value!r} is not 8, 16 or none"
    raise argparse.ArgumentTypeError(msg)


def _level(value: str) -> int | None:
    if value.lower() in ("none", "off", "0"):
        return None
    if value.isdigit() and 1 <= int(value) <= 9:
        return int(value)
    msg = f"{value!r} is not a gzip level 1-9 or none"
    raise argparse.ArgumentTypeError(msg)


def _storage_options(pairs: Sequence[str]) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if not _:
            msg = f"--storage-option {pair!r} must look like KEY=VALUE"
            raise argparse.ArgumentTypeError(msg)
        opts[key] = value
    return opts


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dask-cellucid",
        description="Export single-cell gene expression for the Cellucid viewer, at any scale.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="more log output (-v: progress messages, -vv: debug)",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ex = sub.add_parser(
        "export",
        help="export genes to a Cellucid folder",
        parents=[common],
        description=_EXPORT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ex.add_argument(
        "input", nargs="?", help="a .h5ad file or .zarr store; omit for the demo dataset"
    )
    ex.add_argument(
        "out", nargs="?", help=f"output folder or URL (default: ./{DEMO_DIR} for the demo)"
    )
    ex.add_argument(
        "-o",
        "--out",
        dest="out_option",
        metavar="OUT",
        help="output folder or URL (same as the OUT argument; handy with the demo)",
    )
    ex.add_argument(
        "--genes",
        metavar="FILE|G1,G2",
        help="export only these genes: a comma-separated list, or a file with one id per line",
    )
    ex.add_argument(
        "--gene-id-column",
        metavar="COL",
        help="column of var holding the gene ids (default: var's index)",
    )
    ex.add_argument("--layer", help="export adata.layers[LAYER] instead of adata.X")
    ex.add_argument("--use-raw", action="store_true", help="export adata.raw.X (and adata.raw.var)")
    ex.add_argument(
        "--quantization",
        type=_quantization,
        default=8,
        metavar="8|16|none",
        help="bits per value; 'none' keeps float32 (default: 8)",
    )
    ex.add_argument(
        "--compression",
        type=_level,
        default=6,
        metavar="N|none",
        help="gzip level 1-9, or none (default: 6)",
    )
    ex.add_argument(
        "--layout",
        choices=("key", "index"),
        default="key",
        help="'key' names files by gene id (default); 'index' pairs with cellucid 0.9.1/0.9.2",
    )
    ex.add_argument(
        "--rounding",
        choices=("nearest", "floor"),
        default="nearest",
        help="'floor' reproduces the reference writer's codes (default: nearest)",
    )
    ex.add_argument("--codec", default="auto", help="deflate encoder: auto, libdeflate, zlib, isal")
    ex.add_argument(
        "--make-unique",
        action="store_true",
        help="rename repeated or colliding gene ids X-1, X-2, ... instead of refusing them",
    )
    ex.add_argument(
        "--embedding",
        default="X_umap",
        metavar="KEY",
        help="obsm key written as the folder's embedding, if present (default: X_umap)",
    )
    ex.add_argument(
        "--scheduler",
        default=None,
        help="threads (default), processes, synchronous, distributed, or a scheduler address",
    )
    ex.add_argument("--workers", type=int, default=None, help="threads/processes/workers to use")
    ex.add_argument(
        "--max-memory",
        default=None,
        metavar="SIZE",
        help="memory budget for reading the input, e.g. 4GiB (default: a fraction of RAM)",
    )
    ex.add_argument(
        "--storage-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fsspec storage option for a URL output, e.g. endpoint_url=http://...",
    )
    ex.add_argument("--force", action="store_true", help="replace an existing export in OUT")
    ex.add_argument("--no-progress", action="store_true", help="no progress bar")
    ex.set_defaults(func=_cmd_export)

    va = sub.add_parser(
        "validate", help="check an export folder against the format", parents=[common]
    )
    va.add_argument("folder", help="export folder or URL")
    va.add_argument("--storage-option", action="append", default=[], metavar="KEY=VALUE")
    va.set_defaults(func=_cmd_validate)

    ve = sub.add_parser(
        "verify", help="compare every exported gene with the source matrix", parents=[common]
    )
    ve.add_argument("folder", help="export folder or URL")
    ve.add_argument("source", help="the .h5ad/.zarr the export was made from")
    ve.add_argument("--layer", help="compare with adata.layers[LAYER]")
    ve.add_argument("--use-raw", action="store_true", help="compare with adata.raw.X")
    ve.add_argument("--gene-id-column", metavar="COL", help="column of var holding the gene ids")
    ve.add_argument("--genes", metavar="FILE|G1,G2", help="check only these genes")
    ve.add_argument(
        "--tolerance",
        type=float,
        default=0.5,
        help="largest error allowed, in quantization steps (default 0.5; use 1 for exports "
        "made with --rounding floor or by the reference writer)",
    )
    ve.add_argument("--workers", type=int, default=None, help="threads/processes/workers to use")
    ve.add_argument("--scheduler", default=None)
    ve.add_argument("--storage-option", action="append", default=[], metavar="KEY=VALUE")
    ve.set_defaults(func=_cmd_verify)
    return parser


def _embedding_of(path: str, key: str) -> dict[str, Any]:
    """``X_umap_<d>d`` from the input's obsm, when it has that key (small, read eagerly)."""
    from .adapters import read_obsm

    coords = read_obsm(path, key)
    if coords is None or coords.ndim != 2 or coords.shape[1] not in (1, 2, 3):
        return {}
    return {f"X_umap_{coords.shape[1]}d": coords}


def _cmd_export(args: argparse.Namespace) -> int:
    from .api import prepare

    progress = not args.no_progress and sys.stderr.isatty()
    common = {
        "var_quantization": args.quantization,
        "compression": args.compression,
        "layout": args.layout,
        "rounding": args.rounding,
        "codec": args.codec,
        "make_unique": args.make_unique,
        "force": args.force,
        "scheduler": args.scheduler,
        "num_workers": args.workers,
        "progress": progress,
        "gene_identifiers": _parse_genes(args.genes),
        "storage_options": _storage_options(args.storage_option) or None,
    }
    args.out = args.out_option or args.out
    if args.input is None:
        from .datasets import demo

        out = args.out or DEMO_DIR
        log.info("no input given: exporting the built-in demo dataset")
        data = demo()
        result = prepare(
            data.X,
            data.var,
            out_dir=out,
            X_umap_2d=data.umap_2d,
            X_umap_3d=data.umap_3d,
            dataset_id="dask-cellucid-demo",
            dataset_name="dask-cellucid demo (synthetic)",
            var_gene_id_column=args.gene_id_column,
            **common,
        )
    else:
        if args.out is None:
            print("error: give the output folder: dask-cellucid export INPUT OUT", file=sys.stderr)
            return 2
        out = args.out
        from .options import parse_memory

        # a bad --max-memory is refused before the input's embedding is read
        args.max_memory = parse_memory(args.max_memory)
        extra = {} if args.embedding in ("", "none") else _embedding_of(args.input, args.embedding)
        result = prepare(
            args.input,
            out_dir=out,
            layer=args.layer,
            use_raw=args.use_raw,
            max_memory=args.max_memory,
            var_gene_id_column=args.gene_id_column,
            **extra,
            **common,
        )
    print(result)
    where = result.url
    if "://" not in where:
        where = os.path.relpath(where)
        print(f"Folder: {os.path.abspath(where)}")
    viewer = "cellucid==0.0.9" if result.layout == "key" else "cellucid==0.9.2"
    print(
        f"To view it ({result.layout} layout), serve it with the matching viewer:\n"
        f"  pip install '{viewer}' && cellucid serve {where}\n"
        f"Check it any time with: dask-cellucid validate {where}"
    )
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from .formats.folder.validate import validate

    report = validate(args.folder, storage_options=_storage_options(args.storage_option) or None)
    print(report)
    return 0 if report.ok else 1


def _cmd_verify(args: argparse.Namespace) -> int:
    from .api import verify

    report = verify(
        args.folder,
        args.source,
        layer=args.layer,
        use_raw=args.use_raw,
        var_gene_id_column=args.gene_id_column,
        gene_identifiers=_parse_genes(args.genes),
        tolerance=args.tolerance,
        num_workers=args.workers,
        scheduler=args.scheduler,
        storage_options=_storage_options(args.storage_option) or None,
    )
    print(report)
    return 0 if report.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dask-cellucid`` command."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if not any(getattr(h, "_dask_cellucid_cli", False) for h in log.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler._dask_cellucid_cli = True  # type: ignore[attr-defined]
        log.addHandler(handler)
    log.setLevel(logging.WARNING - 10 * min(args.verbose, 2))
    try:
        return int(args.func(args))
    except CellucidExportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (FileNotFoundError, IsADirectoryError, PermissionError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
