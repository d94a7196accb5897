"""``dask-cellucid``: the command line. Parses arguments and calls the library.

Exit codes: 0 success; 1 a check found problems (validate/verify); 2 bad
input or arguments (the message says what to change); 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CellucidExportError, InvalidOptionError

if TYPE_CHECKING:
    from collections.abc import Sequence

log = logging.getLogger("dask_cellucid")

DEMO_DIR = "cellucid-demo"
DEMO_STORE = "cellucid-demo.zarr"
DEMO_ID = "dask-cellucid-demo"

_EXPORT_HELP = """\
Export gene expression to a folder the Cellucid viewer opens, or (with
--format zarr) write a Cellucid-ready AnnData store for cellucid 0.9.5+.

With no INPUT, exports a built-in demo dataset (20,000 cells x 2,000 genes,
with a 2-D and 3-D embedding) to ./cellucid-demo (./cellucid-demo.zarr with
--format zarr), so you can see the whole job work.

INPUT is an AnnData file: a .h5ad file or a .zarr store (a local path or a URL
such as s3://bucket/data.zarr). It is read lazily: files larger than memory
are fine. Which matrix is exported:
  adata.X                 by default
  adata.layers[NAME]      with --layer NAME (e.g. --layer counts)
  adata.raw.X             with --use-raw (log-normalised values, all genes)

examples:
  dask-cellucid export
  dask-cellucid export pbmc.h5ad out/pbmc.zarr --format zarr
  dask-cellucid export pbmc.h5ad out/pbmc.zarr.zip --format zarr.zip --zarr-format 3
  dask-cellucid export pbmc.h5ad out/pbmc --genes CD3E,MS4A1,NKG7
  dask-cellucid export atlas.zarr s3://bucket/atlas --quantization 8 --compression 6 \\
      --scheduler distributed
"""

_EXPORT_EPILOG = """\
defaults differ from the Python API:
  This command writes 8-bit values with gzip level 6 and takes INPUT's
  obsm["X_umap"] as the embedding, so the folder opens in the viewer on its
  own. dask_cellucid.prepare() follows cellucid.prepare instead: float32, no
  gzip, and an embedding only when given (X_umap_2d=...). For prepare()'s
  output here, pass --quantization none --compression none --embedding none.
  The command prints the settings it uses before it exports.

which viewer opens the output:
  --format zarr            cellucid 0.9.5 and later: pip install cellucid (recommended)
  --layout key (default)   pip install 'cellucid==0.0.9' (the release tagged v0.9.0)
  --layout index           pip install 'cellucid==0.9.2'
  cellucid 0.9.5 and later reads neither folder layout: it opens the
  Cellucid-ready AnnData store that --format zarr writes.

--format zarr writes the store of cellucid 0.9.5's prepare(format="zarr"):
  X (float32, canonical CSC), obs, var, every numeric obsm array of INPUT as an
  embedding, obsp["connectivities"] when present. OUT must end in .zarr.
  --format zarr.zip writes the same store in one file (prepare(format=
  "zarr.zip")); OUT must end in .zarr.zip. --zarr-format 3 writes zarr v3
  (default: v2). Both take --genes, --gene-id-column, --dataset-id,
  --dataset-name, --dataset-description, --citation-text, --citation-url,
  --source-name, --source-url, --force, --verify and the running and storage
  flags; the folder's encoding flags (--quantization, --compression, --layout,
  --rounding, --codec, --make-unique, --embedding) and --layer/--use-raw do
  not apply.
