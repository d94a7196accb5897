"""Opening AnnData's on-disk formats (.h5ad, .zarr) by path or URL, and checking them.

Everything here works from a :class:`MatrixRef`: a small picklable record (a
path or URL, the format, and the element's path inside the file). Tasks carry
that record, never an open h5py or zarr object, and each task opens what it
reads, so the same graph runs on threads, processes or a distributed cluster
whose workers see the same filesystem.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from dask_cellucid.errors import (
    CellucidExportError,
    InputShapeError,
    InvalidOptionError,
    UnsupportedInputError,
)

from ._orientation import SAMPLE, check_names, decoded

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

Format = Literal["h5ad", "zarr"]
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
SPARSE = ("csr_matrix", "csc_matrix")


@dataclass(frozen=True)
class MatrixRef:
    """Where one matrix of an AnnData file lives: cheap to pickle to any worker."""

    url: str
    fmt: Format
    elem: str = "X"
    storage_options: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @contextlib.contextmanager
    def open(self) -> Iterator[Any]:
        """The matrix element (h5py/zarr group or array), open for the ``with`` block.

        A read inside the block that HDF5 cannot complete (a damaged or
        truncated file) becomes an :class:`UnsupportedInputError` naming the
        file and the element, not h5py's bare ``OSError``.
        """
        with open_root(self.url, self.fmt, self.storage_options) as root:
            try:
                yield get(root, self.elem)
            except OSError as err:
                if self.fmt != "h5ad" or isinstance(err, FileNotFoundError):
                    raise
                msg = (
                    f"reading {self.elem} of {self.url} failed: {err}. The file is damaged or "
                    "truncated (a copy or download that did not finish?). Check it with "
                    "anndata.read_h5ad, and copy or write it again."
                )
                raise UnsupportedInputError(msg) from err


def _is_url(path: str) -> bool:
    return "://" in path


def detect_format(path: str) -> Format:
    """``"h5ad"`` or ``"zarr"`` from the name, or (local files) from the bytes."""
    low = path.rstrip("/").lower()
    if low.endswith((".h5ad", ".h5", ".hdf5")):
        fmt: Format | None = "h5ad"
    elif low.endswith(".zarr"):
        fmt = "zarr"
    else:
        fmt = None
    if _is_url(path):
        if fmt is None:
            msg = (
                f"cannot tell the format of {path!r}: AnnData inputs are .h5ad files or .zarr "
                "stores. Give the URL its .h5ad or .zarr ending."
            )
            raise UnsupportedInputError(msg)
        return fmt
    if not os.path.exists(path):
        msg = f"no such file or folder: {path!r}. Check the path to the .h5ad or .zarr input."
        raise FileNotFoundError(msg)
    if os.path.isdir(path):
        markers = (".zgroup", "zarr.json")
        if not any(os.path.exists(os.path.join(path, m)) for m in markers):
            msg = (
                f"{path!r} is a folder but not a .zarr store (no .zgroup or zarr.json in it). "
                "Give an AnnData .h5ad file or a .zarr store written by anndata."
            )
            raise UnsupportedInputError(msg)
        return "zarr"
    with open(path, "rb") as f:
        head = f.read(8)
    if head != _HDF5_MAGIC:
        msg = (
            f"{path!r} is not an AnnData file: it is not HDF5 (an .h5ad) and not a .zarr "
            "store. Convert it with anndata first (e.g. scanpy.read_10x_h5 or "
            "anndata.io.read_csv, then .write_h5ad)."
        )
        raise UnsupportedInputError(msg)
    return "h5ad"


INPUT_OPTION = "input_storage_options"


def check_input_access(url: str, storage_options: Mapping[str, Any] | None) -> None:
    """For a URL input: one quick probe of its storage, before anything else reads it."""
    if _is_url(url):
        from dask_cellucid.storage import Target

        Target.from_url(url, storage_options).check_access(write=False, option=INPUT_OPTION)


@contextlib.contextmanager
def open_root(
    url: str, fmt: Format, storage_options: Mapping[str, Any] | None = None
) -> Iterator[Any]:
    """The root group of an AnnData file, read-only, as h5py or zarr.

    A storage library's error (no credentials, unreachable endpoint, access
    denied) becomes a short :class:`~dask_cellucid.errors.StorageAccessError`.
    """
    try:
        with _open_root(url, fmt, storage_options) as root:
            yield root
    except CellucidExportError:
        raise
    except Exception as err:
        from dask_cellucid.storage.target import access_error

        translated = (
            access_error(err, _display(url), option=INPUT_OPTION, reading=True)
            if _is_url(url)
            else None
        )
        if translated is None:
            raise
        raise translated from err


def _display(url: str) -> str:
    from dask_cellucid.storage import Target

    return Target(url).display_url


@contextlib.contextmanager
def _open_root(
    url: str, fmt: Format, storage_options: Mapping[str, Any] | None = None
) -> Iterator[Any]:
    opts = dict(storage_options or {})
    try:
        if fmt == "h5ad":
            import h5py

            if _is_url(url):
                from dask_cellucid.storage import Target

                target = Target.from_url(url, opts)
                with target.fs.open(target.root, "rb") as fobj, h5py.File(fobj, "r") as root:
                    yield root
            else:
                with _h5_open(url) as root:
                    yield root
        else:
            import zarr

            kw = {"storage_options": opts} if opts else {}
            yield zarr.open_group(url, mode="r", **kw)
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError) as err:
        if isinstance(err, OSError) and "truncated" in str(err).lower():
            msg = (
                f"{url!r} is truncated (the file is shorter than its header says): it was "
                "probably copied or written only in part. Copy or write it again."
            )
            raise UnsupportedInputError(msg) from err
        if fmt == "h5ad" and isinstance(err, OSError) and "signature" in str(err).lower():
            msg = f"{url!r} is not an HDF5 file, so not an .h5ad. Give an AnnData .h5ad or .zarr."
            raise UnsupportedInputError(msg) from err
        raise


def _h5_open(path: str) -> Any:
    """Open read-only; without HDF5's lock if the file's lock is held or set otherwise.

    A backed AnnData open in this process with other locking flags, or a writer
    elsewhere holding the lock, would otherwise block every task that reads it.
    """
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as err:
        if "lock" not in str(err).lower():
            raise
        return h5py.File(path, "r", locking=False)


def get(root: Any, path: str) -> Any:
    """``root[path]`` one level at a time (zarr and h5py differ on nested keys)."""
    node = root
    for part in path.split("/"):
        node = node[part]
    return node


def has(root: Any, path: str) -> bool:
    node = root
    for part in path.split("/"):
        if not is_group(node) or part not in node:
            return False
        node = node[part]
    return True


def attr(obj: Any, key: str, default: Any = None) -> Any:
    value = obj.attrs.get(key, default)
    if isinstance(value, bytes):
        value = value.decode()
    return value


def is_group(obj: Any) -> bool:
    """Whether an h5py/zarr node is a group (sparse matrices and data frames are groups)."""
    return hasattr(obj, "keys") and not hasattr(obj, "dtype")


def encoding_of(elem: Any) -> str:
    """The anndata encoding of a matrix element: ``csr_matrix``, ``csc_matrix`` or ``array``."""
    enc = attr(elem, "encoding-type")
    if enc:
        return str(enc)
    legacy = attr(elem, "h5sparse_format")  # files written before anndata 0.7
    if legacy:
        return f"{legacy}_matrix"
    return "array" if not is_group(elem) else "unknown"


def matrix_shape(elem: Any) -> tuple[int, int]:
    if is_group(elem):
        shape = attr(elem, "shape")
        if shape is None:
            shape = attr(elem, "h5sparse_shape")
        return int(shape[0]), int(shape[1])
    if len(elem.shape) != 2:
        msg = f"the matrix has shape {tuple(elem.shape)}; a cells x genes matrix is 2-D."
        raise UnsupportedInputError(msg)
    return int(elem.shape[0]), int(elem.shape[1])


def _frame_length(group: Any) -> int | None:
    """Rows of an anndata data frame element, without reading its columns."""
    if not is_group(group):
        return int(group.shape[0]) if hasattr(group, "shape") else None
    index = attr(group, "_index", "_index")
    if index in group:
        return int(group[index].shape[0])
    return None


def index_sample(group: Any, n: int = SAMPLE) -> list[str]:
    """The first ``n`` names of an anndata data frame's index, without reading the rest."""
    if not is_group(group):
        return []  # a frame stored before anndata 0.7: not checked
    index = attr(group, "_index", "_index")
    if index not in group or is_group(group[index]):
        return []
    return decoded(group[index][:n])


