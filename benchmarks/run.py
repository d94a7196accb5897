"""Run the benchmark suite and write its Markdown report.

One run, one machine, side by side, for each setting (8-bit + gzip 6, 16-bit +
gzip 6, float32 uncompressed):

- the reference writer, cellucid 0.9.2 ``prepare``, gene part isolated (a run
  without genes is subtracted from a run with them), and the same with its
  per-file ``fsync`` switched off (informative: the part of its time that is
  disk flushes);
- dask-cellucid with the default settings (``codec="auto"``) and with each
  other available codec;
- the codec limit: the same quantized bytes only compressed, same codec, level
  and number of threads;
- the I/O floor (float32): the same bytes written as plain files.

Every case runs alone in a fresh process (:mod:`benchmarks.cases`), so its
peak RSS is its own; repeats are interleaved (case A, B, C, A, B, C, ...) so
that a noisy neighbour slows every case alike, and the median is reported.

Usage::

    python -m benchmarks.run --size M --out docs/benchmarks.md
    python -m benchmarks.run --size S --repeats 1 --no-scaling       # quick look
    python -m benchmarks.run --size L --repeats 1 --no-scaling       # opt-in, long
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gzip
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from . import data

REPO = Path(__file__).resolve().parent.parent

SETTINGS: dict[str, tuple[int | None, int | None]] = {
    "u8-gzip6": (8, 6),
    "u16-gzip6": (16, 6),
    "f32": (None, None),
}
SETTING_TITLES = {
    "u8-gzip6": "8-bit + gzip 6 (the guide's fast path)",
    "u16-gzip6": "16-bit + gzip 6",
    "f32": "float32, uncompressed",
}
HEADLINE = "u8-gzip6"
TARGETS = {"speedup": 8.0, "efficiency": 0.75, "max_err": 0.5}


@dataclass
class Case:
    """One thing to time: ``kind`` is a runner of :mod:`benchmarks.cases`."""

    kind: str
    setting: str
    spec: data.Spec
    codec: str = "-"
    threads: int = 2
    no_fsync: bool = False
    csc_input: bool = False  # informative: the input handed over as CSC, converted untimed
    group: str = "main"  # "main" or "scaling"
    runs: list[dict[str, Any]] = field(default_factory=list)
    output: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        if self.kind == "reference":
            return "reference, fsync off" if self.no_fsync else "reference (cellucid 0.9.2)"
        if self.kind == "ours" and self.csc_input:
            return "dask-cellucid, default, CSC input (no transposition)"
        if self.kind == "ours":
            return f"dask-cellucid, codec={self.codec}"
        if self.kind == "codec":
            return f"codec limit ({self.codec})"
        if self.kind == "io":
            what = "same .gz files" if SETTINGS[self.setting][1] else "same float32 files"
            return f"I/O floor ({what}, plain writes + sync)"
        return "load input only"

    @property
    def key(self) -> str:
        return f"{self.group}/{self.spec.name}/{self.setting}/{self.kind}/{self.codec}/{self.no_fsync}/{self.csc_input}"

    def config(self, out: Path) -> dict[str, Any]:
        bits, level = SETTINGS[self.setting]
        return {
            "kind": self.kind,
            "spec": dataclasses.asdict(self.spec),
            "bits": bits,
            "level": level,
            "codec": self.codec,
            "threads": self.threads,
            "no_fsync": self.no_fsync,
            "csc_input": self.csc_input,
            "out": str(out),
        }

    def median(self, what: str) -> float:
        vals = [r[what] for r in self.runs if r.get(what) is not None]
        return statistics.median(vals) if vals else float("nan")


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


def file_creation_us(probe: Path, n: int = 500) -> float:
    """Microseconds to create (and write 1 byte to) one file in the fresh folder ``probe``.

    Context for the I/O rows: it depends on the filesystem and on how many
    files were deleted there in the last minutes. The caller removes ``probe``
    with the outputs, at the end.
    """
    probe.mkdir()
    t0 = time.perf_counter()
    for k in range(n):
        with open(probe / f"{k}.bin", "wb") as f:
            f.write(b"x")
    return (time.perf_counter() - t0) / n * 1e6


# -- checking an output folder --------------------------------------------------
def _dense_column(csc: sp.csc_matrix, j: int) -> np.ndarray:
    col = np.zeros(csc.shape[0], np.float32)
    a, b = csc.indptr[j], csc.indptr[j + 1]
    col[csc.indices[a:b]] = csc.data[a:b]
    return col


def check_output(
    folder: Path, csc: sp.csc_matrix, *, max_genes: int | None = None
) -> dict[str, Any]:
    """Bytes, file count, and the largest decode error (in quantization steps) of a gene export.

    ``csc`` is the matrix the writer was given. Decoding follows the viewer:
    ``lo + code * (hi - lo) / max_code`` in float64, stored as float32; the
    error of a cell is ``|decoded - value| / step`` with ``step = (hi - lo) /
    max_code`` from the manifest. Constant and empty genes have no step and
    must decode exactly. With ``max_genes``, an evenly spaced sample is checked.
    """
    doc = json.loads((folder / "var_manifest.json").read_text())
    schema = doc["_varSchema"]
    pattern = schema["pathPattern"]
    dtype = np.dtype({"float32": "<f4", "uint8": "<u1", "uint16": "<u2"}[schema["dtype"]])
    files = [p for p in (folder / "var").rglob("*") if p.is_file()]
    nbytes = sum(p.stat().st_size for p in files) + (folder / "var_manifest.json").stat().st_size
    fields = doc["fields"]
    names = data.gene_names(csc.shape[1])
    column = {g: j for j, g in enumerate(names)}
    picked = range(len(fields))
    if max_genes is not None and len(fields) > max_genes:
        picked = np.unique(np.linspace(0, len(fields) - 1, max_genes).astype(int)).tolist()
    max_err, bad_marker, inexact = 0.0, 0, 0
    top = (1 << schema["quantizationBits"]) - 2 if schema["quantized"] else 0
    for i in picked:
        f = fields[i]
        if "{key}" in pattern:
            gid, rest = f[0], f[1:]
            rel = pattern.replace("{key}", gid)  # GENE00000-style ids sanitize to themselves
        else:
            gid, rest = f[1], f[2:]
            rel = pattern.replace("{index}", str(f[0]))
        raw = (folder / rel).read_bytes()
        if rel.endswith(".gz"):
            raw = gzip.decompress(raw)
        vals = np.frombuffer(raw, dtype)
        x = _dense_column(csc, column[gid])
        finite = np.isfinite(x)
        if not schema["quantized"]:
            inexact += int(not np.array_equal(vals, x, equal_nan=True))
            continue
        lo, hi = float(rest[0]), float(rest[1])
        missing = vals == top + 1
        bad_marker += int((missing != ~finite).sum())
        dec = (
            (lo + vals.astype(np.float64) * ((hi - lo) / top)).astype(np.float32).astype(np.float64)
        )
        ok = finite & ~missing
        diff = np.abs(dec[ok] - x[ok].astype(np.float64))
        step = (hi - lo) / top
        if diff.size == 0:
            continue
        if step == 0 or (x[ok].min() == x[ok].max()):
            inexact += int(diff.max() > 0)
            continue
        max_err = max(max_err, float(diff.max() / step))
    return {
        "bytes": nbytes,
        "files": len(files) + 1,
        "max_err_steps": max_err if schema["quantized"] else None,
        "exact": inexact == 0,
        "marker_mismatches": bad_marker,
        "genes_checked": len(picked),
    }


# -- the plan of cases --------------------------------------------------------
def available_codecs() -> list[str]:
    sys.path.insert(0, str(REPO / "src"))
    from dask_cellucid import codecs

    return list(codecs.available_codecs())


def main_cases(
    spec: data.Spec,
    settings: list[str],
    codecs: list[str],
    threads: int,
    reference: bool,
    fsync_variant: bool = True,
    csc_variant: bool = True,
) -> list[Case]:
    cases = [Case("load", "f32", spec, threads=threads)]
    for s in settings:
        level = SETTINGS[s][1]
        if reference:
            cases.append(Case("reference", s, spec, threads=1))
            if s == HEADLINE and fsync_variant:
                cases.append(Case("reference", s, spec, threads=1, no_fsync=True))
        if level:
            cases += [Case("ours", s, spec, codec=codecs[0], threads=threads)]
            if s == HEADLINE and csc_variant:
                cases.append(Case("ours", s, spec, codec="auto", threads=threads, csc_input=True))
            cases += [Case("ours", s, spec, codec=c, threads=threads) for c in codecs[1:]]
            cases += [Case("codec", s, spec, codec=c, threads=threads) for c in codecs]
            cases.append(Case("io", s, spec, codec="auto", threads=threads))
        else:
            cases.append(Case("ours", s, spec, codec="auto", threads=threads))
            cases.append(Case("io", s, spec, threads=threads))
    return cases


def scaling_cases(base: data.Spec, threads: int, reference: bool) -> list[Case]:
    cases = []
    for axis, spec in data.scaling_specs(base):
        for kind in (["reference"] if reference else []) + ["ours", "codec"]:
            c = Case(
                kind,
                HEADLINE,
                spec,
                codec="-" if kind == "reference" else "auto",
                threads=1 if kind == "reference" else threads,
                group=f"scaling-{axis}",
            )
            cases.append(c)
    return cases


# -- the report ----------------------------------------------------------------
def _sh(cmd: str) -> str:
    try:
        return subprocess.run(
            cmd, shell=True, capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        return ""


def machine_info(workdir: Path) -> dict[str, Any]:
    import importlib.metadata as md

    cpu = _sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
    mem = _sh("grep MemTotal /proc/meminfo | awk '{print $2}'")
    versions = {}
    for pkg in ("numpy", "scipy", "dask", "deflate", "isal", "cellucid", "dask-cellucid"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = "-"
    return {
        "cpu": cpu or platform.processor(),
        "cores": os.cpu_count(),
        "memory_gib": round(int(mem) / 2**20, 1) if mem.isdigit() else None,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "filesystem": _sh(f"df -T {workdir} | tail -1 | awk '{{print $2}}'"),
        "versions": versions,
        "loadavg_start": os.getloadavg(),
    }


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f}"


def _x(a: float, b: float) -> float:
    return a / b if b else float("nan")


def setting_rows(cases: list[Case], setting: str) -> list[list[str]]:
    """The table rows of one setting, as strings.

    Efficiency is the floor's time over the case's: the codec limit of the
    same codec for compressed settings, the I/O floor for float32.
    """
    here = [c for c in cases if c.setting == setting and c.kind != "load"]
    ref = next((c for c in here if c.kind == "reference" and not c.no_fsync), None)
    compressed = SETTINGS[setting][1] is not None
    floors = {c.codec: c for c in here if c.kind == ("codec" if compressed else "io")}
    default = floors.get("auto") or floors.get("-")
    rows = []
    for c in here:
        t = c.median("seconds")
        floor = None
        if c.kind == "ours":
            floor = floors.get(c.codec) if compressed else default
        elif c.kind == "reference":
            floor = default
        eff = _x(floor.median("seconds"), t) if floor else float("nan")
        out = c.output or {}
        ref_out = (ref.output or {}) if ref else {}
        speed = _x(ref.median("seconds"), t) if ref else float("nan")
        size = _x(out["bytes"], ref_out["bytes"]) if out and ref_out else float("nan")
        err = out.get("max_err_steps") if out else None
        err_s = (
            "-"
            if not out
            else (
                "exact"
                if err is None and out.get("exact")
                else f"{err:.3f}"
                if err is not None
                else "NOT EXACT"
            )
        )
        if out and out.get("marker_mismatches"):
            err_s += f" ({out['marker_mismatches']} marker mismatches!)"
        name = c.label
        if c.kind == "ours" and c.codec == "auto" and not c.csc_input:
            name = "**dask-cellucid, default**"
            if compressed:
                name += f" (auto = {_resolve_auto()['auto']})"
        # these prepare their data untimed (the CSC variant converts its input), so
        # their peak RSS measures that preparation, not the export
        floor_row = c.kind in ("codec", "io") or c.csc_input
        rows.append(
            [
                name,
                f"{t:.2f}",
                "1.00" if c is ref else (f"{speed:.1f}x" if speed == speed else "-"),
                f"{eff:.2f}" if eff == eff else "-",
                _mib(out["bytes"]) if out else "-",
                f"{size:.3f}" if size == size else "-",
                f"{out['files']:,}" if out else "-",
                "-" if floor_row else _mib(c.median("peak_rss")),
                err_s,
            ]
        )
    return rows


def _resolve_auto() -> dict[str, str]:
    sys.path.insert(0, str(REPO / "src"))
    from dask_cellucid import codecs

    return {"auto": codecs.resolve_codec("auto")}


HEADER = [
    "case",
    "wall s (median)",
    "speed-up vs reference",
    "efficiency (limit s / s)",
    "output MiB",
    "size vs reference",
    "files",
    "peak RSS MiB",
    "max decode error (steps)",
]


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def targets(cases: list[Case]) -> list[tuple[str, str, bool | None]]:
    here = [c for c in cases if c.group == "main" and c.setting == HEADLINE]
    ref = next((c for c in here if c.kind == "reference" and not c.no_fsync), None)
    ours = next(
        (c for c in here if c.kind == "ours" and c.codec == "auto" and not c.csc_input), None
    )
    limit = next((c for c in here if c.kind == "codec" and c.codec == "auto"), None)
    if ours is None:
        return []
    out = []
    t = ours.median("seconds")
    if ref is not None:
        sp_ = _x(ref.median("seconds"), t)
        out.append(
            (
                f"at least {TARGETS['speedup']:g}x faster than the reference",
                f"{sp_:.1f}x ({t:.2f} s vs {ref.median('seconds'):.2f} s)",
                sp_ >= TARGETS["speedup"],
            )
        )
        ob, rb = ours.output["bytes"], ref.output["bytes"]  # type: ignore[index]
        out.append(
            (
                "output no larger than the reference's",
                f"{_mib(ob)} MiB vs {_mib(rb)} MiB ({ob / rb:.3f})",
                ob <= rb,
            )
        )
        rr, orr = ref.median("peak_rss"), ours.median("peak_rss")
        out.append(
            (
                "peak RSS no higher than the reference's",
                f"{_mib(orr)} MiB vs {_mib(rr)} MiB",
                orr <= rr,
            )
        )
    if limit is not None:
        eff = _x(limit.median("seconds"), t)
        out.append(
            (
                f"efficiency at least {TARGETS['efficiency']:g} against the codec limit",
                f"{eff:.2f} ({limit.median('seconds'):.2f} s / {t:.2f} s)",
                eff >= TARGETS["efficiency"],
            )
        )
    err = (ours.output or {}).get("max_err_steps")
    ref_err = (ref.output or {}).get("max_err_steps") if ref else None
    if err is not None:
        out.append(
            (
                "decode error at most half a step (reference: up to one)",
                f"{err:.4f} steps (reference {ref_err:.4f})"
                if ref_err is not None
                else f"{err:.4f} steps",
                err <= TARGETS["max_err"] + 1e-3,
            )
        )
    return out


def bounds(cases: list[Case]) -> list[str]:
    """What the floors allow: no exporter beats the reference by more than these."""
    here = [c for c in cases if c.group == "main" and c.setting == HEADLINE]
    ref = next((c for c in here if c.kind == "reference" and not c.no_fsync), None)
    limit = next((c for c in here if c.kind == "codec" and c.codec == "auto"), None)
    io = next((c for c in here if c.kind == "io"), None)
    if ref is None or limit is None or io is None:
        return []
    r = ref.median("seconds")
    return [
        f"Upper bounds on this machine: the reference's time over the codec limit is "
        f"{_x(r, limit.median('seconds')):.1f}x (compressing and nothing else), over the "
        f"I/O floor {_x(r, io.median('seconds')):.1f}x (writing the same files, plain, and "
        "nothing else). An exporter must do both, so even with the two perfectly overlapped "
        "it cannot beat the smaller of these.",
        "",
    ]


def scaling_rows(cases: list[Case]) -> list[list[str]]:
    rows = []
    groups: dict[tuple[str, str], dict[str, Case]] = {}
    for c in cases:
        if c.group.startswith("scaling"):
            groups.setdefault((c.group, c.spec.name), {})[c.kind] = c
    for (group, _), by in groups.items():
        spec = next(iter(by.values())).spec
        ours, ref, lim = by.get("ours"), by.get("reference"), by.get("codec")
        t = ours.median("seconds") if ours else float("nan")
        rows.append(
            [
                group.removeprefix("scaling-"),
                f"{spec.n_cells:,}",
                f"{spec.n_genes:,}",
                f"{ref.median('seconds'):.2f}" if ref else "-",
                f"{t:.2f}",
                f"{_x(ref.median('seconds'), t):.1f}x" if ref else "-",
                f"{lim.median('seconds'):.2f}" if lim else "-",
                f"{_x(lim.median('seconds'), t):.2f}" if lim else "-",
                f"{spec.n_cells * spec.n_genes / t / 1e6:,.0f}" if t == t else "-",
            ]
        )
    return rows


def render(
    cases: list[Case],
    spec: data.Spec,
    size: str,
    info: dict[str, Any],
    args: argparse.Namespace,
    stats: dict[str, Any],
    seconds: float,
) -> str:
    v = info["versions"]
    lines = [
        "# Benchmarks",
        "",
        "How fast dask-cellucid exports genes, against the reference writer",
        "(cellucid 0.9.2 `prepare`), the codec limit and the I/O floor. Regenerate with",
        "one command (20 to 40 minutes for M on 2 shared cores, scaling points included):",
        "",
        "```bash",
        "python -m benchmarks.run --size M --out docs/benchmarks.md",
        "```",
        "",
        "`--size S` is a quick look, `--size L` (200,000 x 20,000, 6 %) is opt-in and long;",
        "`--repeats`, `--settings`, `--codecs`, `--threads`, `--no-scaling`,",
        "`--no-reference`, `--no-scaling-reference`, `--no-fsync-variant`,",
        "`--no-csc-variant` and `--json`",
        "narrow or record a run (`python -m benchmarks.run --help`). CI runs a tiny",
        "smoke version (`tests/test_benchmarks_smoke.py`) that checks the suite works,",
        "not its numbers. Method and definitions are at the end of this page; what the",
        "profile showed and what changed because of it is in",
        "`benchmarks/README.md` in the repository.",
        "",
        f"## Latest run: size {size}",
        "",
        f"- When: {info['when']} (UTC), {seconds / 60:.1f} min for the whole run,",
        f"  {args.repeats} interleaved repeat(s) per case, median reported.",
        f"- Machine: {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB RAM,",
        f"  {info['os']}, {info['filesystem']} filesystem; Python {info['python']}.",
        f"  Load average at start {info['loadavg_start'][0]:.2f}, at end {info['loadavg_end'][0]:.2f}"
        " (the machine was shared: other work ran alongside).",
        f"  Creating one small file in a fresh folder took {info['create_us_start']:.0f} us at"
        f" start, {info['create_us_end']:.0f} us at end; every writer here creates 2,001"
        " files per run (why this varies: `benchmarks/README.md`).",
        f"- Versions: numpy {v['numpy']}, scipy {v['scipy']}, dask {v['dask']},",
        f"  deflate (libdeflate) {v['deflate']}, isal {v['isal']}, cellucid {v['cellucid']},",
        f"  dask-cellucid {v['dask-cellucid']}.",
        f"- Threads: dask-cellucid, codec limit and I/O floor on {args.threads}"
        " threads; the reference writer is single-threaded by design.",
        f"- Data: {spec.n_cells:,} cells x {spec.n_genes:,} genes, seed {spec.seed},"
        f" {stats['density'] * 100:.2f} % non-zero",
        f"  (per-gene density 5th/50th/95th percentile {stats['gene_density_p5'] * 100:.2f} /",
        f"  {stats['gene_density_p50'] * 100:.2f} / {stats['gene_density_p95'] * 100:.1f} %),"
        f" {stats['n_dense_genes']} fully dense genes, {stats['n_all_zero_genes']} all-zero"
        f" genes, {stats['n_nan_genes']} genes with NaN cells; CSR float32 (as scanpy",
        "  leaves `adata.X`). The reference refuses NaN, so its copy has them set to 0",
        "  (before timing); every writer's decode error is measured against its own input.",
        "",
    ]
    load = next((c for c in cases if c.kind == "load" and c.group == "main"), None)
    tg = targets(cases)
    if tg:
        lines += [f"### Targets ({HEADLINE}, M-size goals, {args.threads} threads)", ""]
        lines += ["| target | measured | met |", "|---|---|---|"]
        lines += [f"| {a} | {b} | {'yes' if ok else '**no**'} |" for a, b, ok in tg]
        lines.append("")
        lines += bounds(cases)
    for s in [s for s in SETTINGS if any(c.setting == s and c.group == "main" for c in cases)]:
        lines += [
            f"### {SETTING_TITLES[s]}",
            "",
            _table(HEADER, setting_rows([c for c in cases if c.group == "main"], s)),
            "",
        ]
    if load is not None:
        lines += [
            f"Loading the input and importing both writers alone peaks at "
            f"{_mib(load.median('peak_rss'))} MiB RSS: that much of every case's peak"
            " is common to all.",
            "",
        ]
    srows = scaling_rows(cases)
    if srows:
        lines += [
            f"### Scaling ({HEADLINE}, default codec, {args.threads} threads)",
            "",
            _table(
                [
                    "varied",
                    "cells",
                    "genes",
                    "reference s",
                    "dask-cellucid s",
                    "speed-up",
                    "codec limit s",
                    "efficiency",
                    "M values / s",
                ],
                srows,
            ),
            "",
        ]
    lines += [METHOD]
    return "\n".join(lines) + "\n"


METHOD = """## Method

