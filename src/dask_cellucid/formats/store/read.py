"""Reading genes as the browser does: the consolidated metadata, ``X/indptr``, covering chunks.

Nothing else of the store is read: no listing, no other document. Zarr v2
(``.zmetadata``) and v3 (the root ``zarr.json``) stores, as folders or as one
``.zarr.zip`` file.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np

from dask_cellucid.errors import GeneIdError, InputValueError

from . import kernels
from .archive import store_target
from .spec import CONSOLIDATED, V3_METADATA, chunk_name

if TYPE_CHECKING:
    import os
    from collections.abc import Mapping, Sequence

    from dask_cellucid.storage import Target


def consolidated_metadata(target: Target) -> tuple[int, dict[str, Any]] | None:
    """``(zarr format, {node: document})`` from the consolidated metadata, or None.

    Zarr v2: ``.zmetadata``'s ``metadata`` (keys such as ``X/.zattrs``);
    zarr v3: the root ``zarr.json``'s ``consolidated_metadata`` (keys are node
    paths, the root's own document under ``""``). A v3 root without
    consolidated metadata counts as none.
    """
    raw = target.read(CONSOLIDATED)
    if raw is not None:
        return 2, json.loads(raw)["metadata"]
    raw = target.read(V3_METADATA)
    if raw is None:
        return None
    root = json.loads(raw)
    inline = root.get("consolidated_metadata")
    if not isinstance(inline, dict) or not isinstance(inline.get("metadata"), dict):
        return None
    nodes = dict(inline["metadata"])
    nodes[""] = {k: v for k, v in root.items() if k != "consolidated_metadata"}
    return 3, nodes


def node_attrs(meta: Mapping[str, Any], zarr_format: int, node: str) -> dict[str, Any]:
    """A node's attributes from the consolidated metadata (``{}`` when it has none)."""
    if zarr_format == 2:
        return dict(meta.get(f"{node}/.zattrs" if node else ".zattrs") or {})
    return dict((meta.get(node) or {}).get("attributes") or {})


def array_info(meta: Mapping[str, Any], zarr_format: int, name: str) -> dict[str, Any] | None:
    """An array's ``shape``, ``chunks``, ``dtype`` and ``codecs`` (names, in order), the
    same for both formats; None when ``name`` is no array."""
    if zarr_format == 2:
        doc = meta.get(f"{name}/.zarray")
        if doc is None:
            return None
        codecs = [f["id"] for f in doc.get("filters") or []]
        if doc.get("compressor"):
            codecs.append(doc["compressor"]["id"])
        return {
            "shape": list(doc["shape"]),
            "chunks": list(doc["chunks"]),
            "dtype": doc["dtype"],
            "codecs": codecs,
            "doc": doc,
        }
    doc = meta.get(name)
    if not isinstance(doc, dict) or doc.get("node_type") != "array":
        return None
    dtype = doc["data_type"]
    return {
        "shape": list(doc["shape"]),
        "chunks": list(doc["chunk_grid"]["configuration"]["chunk_shape"]),
        "dtype": "object" if dtype == "string" else np.dtype(dtype).newbyteorder("<").str,
        "codecs": [c["name"] for c in doc.get("codecs") or []],
        "doc": doc,
    }


