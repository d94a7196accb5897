"""Everything of the store but the chunks of ``X``: checked up front, written in memory.

``obs``, ``var``, ``obsm``, ``uns``, the empty groups and the metadata of
``X`` are small: they are checked and converted before anything runs
(:func:`frame_columns`, :func:`cell_matrix`, :func:`cellucid_uns`), and at the
end built with zarr-python and anndata's element writers into a store in
memory, laid out as cellucid 0.9.5 lays them out; :func:`metadata_files` hands
back its files and the consolidated metadata, which the writer writes through
its :class:`~dask_cellucid.storage.Target` (the consolidated metadata last).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from dask_cellucid.errors import InputValueError, InvalidOptionError, UnsupportedInputError
from dask_cellucid.genes import make_unique

from .spec import (
    DEFLATE_LEVEL,
    FLOAT32_MAX,
    SLICED_CHUNK,
    WHOLE_CHUNK,
    consolidated_name,
    indices_dtype,
    indptr_dtype,
    row_chunks,
    strip_chunks,
    vector_chunk,
)

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,179}$")
_RESERVED = {"CON", "PRN", "AUX", "NUL"} | {f"{p}{i}" for p in ("COM", "LPT") for i in range(1, 10)}


# -- checks and conversions, before anything runs ------------------------------------------
def check_dataset_id(value: Any) -> str:
    """``uns['cellucid']['id']``: 1-180 of ``[A-Za-z0-9._-]``, not ending in ``.``."""
    if not isinstance(value, str) or not _ID.match(value) or value.endswith("."):
        msg = (
            "dataset_id must be 1 to 180 ASCII letters, digits, '.', '_' or '-', starting with "
            f"a letter or digit and not ending with '.'; got {value!r}."
        )
        raise InvalidOptionError(msg)
    if value.split(".")[0].upper() in _RESERVED:
        msg = f"dataset_id {value!r} is a reserved Windows file name; choose another."
        raise InvalidOptionError(msg)
    return value


# text the viewer draws verbatim: cellucid 0.9.5 refuses what has no glyph of its own
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_INVISIBLE = re.compile("[\u200b\u2060\ufeff]")
_EDGE_SPACE = "\u0020\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_EDGE = re.compile(f"^[{_EDGE_SPACE}]|[{_EDGE_SPACE}]$")


def _text_defect(text: str) -> str | None:
    for pattern in (_CONTROL, _SURROGATE, _INVISIBLE):
        found = pattern.search(text)
        if found is not None:
            return f"contains U+{ord(found.group()):04X}"
    edge = _EDGE.search(text)
    if edge is not None:
        where = "starts" if edge.start() == 0 else "ends"
        return f"{where} with U+{ord(edge.group()):04X}"
    return None


def check_text(value: Any, what: str, *, allow_empty: bool = False) -> str:
    """Text the viewer shows exactly as stored (cellucid 0.9.5's rule): a string, non-empty
    unless ``allow_empty``, without control, zero-width or unpaired surrogate characters
    and without whitespace at either end."""
    if not isinstance(value, str):
        msg = f"{what} must be a string; got {value!r}."
        raise InvalidOptionError(msg)
    if not value:
        if allow_empty:
            return value
        msg = f"{what} must be a non-empty string."
        raise InvalidOptionError(msg)
    defect = _text_defect(value)
    if defect is not None:
        msg = (
            f"{what} is displayed verbatim, so it must not carry characters that have no "
            f"glyph: {value!r} {defect}. Pass the exact text you want shown."
        )
        raise InvalidOptionError(msg)
    return value


def check_url(value: Any, what: str) -> str:
    """An absolute http(s) address (cellucid 0.9.5's rule)."""
    from urllib.parse import urlparse

    text = check_text(value, what)
    parsed = urlparse(text)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        msg = f"{what} must be an absolute http(s) address; got {text!r}."
        raise InvalidOptionError(msg)
    return text


def _linked(
    text: Any, url: Any, text_label: str, url_label: str, key: str
) -> dict[str, str] | None:
    """``{key: text, "url": url}``, or None when neither is given; a url needs its text."""
    if text is None:
        if url is not None:
            msg = f"{text_label} is required whenever {url_label} is supplied."
            raise InvalidOptionError(msg)
        return None
    linked = {key: check_text(text, text_label)}
    if url is not None:
        linked["url"] = check_url(url, url_label)
    return linked


#: The identity arguments of ``prepare`` beyond the id and name, as cellucid 0.9.5 names them.
IDENTITY_ARGUMENTS = (
    "dataset_description",
    "citation_text",
    "citation_url",
    "source_name",
    "source_url",
)


def identity_arguments(record: Mapping[str, Any]) -> dict[str, Any]:
    """The ``prepare`` arguments an AnnData's ``uns['cellucid']`` fills (as cellucid 0.9.5
    reads it): ``dataset_id``, ``dataset_name``, ``dataset_description``, the citation's
    and the source's text and address."""
    out: dict[str, Any] = {}
    for key, argument in (
        ("id", "dataset_id"),
        ("name", "dataset_name"),
        ("description", "dataset_description"),
    ):
        if record.get(key) is not None:
            out[argument] = record[key]
    for key, text_key, text_argument, url_argument in (
        ("citation", "text", "citation_text", "citation_url"),
        ("source", "name", "source_name", "source_url"),
    ):
        linked = record.get(key)
        if isinstance(linked, Mapping):
            if linked.get(text_key) is not None:
                out[text_argument] = linked[text_key]
            if linked.get("url") is not None:
                out[url_argument] = linked["url"]
    return out


def cellucid_uns(
    dataset_id: str,
    dataset_name: str,
    *,
    dataset_description: str | None = None,
    citation_text: str | None = None,
    citation_url: str | None = None,
    source_name: str | None = None,
    source_url: str | None = None,
) -> dict[str, Any]:
    """``uns``: the title and ``cellucid`` (schema, id, name; description, citation, source),
    checked as cellucid 0.9.5 checks them (a url needs its text; an address is absolute
    http(s); the description may be empty)."""
    record: dict[str, Any] = {
        "schema": 1,
        "id": check_dataset_id(dataset_id),
        "name": check_text(dataset_name, "dataset_name"),
    }
    if dataset_description is not None:
        record["description"] = check_text(
            dataset_description, "dataset_description", allow_empty=True
        )
    citation = _linked(citation_text, citation_url, "citation_text", "citation_url", "text")
    source = _linked(source_name, source_url, "source_name", "source_url", "name")
    if citation is not None:
        record["citation"] = citation
    if source is not None:
        record["source"] = source
    return {"title": record["name"], "cellucid": record}


def row_names(frame: pd.DataFrame | None, n: int, what: str) -> list[str] | None:
    """The frame's own row names; None for none or pandas' default ``0 .. n-1`` index."""
    if frame is None:
        return None
    index = frame.index
    if isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1:
        return None
    names = index.tolist()
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name:
            msg = f"{what} row names must be non-empty text; row {i:,} is {name!r}."
            raise UnsupportedInputError(msg)
    return names


def _is_missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and value != value)


def _string_column(values: np.ndarray, label: str) -> Any:
    """Text: categorical when a value repeats or is missing (anndata's rule), else strings."""
    missing = np.asarray([_is_missing(v) for v in values], dtype=bool)
    present = values[~missing]
    if present.size and not all(isinstance(v, str) for v in present):
        msg = f"{label} mixes text with other values; convert it first, e.g. .astype(str)."
        raise UnsupportedInputError(msg)
    distinct = set(present.tolist())
    if missing.any() or len(distinct) < len(present):
        labels = values.copy()
        labels[missing] = None
        return pd.Categorical(labels, categories=sorted(distinct), ordered=False)
    return np.asarray(values, dtype=object)


def frame_column(series: pd.Series, label: str) -> Any:
    """How one column is stored, by anndata's encodings (as cellucid 0.9.5 decides)."""
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return pd.Categorical(series)
    if isinstance(dtype, pd.BooleanDtype | pd.core.arrays.integer.IntegerDtype):
        if not series.isna().any():
            return series.to_numpy(dtype=dtype.numpy_dtype)
        return series.array
    if isinstance(dtype, pd.core.arrays.floating.FloatingDtype):
        series = series.astype(dtype.numpy_dtype)
        dtype = series.dtype
    if isinstance(dtype, pd.StringDtype) or (isinstance(dtype, np.dtype) and dtype.kind == "O"):
        return _string_column(series.to_numpy(dtype=object), label)
    if isinstance(dtype, np.dtype) and dtype.kind in "biu":
        return series.to_numpy()
    if isinstance(dtype, np.dtype) and dtype.kind == "f":
        values = series.to_numpy()
        if np.isinf(values).any():
            msg = f"{label} holds infinite values; replace them with NaN."
            raise InputValueError(msg)
        return values
    msg = f"{label} is a {dtype} column, which has no AnnData encoding here; convert it first."
    raise UnsupportedInputError(msg)


def frame_columns(frame: pd.DataFrame | None, what: str) -> dict[str, Any]:
    if frame is None:
        return {}
    if "_index" in frame.columns:
        msg = f"{what} column '_index' is reserved by AnnData; rename it."
        raise InvalidOptionError(msg)
    return {str(c): frame_column(frame[c], f"{what} column {c!r}") for c in frame.columns}


def cell_matrix(values: Any, label: str) -> np.ndarray:
    """A per-cell array as C-contiguous float32, 2-D, finite within float32."""
    if sp.issparse(values):
        values = values.toarray()
    array = np.asarray(values)
    if array.dtype.kind not in "biuf":
        msg = f"{label} must hold real numbers, got dtype {array.dtype}."
        raise UnsupportedInputError(msg)
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    if array.ndim != 2 or array.shape[1] < 1:
        msg = f"{label} must be a 2-D array or a vector, got shape {array.shape}."
        raise UnsupportedInputError(msg)
    if array.size and array.dtype.kind == "f":
        low, high = float(array.min()), float(array.max())
        if not (np.isfinite(low) and np.isfinite(high) and max(-low, high) <= FLOAT32_MAX):
            msg = f"{label} must hold finite numbers within the float32 range."
            raise InputValueError(msg)
    return np.ascontiguousarray(array, dtype=np.float32)


@dataclass
class Elements:
    """The store's small elements, checked and converted."""

    obs_index: np.ndarray
    obs: dict[str, Any]
    var_index: np.ndarray
    var: dict[str, Any]
    obsm: dict[str, np.ndarray]
    uns: dict[str, Any]
    obsp: dict[str, sp.csr_matrix] = field(default_factory=dict)


def obs_elements(obs: pd.DataFrame | None, n_cells: int) -> tuple[np.ndarray, dict[str, Any]]:
    """The cell names (made unique as anndata does) and the stored obs columns."""
    if obs is not None and len(obs) != n_cells:
        msg = f"obs has {len(obs):,} rows, and the matrix {n_cells:,} cells."
        raise InvalidOptionError(msg)
    names = row_names(obs, n_cells, "obs") or [str(i) for i in range(n_cells)]
    return np.asarray(make_unique(names), dtype=object), frame_columns(obs, "obs")


# -- the metadata, built in memory ----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class XLayout:
    """What ``X``'s metadata says: sparse (with ``indptr``) or dense, and its type."""

    shape: tuple[int, int]
    dtype: str
    sparse: bool
    indptr: np.ndarray | None = None
    chunk: int = SLICED_CHUNK


def _encoding(kind: str, version: str) -> dict[str, str]:
    return {"encoding-type": kind, "encoding-version": version}


def _reproducible_gzip(level: int) -> Any:
    """zarr v3's ``gzip`` codec writing a zero time in every header (as ``gzip -n``).

    numcodecs' ``GZip`` stamps the time of writing into each chunk; cellucid
    0.9.5 writes a zero time, and so does this (the metadata names the
    standard ``gzip`` codec either way).
    """
    import gzip
    from functools import cached_property

    from numcodecs.compat import ensure_contiguous_ndarray
    from numcodecs.gzip import GZip
    from zarr.codecs import GzipCodec

    class _GZip(GZip):  # type: ignore[misc]
        def encode(self, buf: Any) -> bytes:
            return gzip.compress(ensure_contiguous_ndarray(buf), compresslevel=self.level, mtime=0)

    class _GzipCodec(GzipCodec):
        @cached_property
        def _gzip_codec(self) -> GZip:
            return _GZip(self.level)

    return _GzipCodec(level=level)


class _Builder:
    """Groups and arrays in a zarr group, with cellucid 0.9.5's chunks and codecs.

    zarr v2: zlib 6, after numcodecs' ``Shuffle`` where an array shuffles;
    zarr v3: ``gzip`` 6, or ``blosc`` (zlib 6, byte shuffle) where it shuffles.
    """

    def __init__(self, root: Any, zarr_format: int = 2) -> None:
        self.root = root
        self.zarr_format = zarr_format
        if zarr_format == 2:
            from numcodecs import Zlib

            self.codec: Any = Zlib(level=DEFLATE_LEVEL)
        else:
            self.codec = _reproducible_gzip(DEFLATE_LEVEL)

    def codecs(self, itemsize: int, *, shuffle: bool = True) -> dict[str, Any]:
        if itemsize <= 1 or not shuffle:
            return {"filters": None, "compressors": self.codec}
        if self.zarr_format == 3:
            from zarr.codecs import BloscCodec

            blosc = BloscCodec(
                typesize=itemsize,
                cname="zlib",
                clevel=DEFLATE_LEVEL,
                shuffle="shuffle",
                blocksize=0,
            )
            return {"filters": None, "compressors": blosc}
        from numcodecs import Shuffle

        return {"filters": [Shuffle(elementsize=itemsize)], "compressors": self.codec}

    def group(self, parent: Any, key: str, attrs: Mapping[str, Any]) -> Any:
        g = parent.create_group(key)
        g.attrs.update(dict(attrs))
        return g

    def dict_group(self, parent: Any, key: str) -> Any:
        return self.group(parent, key, _encoding("dict", "0.1.0"))

    def array(
        self,
        parent: Any,
        key: str,
        values: np.ndarray | None,
        chunks: tuple[int, ...],
        *,
        dtype: Any = None,
        shape: tuple[int, ...] | None = None,
        encoded: bool = True,
        shuffle: bool = True,
    ) -> None:
        """An array; ``values`` None declares it only (its chunks are written elsewhere)."""
        dtype = np.dtype(values.dtype if dtype is None else dtype)
        shape = values.shape if values is not None else shape
        a = parent.create_array(
            key,
            shape=shape,
            dtype=dtype,
            chunks=chunks,
            fill_value=np.zeros((), dtype=dtype).item(),
            **self.codecs(dtype.itemsize, shuffle=shuffle),
        )
        if values is not None and values.size:
            a[...] = np.ascontiguousarray(values, dtype=dtype)
        if encoded:
            a.attrs.update(_encoding("array", "0.2.0"))

    def element(self, parent: Any, key: str, value: Any, chunks: tuple[int, ...]) -> None:
        if isinstance(value, pd.arrays.IntegerArray | pd.arrays.BooleanArray):
            kind = (
                "nullable-integer"
                if isinstance(value, pd.arrays.IntegerArray)
                else "nullable-boolean"
            )
            g = self.group(parent, key, _encoding(kind, "0.1.0"))
            self.array(
                g, "values", value.to_numpy(dtype=value.dtype.numpy_dtype, na_value=0), chunks
            )
            self.array(g, "mask", np.asarray(value.isna()), chunks)
            return
        if self.zarr_format == 3:
            # through the array just made (anndata would reopen it and lose the zero time)
            from zarr.core.dtype import VariableLengthUTF8

            strings = np.asarray(value, dtype=object)
            a = parent.create_array(
                key,
                shape=strings.shape,
                dtype=VariableLengthUTF8(),
                chunks=chunks,
                compressors=self.codec,
            )
            a.attrs.update(_encoding("string-array", "0.2.0"))
            if len(strings):
                a[...] = strings
            return
        from anndata.io import write_elem

        write_elem(parent, key, value, dataset_kwargs={"chunks": chunks, "compressor": self.codec})

    def scalar(self, parent: Any, key: str, value: Any) -> None:
        if isinstance(value, str):
            from numcodecs import VLenUTF8
            from zarr.core.dtype import VariableLengthUTF8

            a = parent.create_array(
                key,
                shape=(),
                dtype=VariableLengthUTF8(),
                fill_value="",
                filters=[VLenUTF8()] if self.zarr_format == 2 else None,
                compressors=self.codec,
            )
            encoding = _encoding("string", "0.2.0")
        else:
            data = np.asarray(value)
            a = parent.create_array(
                key,
                shape=(),
                dtype=data.dtype,
                fill_value=np.zeros((), dtype=data.dtype).item(),
                **self.codecs(data.dtype.itemsize),
            )
            encoding = _encoding("numeric-scalar", "0.2.0")
        a[...] = np.asarray(value)
        a.attrs.update(encoding)

    def uns(self, parent: Any, key: str, value: Any) -> None:
        if isinstance(value, Mapping):
            g = self.dict_group(parent, key)
            for name, item in value.items():
                self.uns(g, name, item)
        elif isinstance(value, np.ndarray):
            chunks = (vector_chunk(len(value), WHOLE_CHUNK),)
            if value.dtype.kind == "O":
                self.element(parent, key, value, chunks)
            else:
                self.array(parent, key, value, chunks)
        else:
            self.scalar(parent, key, value)

    def column(self, parent: Any, key: str, value: Any) -> None:
        chunks = (vector_chunk(len(value), WHOLE_CHUNK),)
        if isinstance(value, pd.Categorical):
            g = self.group(
                parent, key, {**_encoding("categorical", "0.2.0"), "ordered": bool(value.ordered)}
            )
            self.array(g, "codes", np.asarray(value.codes), chunks)
            cats = value.categories.to_numpy()
            cat_chunks = (vector_chunk(len(cats), WHOLE_CHUNK),)
            if cats.dtype.kind == "O":
                self.element(g, "categories", cats.astype(object), cat_chunks)
            else:
                self.array(g, "categories", cats, cat_chunks)
        elif isinstance(value, np.ndarray) and value.dtype.kind != "O":
            self.array(parent, key, value, chunks)
        else:
            self.element(parent, key, value, chunks)

    def dataframe(
        self, parent: Any, key: str, index: np.ndarray, columns: Mapping[str, Any]
    ) -> None:
        g = self.group(
            parent,
            key,
            {**_encoding("dataframe", "0.2.0"), "_index": "_index", "column-order": list(columns)},
        )
        self.element(g, "_index", index, (vector_chunk(len(index), WHOLE_CHUNK),))
        for name, value in columns.items():
            self.column(g, name, value)

    def sparse_group(
        self, parent: Any, key: str, kind: str, shape: tuple[int, int], indptr: np.ndarray, nnz: int
    ) -> Any:
        g = self.group(parent, key, {**_encoding(kind, "0.1.0"), "shape": [int(s) for s in shape]})
        self.array(
            g,
            "indptr",
            indptr,
            (vector_chunk(len(indptr), WHOLE_CHUNK),),
            dtype=indptr_dtype(nnz),
            encoded=False,
        )
        return g


def metadata_files(
    elements: Elements, x: XLayout, zarr_format: int = 2
) -> tuple[dict[str, bytes], bytes]:
    """Every file of the store but ``X``'s chunks, and the consolidated metadata.

    Built with zarr-python in memory, in cellucid 0.9.5's order: ``uns``,
    ``var``, ``X``'s group and pointers, ``obs``, ``obsm``, ``obsp``, ``varm``,
    ``varp``, ``layers``, then ``X``'s values (declared only: the block
    tasks write their chunks). The consolidated metadata is ``.zmetadata``
    (zarr v2) or the root ``zarr.json`` (v3), handed back apart from the rest.
    """
    import zarr

    files: dict[str, Any] = {}
    store = zarr.storage.MemoryStore(files)
    root = zarr.open_group(store, mode="w", zarr_format=zarr_format)
    b = _Builder(root, zarr_format)
    root.attrs.update(_encoding("anndata", "0.1.0"))
    b.uns(root, "uns", elements.uns)
    b.dataframe(root, "var", elements.var_index, elements.var)
    n_cells, n_genes = x.shape
    group = None
    if x.sparse:
        assert x.indptr is not None
        nnz = int(x.indptr[-1])
        group = b.sparse_group(root, "X", "csc_matrix", x.shape, x.indptr, nnz)
    b.dataframe(root, "obs", elements.obs_index, elements.obs)
    obsm = b.dict_group(root, "obsm")
    for key, values in elements.obsm.items():
        b.array(obsm, key, values, row_chunks(*values.shape))
    obsp = b.dict_group(root, "obsp")
    for key, graph in elements.obsp.items():
        g = b.sparse_group(obsp, key, "csr_matrix", graph.shape, graph.indptr, graph.nnz)
        chunks = (vector_chunk(graph.nnz, WHOLE_CHUNK),)
        b.array(g, "data", graph.data, chunks, encoded=False)
        b.array(
            g, "indices", graph.indices, chunks, dtype=indices_dtype(graph.shape[1]), encoded=False
        )
    for key in ("varm", "varp", "layers"):
        b.dict_group(root, key)
    if x.sparse:
        nnz = int(x.indptr[-1])  # type: ignore[index]
        chunks = (vector_chunk(nnz, x.chunk),)
        b.array(
            group, "data", None, chunks, dtype=x.dtype, shape=(nnz,), encoded=False, shuffle=False
        )
        b.array(
            group,
            "indices",
            None,
            chunks,
            dtype=indices_dtype(n_cells),
            shape=(nnz,),
            encoded=False,
        )
    else:
        b.array(
            root,
            "X",
            None,
            strip_chunks(n_cells, n_genes),
            dtype=x.dtype,
            shape=x.shape,
            shuffle=False,
        )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata")
        zarr.consolidate_metadata(store, zarr_format=zarr_format)
    out = {key: value.to_bytes() for key, value in files.items()}
    consolidated = out.pop(consolidated_name(zarr_format))
    return out, consolidated