- **Reference writer**: `cellucid.prepare_data.prepare` 0.9.2 (installed from the
  package index), with a 2-D embedding, an empty `obs` and the same
  `var_quantization` / `compression`. It is run twice in the same process, without
  and with `gene_expression`; its gene part is the difference (the run without
  genes takes well under a second). It converts the matrix to CSC, loops over
  genes (`getcol`, float32, finiteness check, truncating quantization), and writes
  each file through Python's `GzipFile` with an `fsync` per file. "reference,
  fsync off" is the same run with `os.fsync` replaced by a no-op: not a fair
  baseline (it gives up durability), but it shows how much of the reference's
  time is disk flushes on this machine.
- **dask-cellucid**: `dask_cellucid.prepare(X, var, out_dir, var_quantization,
  compression, codec, scheduler="threads", num_workers=threads)`, the whole call
  timed: planning, the block tasks (each converts its columns of the CSR
  input to CSC, quantizes, compresses and writes its files; a background
  thread flushes them to disk), the wait for every flush, the manifest. Rounding is the default, to the nearest code. "CSC input" is the
  same call given the matrix already in CSC form (converted untimed, so its
  peak RSS is not comparable and not shown): it shows what the CSR-to-CSC
  transposition costs, which the reference pays too.
- **Codec limit**: the exact payloads dask-cellucid writes (quantized beforehand,
  untimed), compressed with only the raw-deflate call of the same codec and level
  on a pool of the same number of threads; no CRC, no framing, no file. No
  exporter using that encoder can be faster. Efficiency = codec-limit time /
  our time (1.0 would mean everything but compression is free).