"""


def _parse_genes(value: str | None) -> list[str] | None:
    if value is None:
        return None
    path = Path(value)
    try:
        is_file = path.is_file()
    except OSError:  # a long list is no file name ("File name too long")
        is_file = False
    if is_file:
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


def _storage_options(pairs: Sequence[str], flag: str = "--storage-option") -> dict[str, Any]:
    """``KEY=VALUE`` pairs as fsspec options; ``true``/``false`` become booleans."""
    opts: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            msg = f"{flag} {pair!r} must look like KEY=VALUE, e.g. endpoint_url=http://..."
            raise InvalidOptionError(msg)
        low = value.lower()
        opts[key] = True if low == "true" else False if low == "false" else value
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
        # not 0: the command's default would reset a -v given before the command
        default=argparse.SUPPRESS,
        help="more log output (-v: progress messages and full tracebacks, -vv: debug)",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ex = sub.add_parser(
        "export",
        help="export genes to a Cellucid folder",
        parents=[common],
        description=_EXPORT_HELP,
        epilog=_EXPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ex.add_argument(
        "input", nargs="?", help="a .h5ad file or .zarr store; omit for the demo dataset"
    )
    ex.add_argument(
        "out",
        nargs="?",
        help=f"output folder or URL (default: ./{DEMO_DIR}, or ./{DEMO_STORE} with "
        "--format zarr, for the demo)",
    )
    ex.add_argument(
        "--format",
        choices=("folder", "zarr", "zarr.zip"),
        default="folder",
        help="'folder' (default): an export folder for cellucid 0.0.9/0.9.2; 'zarr': a "
        "Cellucid-ready AnnData store for cellucid 0.9.5 and later (recommended); "
        "'zarr.zip': the same store in one .zarr.zip file",
    )
    ex.add_argument(
        "--zarr-format",
        type=int,
        choices=(2, 3),
        default=None,
        help="with --format zarr or zarr.zip: zarr v2 (default) or v3",
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
    ex.add_argument(
        "--codec",
        default="auto",
        help="deflate encoder: auto (sparse-aware where it pays), sparse, libdeflate, zlib, isal",
    )
    ex.add_argument(
        "--make-unique",
        action="store_true",
        help="rename repeated or colliding gene ids X-1, X-2, ... instead of refusing them",
    )
    ex.add_argument(
        "--embedding",
        default="X_umap",
        metavar="KEY",
        help="obsm key of INPUT written as the folder's embedding, if present (default: "
        "X_umap); 'none' writes genes only, e.g. to add them to a folder cellucid wrote",
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
        help="fsspec storage option for a URL output, e.g. endpoint_url=http://... "
        "(repeat for more: key=..., secret=..., profile=...)",
    )
    ex.add_argument(
        "--input-storage-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fsspec storage option for a URL INPUT, e.g. anon=true",
    )
    ex.add_argument(
        "--dataset-id",
        metavar="ID",
        help="the dataset's id (default: from OUT's name)",
    )
    ex.add_argument(
        "--dataset-name",
        metavar="NAME",
        help="the dataset's display name (default: its id)",
    )
    for flag, what in (
        ("--dataset-description", "one paragraph about the dataset"),
        ("--citation-text", "how to cite the dataset"),
        ("--citation-url", "the citation's http(s) address (needs --citation-text)"),
        ("--source-name", "where the data comes from"),
        ("--source-url", "the source's http(s) address (needs --source-name)"),
    ):
        ex.add_argument(flag, metavar="TEXT", default=None, help=f"with --format zarr: {what}")
    ex.add_argument("--force", action="store_true", help="replace an existing export in OUT")
    ex.add_argument(
        "--verify",
        action="store_true",
        help="with --format zarr: read every gene back and compare it with INPUT, exactly",
    )
    ex.add_argument("--no-progress", action="store_true", help="no progress bar")
    ex.set_defaults(func=_cmd_export)

    va = sub.add_parser(
        "validate",
        help="check an export folder or a Cellucid-ready store against its format",
        parents=[common],
    )
    va.add_argument("folder", help="export folder or .zarr store, or URL")
    va.add_argument("--storage-option", action="append", default=[], metavar="KEY=VALUE")
    va.set_defaults(func=_cmd_validate)

    ve = sub.add_parser(
        "verify", help="compare every exported gene with the source matrix", parents=[common]
    )
    ve.add_argument("folder", help="export folder or .zarr store, or URL")
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
    ve.add_argument(
        "--storage-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fsspec storage option for a URL FOLDER",
    )
    ve.add_argument(
        "--input-storage-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fsspec storage option for a URL SOURCE",
    )
    ve.set_defaults(func=_cmd_verify)
    return parser


def _embedding_of(path: str, key: str, storage_options: dict[str, Any] | None) -> dict[str, Any]:
    """``X_umap_<d>d`` from the input's obsm, when it has that key (small, read eagerly)."""
    from .adapters import read_obsm

    coords = read_obsm(path, key, storage_options)
    if coords is None or coords.ndim != 2 or coords.shape[1] not in (1, 2, 3):
        return {}
    return {f"X_umap_{coords.shape[1]}d": coords}


