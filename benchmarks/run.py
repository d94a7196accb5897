"""Run the benchmark suite and write its Markdown report.

One run, one machine, side by side, for each setting (8-bit + gzip 6, 16-bit +
gzip 6, float32 uncompressed):

- the reference writer, cellucid 0.9.2 ``prepare``, gene part isolated (a run
  without genes is subtracted from a run with them), and the same with its
  per-file ``fsync`` switched off (informative: the part of its time that is
  disk flushes);
- dask-cellucid with the default settings (``codec="auto"``: the sparse-aware
  encoder for the sparser genes, libdeflate for the rest) and with each
  other available codec (the generic encoder alone);
- the codec limit: the same quantized bytes only compressed, same codec, level
  and number of threads;
- the encoder limit: the sparse-aware encoder alone on the same genes' stored
  codes, against libdeflate on the same genes' dense payloads;
- the I/O floor (float32): the same bytes written as plain files.

Every case runs alone in a fresh process (:mod:`benchmarks.cases`), so its
peak RSS is its own; repeats are interleaved (case A, B, C, A, B, C, ...) so
that a noisy neighbour slows every case alike, and the median is reported.

This module is the command line and the loop over cases; the plan of cases is
:mod:`benchmarks.suite`, the check of each output folder
:mod:`benchmarks.check`, the machine survey :mod:`benchmarks.machine` and the
Markdown page :mod:`benchmarks.report`.

Usage::

    python -m benchmarks.run --size M --out docs/benchmarks.md
    python -m benchmarks.run --size S --repeats 1 --no-scaling       # quick look
    python -m benchmarks.run --size L --repeats 1 --no-scaling       # opt-in, long
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from . import data
from .check import check_output
from .machine import file_creation_us, machine_info
from .report import render
from .suite import (
    REPO,
    SETTINGS,
    Case,
    available_codecs,
    library_on_path,
    main_cases,
    scaling_cases,
)


# -- running one case ---------------------------------------------------------
def run_case(case: Case, out: Path, log: Path) -> dict[str, Any]:
    """Run ``case`` in a fresh process writing under ``out``; add its peak RSS and CPU time."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    # Start every case with nothing left to flush: the last case's writes (up to
    # 763 MiB of float32 files, or their deletion) would otherwise be flushed
    # by this case's first fsyncs, charging one writer for another's I/O.
    os.sync()
    cmd = [sys.executable, "-m", "benchmarks.cases", json.dumps(case.config(out))]
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'src'}"}
    with (
        open(log, "ab") as err,
        subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=err) as proc,
    ):
        assert proc.stdout is not None
        stdout = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        msg = f"case {case.label} ({case.setting}, {case.spec.name}) failed; see {log}"
        raise RuntimeError(msg)
    line = next(x for x in stdout.decode().splitlines() if x.startswith("RESULT "))
    result: dict[str, Any] = json.loads(line[len("RESULT ") :])
    result["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    return result


# Outputs are kept until the end of the run (or until the disk runs short):
# deleting thousands of files just before the next case creates its own can make
# file creation itself slower (ext4 without a journal skips recently freed
# inodes one by one; measured here: 85 to 290 us per file after heavy churn),
# charging one writer for another's clean-up.
_MIN_FREE = 8 << 30


def _remove_outputs(dirs: list[Path]) -> None:
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)
    dirs.clear()


def _free_space_for_next_case(workdir: Path, kept: list[Path]) -> None:
    if kept and shutil.disk_usage(workdir).free < _MIN_FREE:
        print(f"less than {_MIN_FREE >> 30} GiB free: removing earlier outputs", flush=True)
        _remove_outputs(kept)
        os.sync()


# -- the command line ------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description="Run the dask-cellucid benchmarks.")
    ap.add_argument("--size", choices=sorted(data.SIZES), default="M")
    ap.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="interleaved repeats per case (default 3; 1 for L)",
    )
    ap.add_argument(
        "--settings",
        default=",".join(SETTINGS),
        help=f"comma-separated subset of {','.join(SETTINGS)}",
    )
    ap.add_argument(
        "--codecs",
        default=None,
        help="codecs besides the default 'auto' (default: every available one)",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-scaling", action="store_true", help="skip the scaling points")
    ap.add_argument("--no-reference", action="store_true", help="skip the reference writer")
    ap.add_argument(
        "--no-scaling-reference",
        action="store_true",
        help="scaling points: time dask-cellucid and the codec limit only",
    )
    ap.add_argument(
        "--no-fsync-variant",
        action="store_true",
        help="skip the informative 'reference, fsync off' runs",
    )
    ap.add_argument(
        "--no-csc-variant",
        action="store_true",
        help="skip the informative 'CSC input' runs of dask-cellucid",
    )
    ap.add_argument(
        "--check-genes",
        type=int,
        default=None,
        help="decode-check an evenly spaced sample of this many genes (default: all; 2000 for L)",
    )
    ap.add_argument("--out", type=Path, default=None, help="write the Markdown report here")
    ap.add_argument("--json", type=Path, default=None, help="write the raw results here")
    ap.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where outputs are written (default: a temporary folder)",
    )
    return ap