- **I/O floor** (float32): the same float32 payloads written with plain
  `open().write()` on the same number of threads, one file per gene, then one
  `os.sync`; the 8- and 16-bit rows do the same with the gzip members.
- **Peak RSS**: `ru_maxrss` of each case's own process (`os.wait4`); it includes
  the loaded input (see "load input only").
- **Decode error**: every gene read back (gzip by Python's `gzip`), decoded as
  the viewer does (`min + code * (max - min) / maxQuant` in float64, stored as
  float32) with the bounds of the manifest, compared with the writer's input:
  the largest `|decoded - value| / step`, `step = (max - min) / maxQuant`, over
  every finite cell of every gene. Nearest rounding bounds it by half a step;
  the float32 storage of the decoded value adds a little (visible at 16 bits,
  where steps are small). Truncation (the reference) gives up to one step.
  Float32 output must be bit-exact ("exact").
- **Noise**: this machine is shared; repeats are interleaved and the median is
  reported, so ratios within one run are more trustworthy than absolute times.
"""


def main(argv: list[str] | None = None) -> int:
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
    args = ap.parse_args(argv)
    args.repeats = args.repeats or (1 if args.size == "L" else 3)
    if args.check_genes is None and args.size == "L":
        args.check_genes = 2000
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    unknown = set(settings) - set(SETTINGS)
    if unknown:
        ap.error(f"unknown settings {sorted(unknown)}; choose from {list(SETTINGS)}")
    have = available_codecs()
    extra = [c.strip() for c in args.codecs.split(",")] if args.codecs is not None else have
    auto = _resolve_auto()["auto"]
    codecs = ["auto"] + [c for c in extra if c and c != "auto" and c != auto and c in have]
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
                if case.spec.name not in csc:
                    csc = {case.spec.name: sp.csc_matrix(data.load(case.spec))}
                m = csc[case.spec.name]
                if case.kind == "reference":  # its input had NaN set to 0
                    m = m.copy()
                    m.data[~np.isfinite(m.data)] = 0.0
                case.output = check_output(Path(out), m, max_genes=args.check_genes)
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
        raw = {
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
        args.json.write_text(json.dumps(raw, indent=1))
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