def _is_our_demo(out: str, storage_options: dict[str, Any] | None) -> bool:
    """Whether ``out`` holds a finished demo export written by this command."""
    from .storage import Target

    target = Target.from_url(out, storage_options)
    target.check_access()  # before the read below: a short error, not a minute of retries
    try:
        raw = target.read("dataset_identity.json")
        ident = json.loads(raw) if raw is not None else None
    except Exception:  # unreadable: not ours; prepare() says what is wrong with it
        return False
    return isinstance(ident, dict) and ident.get("id") == DEMO_ID


def _settings(what: str, common: dict[str, Any], embedding: str) -> str:
    """One line: the matrix, encoding, layout and embedding the export will write."""
    bits = common["var_quantization"]
    level = common["compression"]
    parts = [
        f"{bits}-bit" if bits else "float32",
        f"gzip {level}" if level else "no gzip",
        f"{common['layout']} layout",
        embedding,
    ]
    return f"Exporting {what}: {', '.join(parts)}."


def _cmd_export(args: argparse.Namespace) -> int:
    from .api import prepare

    progress = not args.no_progress and sys.stderr.isatty()
    storage_options = _storage_options(args.storage_option) or None
    input_options = _storage_options(args.input_storage_option, "--input-storage-option") or None
    if args.format in ("zarr", "zarr.zip"):
        return _export_store(args, progress, storage_options, input_options)
    store_only = [
        f"--{name.replace('_', '-')}" for name in _STORE_ONLY if getattr(args, name) is not None
    ]
    if store_only:
        print(
            f"error: {', '.join(store_only)}: only for --format zarr or zarr.zip (the "
            "Cellucid-ready store); drop it, or add --format zarr.",
            file=sys.stderr,
        )
        return 2
    if args.verify:
        print(
            "error: --verify applies to --format zarr; check a folder after the export with: "
            "dask-cellucid verify OUT INPUT",
            file=sys.stderr,
        )
        return 2
    identity = {
        k: v
        for k, v in (("dataset_id", args.dataset_id), ("dataset_name", args.dataset_name))
        if v is not None
    }
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
        "storage_options": storage_options,
        "compute": False,
    }
    args.out = args.out_option or args.out
    if args.input is None:
        from .datasets import demo

        out = args.out or DEMO_DIR
        if input_options:
            print("error: --input-storage-option needs an INPUT URL", file=sys.stderr)
            return 2
        if not args.force and _is_our_demo(out, storage_options):
            # the README's first command must run twice: replace our own demo, nothing else
            common["force"] = True
            print(f"Replacing the demo export an earlier run wrote to {out}.")
        log.info("no input given: exporting the built-in demo dataset")
        data = demo()
        if args.embedding in ("", "none"):
            umap: dict[str, Any] = {}
            embedding = "no embedding (--embedding none)"
        else:
            umap = {"X_umap_2d": data.umap_2d, "X_umap_3d": data.umap_3d}
            embedding = "the demo's own embedding (2d and 3d)"
        export = prepare(
            data.X,
            data.var,
            out_dir=out,
            **umap,
            dataset_id=identity.get("dataset_id", DEMO_ID),
            dataset_name=identity.get("dataset_name", "dask-cellucid demo (synthetic)"),
            var_gene_id_column=args.gene_id_column,
            **common,
        )
        what = f"the built-in demo ({data.X.shape[0]:,} cells x {data.X.shape[1]:,} genes)"
    else:
        if args.out is None:
            print("error: give the output folder: dask-cellucid export INPUT OUT", file=sys.stderr)
            return 2
        out = args.out
        from .options import parse_memory

        # a bad --max-memory is refused before the input's embedding is read
        args.max_memory = parse_memory(args.max_memory)
        if args.embedding in ("", "none"):
            extra: dict[str, Any] = {}
            embedding = "no embedding (--embedding none)"
        else:
            extra = _embedding_of(args.input, args.embedding, input_options)
            embedding = (
                f"embedding {args.embedding} ({next(iter(extra))[-2:]})"
                if extra
                else f"no embedding (INPUT has no 1-3 column obsm[{args.embedding!r}])"
            )
        export = prepare(
            args.input,
            out_dir=out,
            layer=args.layer,
            use_raw=args.use_raw,
            max_memory=args.max_memory,
            var_gene_id_column=args.gene_id_column,
            input_storage_options=input_options,
            **extra,
            **identity,
            **common,
        )
        matrix = "raw.X" if args.use_raw else f"layers[{args.layer!r}]" if args.layer else "X"
        what = f"{matrix} of {args.input}"
    print(_settings(what, common, embedding), flush=True)
    result = export.execute(args.scheduler, args.workers, progress=progress)
    print(result)
    where = result.url
    if "://" not in where:
        where = os.path.relpath(where)
        print(f"Folder: {os.path.abspath(where)}")
    print(_how_to_view(result.layout, where))
    return 0


