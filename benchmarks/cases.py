"""One benchmark case, run alone in its own process so its peak RSS is its own.

``python -m benchmarks.cases '<json>'`` runs the case the JSON describes and
prints one JSON line with what it measured. The parent (:mod:`benchmarks.run`)
reads the peak RSS from ``os.wait4`` and checks the output folder afterwards.

Kinds of case:

``reference``
    cellucid 0.9.2's ``prepare``, run twice on the same embedding and empty
    ``obs``: without and with ``gene_expression``. The gene part is the
    difference. NaN values are set to 0 beforehand (it refuses them).
``ours``
    ``dask_cellucid.prepare`` with the given settings and codec.
``codec``
    The codec limit: the same quantized bytes (encoded beforehand, untimed),
    only compressed (raw deflate, same codec and level), on the same number of
    threads. What no exporter can beat without a better encoder.
``encoder``
    The sparse-aware encoder's limit: the same genes' stored codes (from
    ``kernels.encode_block(...).stored()`` then ``kernels.without_fill``, as
    the writer does; untimed), only encoded by
    ``sparse_gzip.gzip_members_csc``, one call per block of genes on a pool of
    the same number of threads. Timed three ways: on the genes ``codec="auto"``
    gives it (``sparse_gzip.sparse_pays``), on every gene (``codec="sparse"``),
    and, in the same process, libdeflate at the same level over the dense
    payloads of those same genes (raw deflate per gene, as the codec limit).
    Its members include CRC-32 and framing, the raw deflate calls do not.
``io``
    The I/O floor: the same payload bytes dask-cellucid writes (float32, or
    its gzip members; prepared beforehand, untimed) written as plain files on
    the same number of threads, then one ``os.sync`` as the exporter does.
``load``
    Only load the input and import both writers: the RSS floor every case has.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from . import data

# Materialise at most this many payload bytes at once in the codec/io cases.
_STAGE_BYTES = 256 * 2**20


def _spec(cfg: dict[str, Any]) -> data.Spec:
    return data.Spec(**cfg["spec"])


def _embedding(n: int) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, 2)).astype(np.float32)


def run_reference(cfg: dict[str, Any]) -> dict[str, Any]:
    import pandas as pd
    from cellucid.prepare_data import prepare as ref_prepare

    if cfg.get("no_fsync"):
        os.fsync = lambda fd: None  # informative variant: what its per-file fsync costs

    X = data.load(_spec(cfg))
    X.data[~np.isfinite(X.data)] = 0.0  # the reference refuses NaN; in place, no copy
    n, g = X.shape
    out = Path(cfg["out"])
    emb = _embedding(n)
    obs = pd.DataFrame(index=pd.Index([f"c{i}" for i in range(n)]))
    var = pd.DataFrame(index=pd.Index(data.gene_names(g)))
    common = {
        "latent_space": emb,
        "obs": obs,
        "X_umap_2d": emb,
        "var_quantization": cfg["bits"],
        "compression": cfg["level"],
        "obs_categorical_dtype": "uint8",
        "dataset_name": "bench",
        "dataset_id": "bench",
        "centroid_outlier_quantile": None,
        "created_at": "2026-01-01T00:00:00Z",
    }
    # Warm-up on a tiny matrix: imports and first-call costs out of the timing.
    tiny = sp.random(50, 3, density=0.5, format="csr", dtype=np.float32, random_state=0)
    ref_prepare(
        **{**common, "latent_space": emb[:50], "obs": obs.iloc[:50], "X_umap_2d": emb[:50]},
        var=var.iloc[:3],
        gene_expression=tiny,
        out_dir=out / "warm",
    )
    shutil.rmtree(out / "warm")

    t0 = time.perf_counter()
    ref_prepare(**common, out_dir=out / "nogenes")
    t1 = time.perf_counter()
    ref_prepare(**common, var=var, gene_expression=X, out_dir=out / "genes")
    t2 = time.perf_counter()
    shutil.rmtree(out / "nogenes")
    return {
        "seconds": (t2 - t1) - (t1 - t0),
        "seconds_total": t2 - t1,
        "seconds_nongene": t1 - t0,
        "out": str(out / "genes"),
    }


def run_ours(cfg: dict[str, Any]) -> dict[str, Any]:
    import dask_cellucid

    X = data.load(_spec(cfg))
    if cfg.get("csc_input"):
        X = sp.csc_matrix(X)  # untimed: shows the export without the transposition
    out = Path(cfg["out"])
    kw = {
        "var_quantization": cfg["bits"],
        "compression": cfg["level"],
        "codec": cfg["codec"],
        "scheduler": "threads",
        "num_workers": cfg["threads"],
        "progress": False,
    }
    tiny = sp.random(50, 3, density=0.5, format="csr", dtype=np.float32, random_state=0)
    dask_cellucid.prepare(gene_expression=tiny, var=["a", "b", "c"], out_dir=out / "warm", **kw)
    shutil.rmtree(out / "warm")

    t0 = time.perf_counter()
    dask_cellucid.prepare(
        gene_expression=X, var=data.gene_names(X.shape[1]), out_dir=out / "genes", **kw
    )
    return {"seconds": time.perf_counter() - t0, "out": str(out / "genes")}


def _stages(X: sp.spmatrix, itemsize: int) -> list[slice]:
    """Gene ranges whose dense payloads fit ``_STAGE_BYTES``."""
    per = max(1, _STAGE_BYTES // (X.shape[0] * itemsize))
    return [slice(s, min(s + per, X.shape[1])) for s in range(0, X.shape[1], per)]


def run_codec_limit(cfg: dict[str, Any]) -> dict[str, Any]:
    from dask_cellucid import codecs
    from dask_cellucid.formats.folder import kernels

    name = codecs.resolve_codec(cfg["codec"])
    deflate = codecs._ENCODERS[name][1]
    level = cfg["level"]
    X = sp.csc_matrix(data.load(_spec(cfg)))
    seconds, nbytes = 0.0, 0
    with ThreadPoolExecutor(cfg["threads"]) as pool:
        list(pool.map(lambda _: deflate(memoryview(b"warm" * 100), level), range(8)))
        for sl in _stages(X, cfg["bits"] // 8 if cfg["bits"] else 4):
            codes = kernels.encode_block(X[:, sl], cfg["bits"], "nearest").values
            rows = [memoryview(r) for r in codes]
            t0 = time.perf_counter()
            sizes = list(pool.map(lambda v: len(deflate(v, level)), rows))
            seconds += time.perf_counter() - t0
            nbytes += sum(sizes)
    return {"seconds": seconds, "deflate_bytes": nbytes}


def _block_ranges(sl: slice, per: int) -> list[slice]:
    return [slice(s, min(s + per, sl.stop)) for s in range(sl.start, sl.stop, per)]


def run_encoder_limit(cfg: dict[str, Any]) -> dict[str, Any]:
    """Time the sparse-aware encoder against libdeflate on the same genes (see the module doc)."""
    from dask_cellucid import codecs
    from dask_cellucid.formats.folder import kernels, sparse_gzip

    deflate = codecs._ENCODERS["libdeflate"][1]
    bits, level, threads = cfg["bits"], cfg["level"], cfg["threads"]
    itemsize = bits // 8 if bits else 4
    X = sp.csc_matrix(data.load(_spec(cfg)))
    n_cells, n_genes = X.shape
    # blocks as the export makes them on M: a multiple of the thread count, ~10 per thread
    per_block = max(1, -(-n_genes // (10 * threads)))
    t = dict.fromkeys(("sparse", "sparse_all", "generic", "generic_rest"), 0.0)
    b = dict.fromkeys(("sparse", "sparse_all", "generic", "generic_rest"), 0)
    n_chosen = n_values = n_values_chosen = 0

    def timed(key: str, fn: Any, items: list[Any]) -> None:
        t0 = time.perf_counter()
        sizes = list(pool.map(fn, items))
        t[key] += time.perf_counter() - t0
        b[key] += sum(sizes)

    def sparse_bytes(s: kernels.StoredCodes) -> int:
        made = sparse_gzip.gzip_members_csc(s.codes, s.indices, s.indptr, n_cells, s.fill)
        return sum(map(len, made))

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda _: deflate(memoryview(b"warm" * 100), level), range(8)))
        warm = sp.random(500, 4, density=0.1, format="csc", dtype=np.float32, random_state=0)
        ws = kernels.without_fill(kernels.encode_block(warm, bits, "nearest").stored())
        sparse_gzip.gzip_members_csc(ws.codes, ws.indices, ws.indptr, 500, ws.fill)
        for stage in _stages(X, itemsize):
            every, chosen, rows, rest = [], [], [], []
            for bl in _block_ranges(stage, per_block):
                enc = kernels.encode_block(X[:, bl], bits, "nearest")
                s = kernels.without_fill(enc.stored())
                every.append(s)
                ptr = s.indptr
                pick = [
                    k
                    for k in range(len(ptr) - 1)
                    if sparse_gzip.sparse_pays(int(ptr[k + 1] - ptr[k]), n_cells, itemsize)
                ]
                n_values += int(ptr[-1])
                if pick:
                    spans = [(int(ptr[k]), int(ptr[k + 1])) for k in pick]
                    n_values_chosen += sum(e - a for a, e in spans)
                    chosen.append(
                        kernels.StoredCodes(
                            np.concatenate([s.codes[a:e] for a, e in spans]),
                            np.concatenate([s.indices[a:e] for a, e in spans]),
                            np.concatenate([[0], np.cumsum([e - a for a, e in spans])]),
                            s.fill[pick],
                        )
                    )
                n_chosen += len(pick)
                keep = set(pick)
                for k, row in enumerate(enc.values):
                    (rows if k in keep else rest).append(memoryview(row))
            timed("sparse", sparse_bytes, chosen)
            timed("generic", lambda v: len(deflate(v, level)), rows)
            timed("generic_rest", lambda v: len(deflate(v, level)), rest)
            timed("sparse_all", sparse_bytes, every)
    # raw deflate has no gzip header and trailer (18 bytes a member): add them, to compare sizes
    b["generic"] += 18 * n_chosen
    b["generic_rest"] += 18 * (n_genes - n_chosen)
    return {
        "seconds": t["sparse"],
        "seconds_sparse_all": t["sparse_all"],
        "seconds_generic_same": t["generic"],
        "seconds_generic_rest": t["generic_rest"],
        "seconds_auto_limit": t["sparse"] + t["generic_rest"],
        "seconds_generic_all": t["generic"] + t["generic_rest"],
        "bytes_sparse": b["sparse"],
        "bytes_sparse_all": b["sparse_all"],
        "bytes_generic_same": b["generic"],
        "bytes_generic_rest": b["generic_rest"],
        "n_genes_sparse": n_chosen,
        "n_genes": n_genes,
        "n_values_sparse": n_values_chosen,
        "n_values": n_values,
        "genes_per_block": per_block,
    }


def run_io_floor(cfg: dict[str, Any]) -> dict[str, Any]:
    """Write the payloads dask-cellucid writes (float32, or its gzip members) as plain files."""
    from dask_cellucid import codecs
    from dask_cellucid.formats.folder import kernels

    X = sp.csc_matrix(data.load(_spec(cfg)))
    out = Path(cfg["out"]) / "var"
    out.mkdir(parents=True)
    bits, level = cfg["bits"], cfg["level"]
    codec = codecs.resolve_codec(cfg["codec"] if cfg["codec"] != "-" else "auto")
    ext = {None: "f32", 8: "u8", 16: "u16"}[bits] + (".gz" if level else "")

    def write(item: tuple[int, Any]) -> None:
        with open(out / f"{item[0]}.values.{ext}", "wb") as f:
            f.write(item[1])

    seconds = 0.0
    with ThreadPoolExecutor(cfg["threads"]) as pool:
        for sl in _stages(X, bits // 8 if bits else 4):
            rows = kernels.encode_block(X[:, sl], bits, "nearest").values
            payloads = [codecs.gzip_member(r, level, codec) for r in rows] if level else list(rows)
            t0 = time.perf_counter()
            list(pool.map(write, zip(range(sl.start, sl.stop), payloads, strict=True)))
            seconds += time.perf_counter() - t0
        t0 = time.perf_counter()
        os.sync()
        sync = time.perf_counter() - t0
    return {"seconds": seconds + sync, "seconds_sync": sync}


def run_load(cfg: dict[str, Any]) -> dict[str, Any]:
    import cellucid.prepare_data  # noqa: F401

    import dask_cellucid  # noqa: F401

    t0 = time.perf_counter()
    data.load(_spec(cfg))
    return {"seconds": time.perf_counter() - t0}


RUNNERS = {
    "reference": run_reference,
    "ours": run_ours,
    "codec": run_codec_limit,
    "encoder": run_encoder_limit,
    "io": run_io_floor,
    "load": run_load,
}


def peak_rss() -> int:
    """This process's peak resident set size in bytes (``VmHWM``), or -1 if unknown.

    Read here rather than from the parent's ``wait4``: on Linux a child's
    ``ru_maxrss`` also counts the parent's memory at the time of the fork.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (
        1 if sys.platform == "darwin" else 1024
    )


def main(argv: list[str] | None = None) -> None:
    cfg = json.loads((argv or sys.argv[1:])[0])
    result = RUNNERS[cfg["kind"]](cfg)
    result["peak_rss"] = peak_rss()
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
