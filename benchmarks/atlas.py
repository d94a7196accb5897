"""Atlas scale: a CSR ``.h5ad`` of 160 M and of 1.6 B stored values, exported in one run.

Opt-in (not in CI): the files take minutes to write and ~14 GB of disk.
Both are written with ``benchmarks/outofcore.py make`` (row blocks appended by
anndata, the matrix never in memory)::

    python benchmarks/atlas.py make --dir /work/atlas-data      # small/csr.h5ad, big/csr.h5ad
    python benchmarks/atlas.py run  --dir /work/atlas-data --json atlas.json

``run`` exports each file with the CLI (folder format, 8-bit, gzip 6,
``--max-memory`` per case) in a fresh process under ``/usr/bin/time -v``,
samples ``/proc/<pid>/io`` and ``/proc/<pid>/stat`` twice a second, and cuts
the run into the reader's phases at the log line that ends the first one
(``read/transpose done``): per phase, wall time, CPU time, bytes read
through syscalls (``rchar``) and from the disk (``read_bytes``: page-cache
misses), bytes written, read/write syscalls. It reports time, values/s and
peak RSS per case and the ratio of the two cases' values/s.
``--py-spy DIR`` also records each export with py-spy (speedscope files).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from outofcore import export_cmd, make  # noqa: E402

CASES = {
    "small": {"cells": 500_000, "genes": 4_000, "density": 0.08, "max_memory": "600MB"},
    "big": {"cells": 2_000_000, "genes": 10_000, "density": 0.08, "max_memory": "1GB"},
}
PHASE_MARK = "read/transpose done"
_IO_KEYS = ("rchar", "wchar", "syscr", "syscw", "read_bytes", "write_bytes")


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def _sample(pid: int) -> dict[str, float] | None:
    """I/O counters and CPU seconds of ``pid`` now (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/io") as f:
            io = dict(line.split(": ") for line in f.read().splitlines())
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read().rsplit(")", 1)[1].split()
    except (OSError, ValueError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    s: dict[str, float] = {k: float(io[k]) for k in _IO_KEYS}
    s["cpu_s"] = (int(stat[11]) + int(stat[12])) / tick
    s["rss_MiB"] = int(stat[21]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    s["t"] = time.perf_counter()
    return s


def _delta(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    wall = b["t"] - a["t"]
    d = {
        "wall_s": round(wall, 1),
        "cpu_s": round(b["cpu_s"] - a["cpu_s"], 1),
        "cpu_pct": round(100 * (b["cpu_s"] - a["cpu_s"]) / max(wall, 1e-9)),
    }
    for k in _IO_KEYS:
        v = b[k] - a[k]
        d[k if k.startswith("sys") else f"{k}_GB"] = round(v / 1e9, 2) if "sys" not in k else v
    return d


def run_one(path: Path, out: Path, budget: str, py_spy: Path | None) -> dict[str, object]:
    """One export under ``/usr/bin/time -v``, sampled; per-phase figures."""
    cmd = export_cmd(str(path), str(out), ["--max-memory", budget])
    if py_spy is not None:
        py_spy.mkdir(parents=True, exist_ok=True)
        prof = py_spy / f"{path.parent.name}.speedscope.json"
        cmd = ["py-spy", "record", "--idle", "--rate", "20", "--threads", "--format",
               "speedscope", "-o", str(prof), "--", *cmd]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        ["/usr/bin/time", "-v", *cmd], stderr=subprocess.PIPE, text=True, env=dict(os.environ)
    )
    # the exporting python process: the leaf below /usr/bin/time (and py-spy)
    pid = proc.pid
    for _ in range(200):
        kids = _children(pid)
        if kids:
            pid = kids[0]
            if py_spy is None or "python" in Path(f"/proc/{pid}/comm").read_text():
                break
        time.sleep(0.05)
    samples: list[dict[str, float]] = []
    marks: dict[str, dict[str, float]] = {}
    lines: list[str] = []
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            s = _sample(pid)
            if s is not None:
                samples.append(s)
            done.wait(0.5)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    assert proc.stderr is not None
    for line in proc.stderr:
        lines.append(line)
        if PHASE_MARK in line and "phase1" not in marks:
            s = _sample(pid)
            if s is not None:
                marks["phase1"] = s
    proc.wait()
    done.set()
    poller.join()
    wall_total = time.perf_counter() - t0
    err = "".join(lines)
    if proc.returncode != 0:
        print(err[-5000:], file=sys.stderr)

    def field(label: str) -> str | None:
        m = re.search(rf"{re.escape(label)}: ([\d.:]+)", err)
        return m.group(1) if m else None

    wall = field("Elapsed (wall clock) time (h:mm:ss or m:ss)") or "0"
    seconds = sum(float(x) * 60**i for i, x in enumerate(reversed(wall.split(":"))))
    cpu = float(field("User time (seconds)") or 0) + float(field("System time (seconds)") or 0)
    rss = field("Maximum resident set size (kbytes)")
    first, last = (samples[0], samples[-1]) if samples else ({}, {})
    phases: dict[str, object] = {}
    if samples:
        if "phase1" in marks:
            phases["read_transpose"] = _delta(first, marks["phase1"])
            phases["encode_write"] = _delta(marks["phase1"], last)
        phases["total_sampled"] = _delta(first, last)
    strategy = re.findall(r"strategy=(\w+)", err)
    return {
        "returncode": proc.returncode,
        "wall_s": round(seconds or wall_total, 1),
        "cpu_s": round(cpu, 1),
        "cpu_pct": round(100 * cpu / max(seconds, 1e-9)),
        "peak_rss_MiB": round(int(rss) / 1024, 1) if rss else None,
        "peak_rss_MB": round(int(rss) * 1024 / 1e6, 1) if rss else None,
        "major_faults": int(field("Major (requiring I/O) page faults") or 0),
        "strategy": strategy[-1] if strategy else None,
        "phases": phases,
        "load_before": round(os.getloadavg()[0], 2),
    }


def _nnz(path: Path) -> int:
    import h5py

    with h5py.File(path, "r") as f:
        return int(f["X/indptr"][-1])


def run(folder: Path, cases: list[str], py_spy: Path | None) -> dict[str, object]:
    results: dict[str, object] = {"cpus": os.cpu_count()}
    for name in cases:
        spec = CASES[name]
        path = folder / name / "csr.h5ad"
        out = folder / f"out-{name}"
        nnz = _nnz(path)
        res = run_one(path, out, str(spec["max_memory"]), py_spy)
        res["stored_values"] = nnz
        res["file_GB"] = round(path.stat().st_size / 1e9, 2)
        res["max_memory"] = spec["max_memory"]
        res["values_per_s_M"] = round(nnz / res["wall_s"] / 1e6, 2)  # type: ignore[operator]
        results[name] = res
        print(name, json.dumps(res), flush=True)
        shutil.rmtree(out, ignore_errors=True)
    if "small" in results and "big" in results:
        small, big = results["small"], results["big"]
        results["ratio_values_per_s"] = round(
            big["values_per_s_M"] / small["values_per_s_M"],  # type: ignore[index]
            3,
        )
    return results


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("--dir", type=Path, required=True)
    m.add_argument("--cases", default="small,big")
    r = sub.add_parser("run")
    r.add_argument("--dir", type=Path, required=True)
    r.add_argument("--cases", default="small,big")
    r.add_argument("--py-spy", type=Path, default=None, help="record each export with py-spy")
    r.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    cases = [c for c in args.cases.split(",") if c]
    if args.cmd == "make":
        for name in cases:
            spec = CASES[name]
            make(
                args.dir / name,
                int(spec["cells"]),
                int(spec["genes"]),
                float(spec["density"]),
                formats=("csr",),
            )
    else:
        res = run(args.dir, cases, args.py_spy)
        text = json.dumps(res, indent=2)
        print(text)
        if args.json:
            args.json.write_text(text)


if __name__ == "__main__":
    main()