# the folder export's flags that mean nothing to a store, with their defaults
_FOLDER_ONLY = (
    ("quantization", "--quantization", 8),
    ("compression", "--compression", 6),
    ("layout", "--layout", "key"),
    ("rounding", "--rounding", "nearest"),
    ("codec", "--codec", "auto"),
    ("make_unique", "--make-unique", False),
    ("embedding", "--embedding", "X_umap"),
)


# the store's flags that mean nothing to a folder export (None unless given)
_STORE_ONLY = (
    "zarr_format",
    "dataset_description",
    "citation_text",
    "citation_url",
    "source_name",
    "source_url",
)


def _store_dataset_id(out: str) -> str:
    """A valid dataset id from a store's name (``my data.zarr`` -> ``my_data``)."""
    name = out.rstrip("/").rsplit("/", 1)[-1]
    for suffix in (".zarr.zip", ".zarr"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-")[:180]
    return cleaned if re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", cleaned) else "dataset"


def _is_our_demo_store(out: str, storage_options: dict[str, Any] | None) -> bool:
    """Whether ``out`` holds a finished demo store written by this command."""
    from .formats.store import archive
    from .formats.store.read import StoreReader
    from .storage import Target

    target = Target.from_url(out, storage_options)
    archive.check_access(target, zipped=archive.is_zip_name(out))
    try:
        return str(StoreReader(target).array("uns/cellucid/id")) == DEMO_ID
    except Exception:  # absent or unreadable: not ours; prepare() says what is wrong with it
        return False


def _export_store(
    args: argparse.Namespace,
    progress: bool,  # noqa: FBT001
    storage_options: dict[str, Any] | None,
    input_options: dict[str, Any] | None,
) -> int:
    """``export --format zarr|zarr.zip``: the Cellucid-ready AnnData store of cellucid 0.9.5+."""
    from .api import prepare
    from .options import parse_memory

    if args.layer is not None or args.use_raw:
        print(
            "error: --layer and --use-raw apply to the folder export only: --format zarr "
            "writes INPUT's X (with its var), as cellucid 0.9.5's prepare(data=adata) does. "
            "Write the matrix you want as X of an AnnData file first, or drop --format zarr.",
            file=sys.stderr,
        )
        return 2
    given = [flag for name, flag, default in _FOLDER_ONLY if getattr(args, name) != default]
    if given:
        print(
            f"error: {', '.join(given)}: only for the export folder's encoding, which does not "
            "apply to --format zarr (the store's encoding is fixed by its contract); drop it.",
            file=sys.stderr,
        )
        return 2
    args.out = args.out_option or args.out
    demo = args.input is None
    suffix = ".zarr.zip" if args.format == "zarr.zip" else ".zarr"
    out = args.out or ((DEMO_STORE if suffix == ".zarr" else DEMO_STORE + ".zip") if demo else None)
    if out is None:
        print(
            f"error: give the output store: dask-cellucid export INPUT OUT{suffix} "
            f"--format {args.format}",
            file=sys.stderr,
        )
        return 2
    name = out.rstrip("/").lower()
    if not name.endswith(suffix) or (suffix == ".zarr" and name.endswith(".zarr.zip")):
        stem = out.rstrip("/")
        for known in (".zarr.zip", ".zarr"):
            if stem.lower().endswith(known):
                stem = stem[: -len(known)]
                break
        print(
            f"error: --format {args.format} writes a {suffix} store, and OUT {out!r} does not "
            f"end in {suffix}; name it e.g. {stem}{suffix}",
            file=sys.stderr,
        )
        return 2
    max_memory = parse_memory(args.max_memory)
    force = args.force
    common: dict[str, Any] = {
        "gene_identifiers": _parse_genes(args.genes),
        "var_gene_id_column": args.gene_id_column,
        "scheduler": args.scheduler,
        "num_workers": args.workers,
        "storage_options": storage_options,
        "max_memory": max_memory,
        "progress": progress,
        "verify": args.verify,
        "zarr_format": args.zarr_format,
        **{
            name: getattr(args, name) for name in _STORE_ONLY[1:] if getattr(args, name) is not None
        },
    }
    if demo:
        from .datasets import demo as demo_data

        if input_options:
            print("error: --input-storage-option needs an INPUT URL", file=sys.stderr)
            return 2
        if not force and _is_our_demo_store(out, storage_options):
            force = True
            print(f"Replacing the demo store an earlier run wrote to {out}.")
        data = demo_data()
        parts: dict[str, Any] = {
            "gene_expression": data.X,
            "var": data.var,
            "embeddings": {"X_umap_2d": data.umap_2d, "X_umap_3d": data.umap_3d},
        }
        dataset_id = args.dataset_id or DEMO_ID
        dataset_name = args.dataset_name or "dask-cellucid demo (synthetic)"
        what = f"the built-in demo ({data.X.shape[0]:,} cells x {data.X.shape[1]:,} genes)"
    else:
        from .adapters import read_annotations

        # obs, var and obsm only: X is read out of core from the path by the export
        parts = read_annotations(args.input, input_options)
        if not parts["embeddings"]:
            print(
                f"error: {args.input} has no numeric obsm array (e.g. obsm['X_umap']); the store "
                "needs at least one embedding for the viewer to place the cells.",
                file=sys.stderr,
            )
            return 2
        parts["gene_expression"] = args.input
        dataset_id = args.dataset_id or _store_dataset_id(out)
        dataset_name = args.dataset_name or dataset_id
        what = f"X of {args.input}"
    keys = ", ".join(parts["embeddings"])
    print(
        f"Writing a Cellucid-ready store from {what}: embeddings {keys}; dataset id "
        f"{dataset_id!r}.",
        flush=True,
    )
    result = prepare(
        out,
        format=args.format,
        dataset_id=dataset_id,
        dataset_name=dataset_name,
        force=force,
        input_storage_options=input_options,
        **parts,
        **common,
    )
    print(result)
    if args.verify:
        print("Verified: every gene matches INPUT exactly.")
    where = out if "://" in out else os.path.relpath(out)
    print(
        f"Open it with cellucid 0.9.5 or later: pip install cellucid && cellucid serve {where}\n"
        f"Check it any time with: dask-cellucid validate {where}"
    )
    return 0


def _how_to_view(layout: str, where: str) -> str:
    """Which cellucid release opens a folder of this layout, and the command to serve it."""
    if layout == "key":
        viewer, which = "cellucid==0.0.9", "the cellucid release tagged v0.9.0"
    else:
        viewer, which = "cellucid==0.9.2", "cellucid 0.9.2"
    return (
        f"To view it ({layout} layout, read by {which}), in an environment of its own:\n"
        f"  pip install '{viewer}' && cellucid serve {where}\n"
        "(cellucid 0.9.5 and later, a plain `pip install cellucid`, reads neither folder "
        "layout: for it, write a Cellucid-ready store with --format zarr.)\n"
        f"Check it any time with: dask-cellucid validate {where}"
    )


def _cmd_validate(args: argparse.Namespace) -> int:
    from .api import validate
    from .storage import Target

    storage_options = _storage_options(args.storage_option) or None
    Target.from_url(args.folder, storage_options).check_access(write=False)
    report = validate(args.folder, storage_options=storage_options)
    print(_for_shell(str(report)))
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
        input_storage_options=_storage_options(args.input_storage_option, "--input-storage-option")
        or None,
    )
    print(_for_shell(str(report)))
    return 0 if report.ok else 1