def read_frame(group: Any) -> pd.DataFrame:
    from anndata.io import read_elem

    df = read_elem(group)
    if not isinstance(df, pd.DataFrame):
        df = pd.DataFrame(index=pd.Index(np.asarray(df).astype(str)))
    return df


@dataclass(frozen=True)
class Inspected:
    """What was learned about an AnnData file before anything is planned."""

    ref: MatrixRef
    encoding: str
    shape: tuple[int, int]
    dtype: np.dtype[Any]
    nnz: int | None
    var: pd.DataFrame


def element_path(layer: str | None, *, use_raw: bool) -> str:
    if layer is not None and use_raw:
        msg = (
            "layer= and use_raw= both pick the matrix to export; give one of them "
            "(layers live beside X, not inside raw)."
        )
        raise InvalidOptionError(msg)
    if use_raw:
        return "raw/X"
    if layer is not None:
        return f"layers/{layer}"
    return "X"


def inspect_file(
    url: str,
    fmt: Format,
    *,
    layer: str | None = None,
    use_raw: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> Inspected:
    """Open the file, check that it is an AnnData and holds the asked-for matrix.

    Reads only metadata, ``var`` and (for sparse matrices) the end of
    ``indptr``; raises before anything is written.
    """
    elem_path = element_path(layer, use_raw=use_raw)
    with open_root(url, fmt, storage_options) as root:
        root_enc = attr(root, "encoding-type")
        if root_enc not in (None, "anndata") or "obs" not in root or "var" not in root:
            found = sorted(root.keys())[:10]
            msg = (
                f"{url!r} is an {'HDF5 file' if fmt == 'h5ad' else 'zarr store'} but not an "
                f"AnnData (it has {found}, no obs/var). Give a file written by anndata "
                "(adata.write_h5ad or adata.write_zarr)."
            )
            raise UnsupportedInputError(msg)
        if use_raw and not has(root, "raw/X"):
            msg = (
                f"{url!r} has no raw (adata.raw is None), so use_raw cannot be used. Drop "
                "use_raw (--use-raw) to export X, or pick a layer."
            )
            raise InvalidOptionError(msg)
        if layer is not None:
            layers = sorted(root["layers"].keys()) if has(root, "layers") else []
            if layer not in layers:
                msg = (
                    f"{url!r} has no layer {layer!r}. Its layers: "
                    f"{layers if layers else 'none'}. Pick one of those, or drop layer= "
                    "(--layer) to export X."
                )
                raise InvalidOptionError(msg)
        if not has(root, elem_path):
            msg = (
                f"{url!r} has no X matrix (it was saved with X=None). Pick a layer with "
                "layer= (--layer)."
            )
            raise UnsupportedInputError(msg)
        elem = get(root, elem_path)
        enc = encoding_of(elem)
        if enc not in (*SPARSE, "array"):
            msg = (
                f"{elem_path} in {url!r} is stored as {enc!r}; only CSR, CSC and dense "
                "matrices can be exported. Convert it (e.g. adata.X = adata.X.tocsr()) and "
                "write the file again."
            )
            raise UnsupportedInputError(msg)
        shape = matrix_shape(elem)
        var_group = get(root, "raw/var" if use_raw else "var")
        n_obs, n_var = _frame_length(root["obs"]), _frame_length(var_group)
        _check_orientation(url, elem_path, shape, n_obs, n_var)
        var = read_frame(var_group)
        check_names(
            index_sample(root["obs"]),
            list(var.index[:SAMPLE]),
            f"{elem_path} of {url!r}",
            "load it, transpose it (adata = adata.T) and write it again.",
        )
        nnz: int | None = None
        if enc in SPARSE:
            dtype = np.dtype(elem["data"].dtype)
            n_data = int(elem["data"].shape[0])
            n_major = shape[0] if enc == "csr_matrix" else shape[1]
            indptr = elem["indptr"]
            if int(indptr.shape[0]) != n_major + 1:
                msg = (
                    f"{elem_path} in {url!r} is damaged: its indptr has {indptr.shape[0]} "
                    f"entries for {n_major} {'rows' if enc == 'csr_matrix' else 'columns'}. "
                    "Write the file again."
                )
                raise UnsupportedInputError(msg)
            nnz = int(indptr[n_major]) if n_major else 0
            if nnz > n_data or int(elem["indices"].shape[0]) < nnz:
                msg = (
                    f"{elem_path} in {url!r} is truncated or damaged: indptr promises {nnz} "
                    f"stored values but data holds {n_data}. Write or copy the file again."
                )
                raise UnsupportedInputError(msg)
            if fmt == "zarr":
                _check_zarr_chunks(url, elem_path, [elem["indptr"], elem["indices"]])
        else:
            dtype = np.dtype(elem.dtype)
    ref = MatrixRef(url, fmt, elem_path, dict(storage_options or {}))
    return Inspected(ref, enc, shape, dtype, nnz, var)


def _check_orientation(
    url: str, elem_path: str, shape: tuple[int, int], n_obs: int | None, n_var: int | None
) -> None:
    if n_obs is None or n_var is None or (shape[0], shape[1]) == (n_obs, n_var):
        return
    if (shape[1], shape[0]) == (n_obs, n_var):
        msg = (
            f"{elem_path} in {url!r} has shape {shape}, but the file has {n_obs} cells (obs) "
            f"and {n_var} genes (var): the matrix is stored transposed (genes x cells). "
            "Load it, transpose it (adata.X = adata.X.T) and write it again, so that rows "
            "are cells."
        )
        raise InputShapeError(msg)
    msg = (
        f"{elem_path} in {url!r} has shape {shape}, but the file has {n_obs} cells (obs) and "
        f"{n_var} genes ({'raw/var' if elem_path == 'raw/X' else 'var'}); the file is "
        "inconsistent. Write it again with anndata."
    )
    raise InputShapeError(msg)


def _check_zarr_chunks(url: str, elem_path: str, arrays: list[Any]) -> None:
    """A zarr store copied in part reads missing chunks as zeros: refuse it instead."""
    for arr in arrays:
        try:
            have, want = int(arr.nchunks_initialized), int(arr.nchunks)
        except (AttributeError, TypeError):  # pragma: no cover - older zarr
            return
        if arr.shape[0] and have < want:
            msg = (
                f"{elem_path} in {url!r} is incomplete: {want - have} of {want} chunks of "
                f"{arr.basename if hasattr(arr, 'basename') else 'an array'} are missing "
                "(a partial copy?). Copy or write the store again."
            )
            raise UnsupportedInputError(msg)