class StoreReader:
    """A store opened from its consolidated metadata and ``X/indptr``.

    ``path_or_url`` is a store folder or a ``.zarr.zip`` file, zarr v2 or v3.
    """

    def __init__(
        self,
        path_or_url: str | os.PathLike[str] | Target,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.target = store_target(path_or_url, storage_options)
        found = consolidated_metadata(self.target)
        if found is None:
            msg = (
                f"{self.target.display_url} has no consolidated metadata ({CONSOLIDATED} or "
                f"{V3_METADATA} holding it): not a finished store."
            )
            raise InputValueError(msg)
        self.zarr_format, self.meta = found
        x_attrs = node_attrs(self.meta, self.zarr_format, "X")
        self.sparse = x_attrs["encoding-type"] == "csc_matrix"
        if self.sparse:
            self.shape = tuple(x_attrs["shape"])
            self.indptr = self._whole("X/indptr").astype(np.int64)
        else:
            self.shape = tuple(self._array_meta("X")["shape"])

    def attrs(self, node: str) -> dict[str, Any]:
        """A group's or array's attributes."""
        return node_attrs(self.meta, self.zarr_format, node)

    def _array_meta(self, name: str) -> dict[str, Any]:
        info = array_info(self.meta, self.zarr_format, name)
        if info is None:
            msg = f"{self.target.display_url}: {name} is not an array of the store."
            raise InputValueError(msg)
        return info

    def _chunk(self, name: str, index: tuple[int, ...]) -> np.ndarray:
        meta = self._array_meta(name)
        dtype = np.dtype(meta["dtype"]).newbyteorder("=").str
        shuffle = any(c in ("shuffle", "blosc") for c in meta["codecs"])
        chunks = tuple(meta["chunks"])
        payload = self.target.read(f"{name}/{chunk_name(index, self.zarr_format)}")
        if payload is None:
            return np.zeros(chunks, dtype=dtype)
        return kernels.decode_chunk(
            payload, dtype, chunks, shuffle=shuffle, zarr_format=self.zarr_format
        )

    def _whole(self, name: str) -> np.ndarray:
        meta = self._array_meta(name)
        n, c = meta["shape"][0], meta["chunks"][0]
        parts = [self._chunk(name, (i,)) for i in range(-(-n // c))]
        return np.concatenate(parts)[:n] if parts else np.zeros(0, np.dtype(meta["dtype"]))

    def _range(self, name: str, p0: int, p1: int) -> np.ndarray:
        """Positions ``[p0, p1)`` of a 1-D array, from the chunks that cover them only."""
        meta = self._array_meta(name)
        c = meta["chunks"][0]
        if p1 <= p0:
            return np.zeros(0, dtype=np.dtype(meta["dtype"]))
        first, last = p0 // c, (p1 - 1) // c
        parts = np.concatenate([self._chunk(name, (i,)) for i in range(first, last + 1)])
        return parts[p0 - first * c : p1 - first * c]

    def array(self, name: str) -> np.ndarray:
        """A small array of any dtype (strings too) read whole, with the codecs its metadata
        names: ``var``'s index, a scalar of ``uns``."""
        meta = self._array_meta(name)
        shape = tuple(meta["shape"])
        chunks = tuple(meta["chunks"]) or (1,)
        compressor, filters = self._codecs(meta)
        if len(shape) > 1:
            msg = f"{name} is {len(shape)}-D; only 0-D and 1-D arrays are read whole."
            raise InputValueError(msg)
        n = shape[0] if shape else 1
        parts = []
        for i in range(-(-n // chunks[0])):
            raw = self.target.read(f"{name}/{chunk_name((i,) if shape else (), self.zarr_format)}")
            if raw is None:  # all fill value: zarr-python writes no such chunk
                dtype = np.dtype(meta["dtype"])
                parts.append(np.full(chunks[0], "" if dtype.kind == "O" else 0, dtype=dtype))
                continue
            buf: Any = compressor.decode(raw) if compressor is not None else raw
            for f in reversed(filters):
                buf = f.decode(buf)
            if isinstance(buf, np.ndarray) and buf.dtype == object:
                parts.append(buf)
            else:
                dtype = np.dtype(meta["dtype"])
                parts.append(np.frombuffer(bytes(buf), dtype=dtype))
        out = np.concatenate(parts)[:n] if parts else np.zeros(0)
        return out.reshape(shape) if shape == () else out

    def _codecs(self, meta: Mapping[str, Any]) -> tuple[Any, list[Any]]:
        """numcodecs' decoders of an array: its compressor (or None) and its filters."""
        from numcodecs import Blosc, GZip, VLenUTF8, get_codec

        doc = meta["doc"]
        if self.zarr_format == 2:
            compressor = get_codec(doc["compressor"]) if doc.get("compressor") else None
            return compressor, [get_codec(f) for f in doc.get("filters") or []]
        compressor = None
        filters: list[Any] = []
        for codec in doc.get("codecs") or []:
            name, config = codec["name"], codec.get("configuration") or {}
            if name == "gzip":
                compressor = GZip(level=config.get("level", 6))
            elif name == "blosc":
                compressor = Blosc(cname=config.get("cname", "zlib"))
            elif name == "vlen-utf8":
                filters.append(VLenUTF8())
            elif name == "bytes" and config.get("endian", "little") != "little":
                msg = f"{self.target.display_url}: big-endian arrays are not read here."
                raise InputValueError(msg)
            elif name != "bytes":
                msg = f"{self.target.display_url}: the {name!r} codec is not read here."
                raise InputValueError(msg)
        return compressor, filters

    def gene_names(self) -> list[str]:
        """``var``'s index: the genes' names, in the order of ``X``'s columns."""
        index = self.attrs("var").get("_index", "_index")
        return [str(v) for v in self.array(f"var/{index}")]

    def read_gene(self, j: int) -> np.ndarray:
        """Gene ``j`` (its position in ``X``) as a dense vector of ``n_cells`` values."""
        n_cells = self.shape[0]
        if self.sparse:
            p0, p1 = int(self.indptr[j]), int(self.indptr[j + 1])
            data = self._range("X/data", p0, p1)
            rows = self._range("X/indices", p0, p1)
            out = np.zeros(n_cells, dtype=data.dtype)
            out[rows] = data
            return out
        meta = self._array_meta("X")
        rows, cols = meta["chunks"]
        strip, at = divmod(j, cols)
        parts = [self._chunk("X", (r, strip)) for r in range(-(-n_cells // rows))]
        return np.concatenate(parts)[:n_cells, at]


def read_gene(
    path_or_url: str | os.PathLike[str] | Target,
    j: int,
    storage_options: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """Gene ``j`` of a store, read as the browser reads it (see :class:`StoreReader`)."""
    return StoreReader(path_or_url, storage_options).read_gene(j)


def read_named_genes(
    path_or_url: str | os.PathLike[str] | Target,
    genes: Sequence[str | int] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> dict[str | int, np.ndarray]:
    """``{gene: values}`` for genes named as in ``var``'s index, or by position in ``X``.

    ``None`` reads every gene, keyed by name. Only the consolidated metadata,
    ``var``'s index (for names), ``X/indptr`` and the chunks covering each gene
    are read.
    """
    reader = StoreReader(path_or_url, storage_options)
    names: list[str] | None = None
    if genes is None or any(not isinstance(g, int | np.integer) for g in genes):
        names = reader.gene_names()
    if genes is None:
        assert names is not None
        return {g: reader.read_gene(j) for j, g in enumerate(names)}
    at: dict[str, int] = {}
    if names is not None:
        for j, g in enumerate(names):
            at.setdefault(g, j)
    n_genes = reader.shape[1]
    where: dict[str | int, int] = {}
    absent: list[Any] = []
    for g in genes:
        if isinstance(g, int | np.integer):
            if not 0 <= int(g) < n_genes:
                absent.append(g)
            where[int(g)] = int(g)
        elif str(g) in at:
            where[str(g)] = at[str(g)]
        else:
            absent.append(g)
    if absent:
        msg = (
            f"{len(absent)} gene(s) are not in the store {reader.target.display_url}: "
            f"{absent[:10]}. Genes are named as in its var index, or given by position."
        )
        raise GeneIdError(msg)
    return {g: reader.read_gene(j) for g, j in where.items()}


def read_genes(reader: StoreReader, genes: Sequence[int]) -> np.ndarray:
    """Several genes as an ``(n_cells, len(genes))`` array."""
    return (
        np.stack([reader.read_gene(j) for j in genes], axis=1)
        if genes
        else np.zeros((reader.shape[0], 0))
    )