# -- the library's messages, for the shell ---------------------------------------------------
# The library's messages name Python arguments (force=True, X_umap_2d=...). On the
# command line they must name its flags: every message printed goes through
# _for_shell. Specific phrases first, then argument=value, then bare argument names.
_PHRASES = [
    (r"leave out X_umap_\*", "pass --embedding none"),
    (r"\bX_umap_\*|\bX_umap_[123]d\b=?", "the embedding (--embedding)"),
    (r"\bor pass missing_genes='warn' to skip them", "or leave them out of --genes"),
    (
        r"\bstorage_options were given for the local path (\S+); drop them",
        r"--storage-option was given for the local path \1; drop it",
    ),
    (
        r"\binput_storage_options were given for (.+?); drop them",
        r"--input-storage-option was given for \1; drop it",
    ),
    (r"(?<![\w/.-])out_dir(?![\w/-]|\.\w)", "OUT"),
]
_FLAGS = {
    "input_storage_options": "--input-storage-option",
    "storage_options": "--storage-option",
    "var_gene_id_column": "--gene-id-column",
    "gene_identifiers": "--genes",
    "max_memory": "--max-memory",
    "num_workers": "--workers",
    "make_unique": "--make-unique",
    "use_raw": "--use-raw",
    "var_quantization": "--quantization",
    "force": "--force",
    "layer": "--layer",
    "compression": "--compression",
    "scheduler": "--scheduler",
    "codec": "--codec",
    "layout": "--layout",
    "rounding": "--rounding",
    "tolerance": "--tolerance",
}
# names that are also plain words are translated only when written name=...
_ALWAYS = (
    "input_storage_options",
    "storage_options",
    "var_gene_id_column",
    "gene_identifiers",
    "max_memory",
    "num_workers",
    "make_unique",
    "use_raw",
    "var_quantization",
)
# not inside a path or a longer name: a folder called out_dir stays out_dir
_ALONE = r"(?<![\w/.-])"
_OPTION_DICT = re.compile(_ALONE + r"(input_storage_options|storage_options)=\{([^{}]*)\}")
_ASSIGNED = re.compile(
    _ALONE + r"(" + "|".join(_FLAGS) + r")=(True\b|False\b|None\b|'[^']*'|-?\d+(?:\.\d+)?|)"
)
_BARE = re.compile(_ALONE + r"(" + "|".join(_ALWAYS) + r")(?![\w/-]|\.\w)")