def _check(case: Case, out: Path, csc: dict[str, sp.csc_matrix], max_genes: int | None) -> None:
    """Check ``case``'s output folder against its input (``csc`` caches one input by name)."""
    if case.spec.name not in csc:
        csc.clear()
        csc[case.spec.name] = sp.csc_matrix(data.load(case.spec))
    m = csc[case.spec.name]
    if case.kind == "reference":  # its input had NaN set to 0
        m = m.copy()
        m.data[~np.isfinite(m.data)] = 0.0
    case.output = check_output(out, m, max_genes=max_genes)


def _raw_results(cases: list[Case], info: dict[str, Any], stats: dict[str, Any]) -> dict[str, Any]:
    return {
        "info": info,
        "stats": stats,
        "cases": [
            {
                "key": c.key,
                "label": c.label,
                "setting": c.setting,
                "spec": dataclasses.asdict(c.spec),
                "codec": c.codec,
                "threads": c.threads,
                "runs": c.runs,
                "output": c.output,
            }
            for c in cases
        ],
    }


def main(argv: list[str] | None = None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    args.repeats = args.repeats or (1 if args.size == "L" else 3)
    if args.check_genes is None and args.size == "L":
        args.check_genes = 2000
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    unknown = set(settings) - set(SETTINGS)
    if unknown:
        ap.error(f"unknown settings {sorted(unknown)}; choose from {list(SETTINGS)}")
    library_on_path()
    have = available_codecs()
    extra = [c.strip() for c in args.codecs.split(",")] if args.codecs is not None else have
    # "auto" is the sparse-aware encoder plus a generic codec (auto_codec()) for the
    # denser genes; naming that generic codec, or "sparse", adds its own export row
    codecs = ["auto"] + [c for c in extra if c and c != "auto" and (c in have or c == "sparse")]
    spec = data.SIZES[args.size]

    t_start = time.perf_counter()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="dask-cellucid-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "cases.log"
    info = machine_info(workdir)
    kept = [workdir / "probe-start"]
    info["create_us_start"] = file_creation_us(kept[0])
    info["when"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M")

    print(f"generating/loading data ({spec.name}) ...", flush=True)
    X = data.load(spec, verbose=True)
    stats = data.describe(X)
    cases = main_cases(
        spec,
        settings,
        codecs,
        args.threads,
        not args.no_reference,
        not args.no_fsync_variant,
        not args.no_csc_variant,
    )
    if not args.no_scaling:
        for _, s in data.scaling_specs(spec):
            data.load(s, verbose=True)
        cases += scaling_cases(
            spec, args.threads, not (args.no_reference or args.no_scaling_reference)
        )
    csc = {spec.name: sp.csc_matrix(X)}
    del X

    for rep in range(args.repeats):
        # Scaling points show a trend: one run each is enough.
        for case in [c for c in cases if rep == 0 or c.group == "main"]:
            case_dir = workdir / f"case-{len(kept):04d}"
            _free_space_for_next_case(workdir, kept)
            kept.append(case_dir)
            result = run_case(case, case_dir, log)
            case.runs.append(result)
            out = result.get("out")
            if out and case.output is None:
                _check(case, Path(out), csc, args.check_genes)
            print(
                f"[{rep + 1}/{args.repeats}] {case.group:14s} {case.spec.name:22s} "
                f"{case.setting:9s} {case.label:32s} {result['seconds']:8.2f} s "
                f"{result['peak_rss'] / 2**20:8.0f} MiB",
                flush=True,
            )
        csc = {spec.name: csc[spec.name]} if spec.name in csc else {}
    info["loadavg_end"] = os.getloadavg()
    kept.append(workdir / "probe-end")
    info["create_us_end"] = file_creation_us(kept[-1])
    _remove_outputs(kept)
    seconds = time.perf_counter() - t_start
    report = render(cases, spec, args.size, info, args, stats, seconds)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
        print(f"wrote {args.out}")
    else:
        print(report)
    if args.json:
        args.json.write_text(json.dumps(_raw_results(cases, info, stats), indent=1))
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
