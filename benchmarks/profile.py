"""Profile one dask-cellucid export: where does the CPU time go?

Runs the export on one thread (``scheduler="synchronous"``) under
:mod:`cProfile` with a CPU-time clock, so that a busy, shared machine does not
distort the split; or, with ``--pyinstrument``, on the threaded scheduler under
pyinstrument (wall clock, every thread; ``pip install -e .[bench]``).

Usage::

    python -m benchmarks.profile --size M                  # top functions by own CPU time
    python -m benchmarks.profile --size M --pyinstrument   # call tree, wall clock
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import tempfile
import time
import warnings
from pathlib import Path

from . import data


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Profile one dask-cellucid export.")
    ap.add_argument("--size", choices=sorted(data.SIZES), default="M")
    ap.add_argument("--bits", type=int, default=8, help="8, 16 or 0 (float32)")
    ap.add_argument("--level", type=int, default=6, help="gzip level, 0 for none")
    ap.add_argument("--codec", default="auto")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--pyinstrument", action="store_true")
    args = ap.parse_args(argv)

    import dask_cellucid
    from dask_cellucid.errors import ExportWarning

    warnings.simplefilter("ignore", ExportWarning)  # the data has all-zero and NaN genes on purpose
    X = data.load(data.SIZES[args.size], verbose=True)
    names = data.gene_names(X.shape[1])
    tmp = Path(tempfile.mkdtemp(prefix="dask-cellucid-profile-"))
    kw = {
        "var_quantization": args.bits or None,
        "compression": args.level or None,
        "codec": args.codec,
        "progress": False,
    }
    try:
        # warm-up: imports and first-call costs stay out of the profile
        dask_cellucid.prepare(X[:, :3], var=names[:3], out_dir=tmp / "warm", **kw)
        if args.pyinstrument:
            from pyinstrument import Profiler

            prof = Profiler(interval=0.001)
            prof.start()
            dask_cellucid.prepare(X, var=names, out_dir=tmp / "out", scheduler="threads", **kw)
            prof.stop()
            print(prof.output_text(unicode=False, color=False))
            return
        pr = cProfile.Profile(time.process_time)
        t0 = time.perf_counter()
        pr.enable()
        dask_cellucid.prepare(X, var=names, out_dir=tmp / "out", scheduler="synchronous", **kw)
        pr.disable()
        print(f"wall {time.perf_counter() - t0:.2f} s (one thread)")
        stats = pstats.Stats(pr)
        stats.sort_stats("tottime").print_stats(args.top)
        stats.sort_stats("cumtime").print_stats(args.top)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