def _dict_to_flags(m: re.Match[str]) -> str:
    flag = _FLAGS[m.group(1)]
    pairs = re.findall(r"'(\w+)':\s*([^,]+)", m.group(2))
    return " ".join(f"{flag} {k}={v.strip().strip(chr(39))}" for k, v in pairs) or flag


def _assigned_to_flag(m: re.Match[str]) -> str:
    flag, value = _FLAGS[m.group(1)], m.group(2)
    if value in ("True", ""):
        return flag
    if value in ("False", "None") and flag in ("--force", "--use-raw", "--make-unique", "--layer"):
        return f"no {flag}"
    return f"{flag} {'none' if value == 'None' else value.strip(chr(39))}"


def _for_shell(text: str) -> str:
    """A library message with the command's flags in place of Python arguments."""
    for pattern, repl in _PHRASES:
        text = re.sub(pattern, repl, text)
    text = _OPTION_DICT.sub(_dict_to_flags, text)
    text = _ASSIGNED.sub(_assigned_to_flag, text)
    text = _BARE.sub(lambda m: _FLAGS[m.group(1)], text)
    # "drop --use-raw (--use-raw)": the message named both already
    text = re.sub(r"(--[\w-]+(?: [^\s()]+)?) \(\1\)", r"\1", text)
    return re.sub(r"without (--[\w-]+) \(no \1\)", r"without \1", text)


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

    def fail(err: BaseException, shown: BaseException | None = None) -> int:
        if args.verbose:
            traceback.print_exception(err)
        print(f"error: {_for_shell(str(shown or err))}", file=sys.stderr)
        return 2

    try:
        return int(args.func(args))
    except (CellucidExportError, FileNotFoundError, IsADirectoryError, PermissionError) as err:
        return fail(err)
    except KeyboardInterrupt:
        print("interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    except Exception as err:
        # a storage library's error that no probe caught (credentials, endpoint, package)
        from .storage.target import access_error

        translated = access_error(err)
        if translated is None:
            raise
        return fail(err, translated)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
