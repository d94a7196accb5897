"""The Markdown report of a run: tables per setting, targets, bounds, scaling, method."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .suite import HEADLINE, SETTING_TITLES, SETTINGS, Case, auto_codec

if TYPE_CHECKING:
    import argparse

    from . import data

TARGETS = {"speedup": 8.0, "efficiency": 0.75, "max_err": 0.5}


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
    rows = []
    for c in here:
        t = c.median("seconds")
        eff = _x(floor_seconds(here, c), t)
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
                name += f" (auto = sparse-aware + {auto_codec()})"
        # these prepare their data untimed (the CSC variant converts its input), so
        # their peak RSS measures that preparation, not the export
        floor_row = c.kind in ("codec", "encoder", "io") or c.csc_input
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


def floor_seconds(here: list[Case], c: Case) -> float:
    """The limit ``c`` is measured against (median s), NaN if none.

    Compressed settings: the encoders' own time on the same genes and threads:
    for ``codec="auto"``, the sparse-aware encoder on its genes plus the
    generic codec on the rest (the encoder-limit case); for
    ``codec="sparse"``, the sparse-aware encoder on every gene; for a generic
    codec, its codec limit ("auto" stands for the codec auto uses). The
    reference row uses auto's limit. Float32: the I/O floor.
    """
    compressed = SETTINGS[c.setting][1] is not None
    if c.kind not in ("ours", "reference"):
        return float("nan")
    if not compressed:
        io = next((x for x in here if x.kind == "io"), None)
        return io.median("seconds") if io else float("nan")
    enc = next((x for x in here if x.kind == "encoder"), None)
    codec = "auto" if c.kind == "reference" else c.codec
    if codec in ("auto", "sparse") and enc is not None:
        return enc.median("seconds_auto_limit" if codec == "auto" else "seconds_sparse_all")
    if codec == auto_codec():
        codec = "auto"
    lim = next((x for x in here if x.kind == "codec" and x.codec == codec), None)
    return lim.median("seconds") if lim else float("nan")


def encoder_rows(cases: list[Case]) -> list[list[str]]:
    """The sparse-aware encoder against libdeflate on the same genes, per setting."""
    rows = []
    for c in cases:
        if c.kind != "encoder" or c.group != "main" or not c.runs:
            continue
        r = c.runs[0]
        bits = SETTINGS[c.setting][0]
        for what, n, vals, ts, tg, bs, bg in (
            (
                "genes auto gives it",
                r["n_genes_sparse"],
                r["n_values_sparse"],
                c.median("seconds"),
                c.median("seconds_generic_same"),
                r["bytes_sparse"],
                r["bytes_generic_same"],
            ),
            (
                "every gene (codec=sparse)",
                r["n_genes"],
                r["n_values"],
                c.median("seconds_sparse_all"),
                c.median("seconds_generic_all"),
                r["bytes_sparse_all"],
                r["bytes_generic_same"] + r["bytes_generic_rest"],
            ),
        ):
            rows.append(
                [
                    f"{bits}-bit",
                    what,
                    f"{n:,}",
                    f"{vals / 1e6:,.2f}",
                    f"{ts:.2f}",
                    f"{tg:.2f}",
                    f"{_x(tg, ts):.2f}x",
                    _mib(bs),
                    _mib(bg),
                    f"{_x(bs, bg):.3f}",
                ]
            )
    return rows


ENCODER_HEADER = [
    "codes",
    "genes",
    "genes (n)",
    "stored values (M)",
    "sparse-aware s",
    "libdeflate s",
    "speed-up",
    "sparse-aware MiB",
    "libdeflate MiB",
    "size ratio",
]


HEADER = [
    "case",
    "wall s (median)",
    "speed-up vs reference",
    "efficiency (limit s / s)",
    "output MiB (var/ + manifest)",
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
    if ours is None:
        return []
    limit_s = floor_seconds(here, ours)
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
    if limit_s == limit_s:
        eff = _x(limit_s, t)
        out.append(
            (
                f"efficiency at least {TARGETS['efficiency']:g} against the encoders' limit",
                f"{eff:.2f} ({limit_s:.2f} s / {t:.2f} s)",
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
    io = next((c for c in here if c.kind == "io"), None)
    if ref is None or io is None:
        return []
    limit_s = floor_seconds(here, ref)  # auto's encoders on their genes
    if limit_s != limit_s:
        return []
    r = ref.median("seconds")
    return [
        f"Upper bounds on this machine: the reference's time over the encoders' limit "
        f"(codec=auto: sparse-aware on its genes, {auto_codec()} on the rest) is "
        f"{_x(r, limit_s):.1f}x (compressing and nothing else), over the "
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
        "(cellucid 0.9.2 `prepare`), the codec and encoder limits and the I/O floor. Regenerate with",
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
    main = [c for c in cases if c.group == "main" and c.kind != "load"]
    for s in [s for s in SETTINGS if any(c.setting == s for c in main)]:
        lines += [
            f"### {SETTING_TITLES[s]}",
            "",
            _table(HEADER, setting_rows([c for c in cases if c.group == "main"], s)),
            "",
        ]
    erows = encoder_rows(cases)
    if erows:
        lines += [
            f"### Sparse-aware encoder against {auto_codec()} (same genes, {args.threads} threads)",
            "",
            "The encoder-limit case: `sparse_gzip.gzip_members_csc` on the genes' stored",
            "codes (CRC-32 and gzip framing included), one call per block; the codec limit's",
            f"raw {auto_codec()} calls (same level) on the same genes' dense payloads, in the",
            "same process (sizes with 18 bytes of gzip framing added per gene). Medians.",
            "",
            _table(ENCODER_HEADER, erows),
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
    lines += [METHOD, ATLAS, STORE]
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
- **Encoder limit** (sparse-aware): the genes' stored codes, as the writer
  makes them (`kernels.encode_block(...).stored()`, then `kernels.without_fill`;
  untimed), encoded by `sparse_gzip.gzip_members_csc` alone, one call per
  block of genes (blocks as the export makes them: about 10 per thread) on a
  pool of the same number of threads. Timed on the genes `codec="auto"` gives
  it (`sparse_gzip.sparse_pays`) and on every gene; in the same process,
  the generic codec's raw deflate on the same genes' dense payloads. Its
  members include CRC-32 and framing, so the comparison slightly favours
  libdeflate. The efficiency of `codec="auto"` (and of the reference row) is
  against the sparse-aware time on its genes plus the generic time on the
  rest; that of `codec="sparse"` against the sparse-aware time on every gene.
- **I/O floor** (float32): the same float32 payloads written with plain
  `open().write()` on the same number of threads, one file per gene, then one
  `os.sync`; the 8- and 16-bit rows do the same with the gzip members.
- **Output MiB**: every file under `var/` plus the manifest.
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


# Measured separately (benchmarks/atlas.py, opt-in): kept on the page when it is regenerated.
ATLAS = """## Atlas scale (out of core, opt-in)

Not part of the run above: `benchmarks/atlas.py` (its docstring says how to
write the two files, about 5 minutes and 14 GB of disk, and run it). Each
file is a CSR `.h5ad` written in row blocks by anndata (never in memory), 8 %
non-zero, exported by the command line (folder, 8-bit, gzip 6, 2 threads) in
a fresh process under `/usr/bin/time -v`, both cases in one run. The reader
spills: one pass over the file writes a CSC shard per row slab, then regroup
tasks interleave the shards by groups of genes for the block tasks
(`adapters/_backed.py`). Phases are cut at the reader's `read/transpose done`
log line; I/O from `/proc/<pid>/io` (`rchar`/`wchar`: bytes through
syscalls; `read_bytes`: bytes the disk had to supply, i.e. page-cache misses).

2026-12-07, 2 shared cores, 23.5 GiB RAM, ext4, the same two files for
every run. "After" and "before" (the code before the change, where each
block task read its few columns from every shard: 642,000 small reads for
the large case) ran back to back, load average 0.6-2.0 at the start of each
case:

| input | stored values | max_memory | before: time, values/s, CPU, peak RSS | after: time | after: values/s | after: CPU | after: peak RSS (x budget) |
|---|---:|---|---|---:|---:|---:|---:|
| 500,000 x 4,000, 1.31 GB | 160 M | 600MB | 22.6 s, 7.08 M/s, 137 %, 466 MB | 21.2 s | 7.55 M | 136 % | 438 MB (0.73x) |
| 2,000,000 x 10,000, 12.94 GB | 1.60 B | 1GB | 330.3 s, 4.84 M/s, 128 %, 708 MB | 231.6 s | 6.91 M | 125 % | 662 MB (0.66x) |

The 1.6 B case runs at 0.92x the values/s of the 160 M case (before:
0.68x; the issue measured 0.53x). Its CPU time went from 424 s to 290 s, ten
times the 160 M case's 28.9 s. The machine is shared, so single runs vary:
two other runs of the same code gave 0.97x (19.3 s and 198.5 s, load 1.3 and
3.4) and 1.18x (29.8 s and 253.1 s, load 3.6 and 4.0); two other runs of the
old code 1.04x and 0.70x. Peak RSS stayed between 0.63 and 0.69 GB for
`max_memory="1GB"` in every run.

Per phase, after (1.6 B case; the 160 M case in brackets):

| phase | wall s | CPU | read (syscalls) | read from disk | written | read syscalls |
|---|---:|---:|---:|---:|---:|---:|
| read/transpose: the file once, shards out | 63.1 (7.3) | 133 % (131 %) | 12.9 GB (1.33) | 7.0 GB (0.74) | 9.6 GB (0.96) | 534 k (70 k) |
| regroup, encode, write | 168.2 (13.7) | 122 % (139 %) | 22.4 GB (2.24) | 0.7 GB (0.01) | 15.0 GB (1.50) | 108 k (3.5 k) |

Before, the 1.6 B case made 6.9 M read syscalls and read 37.6 GB through
them (after: 0.64 M, 35.4 GB). The first phase reads the file once (12.9 GB
in 25 KB HDF5 chunks) and writes the shards (9.6 GB: float32 values and
uint16 slab-local rows). In the second phase the reads are the shards
(three contiguous ranges per shard and group) and the block files (12.8 GB,
one per block, removed once read); the writes are the block files and the
2.2 GB of output. The read phase is bounded by the disk and the CSR-to-CSC
conversion (reading the file alone takes 28 s here); the second phase by the
encoder: of the 497 thread-seconds py-spy sampled on the two worker threads
(the run at 1.18x), encoding and writing took 246, regrouping 86, loading
the block files 8, and the read phase 130.

Extrapolation to a 7.6 B-value atlas on this machine (for example
9,500,000 x 10,000 at 8 %, a 61 GB file), `max_memory="1GB"`: the work per
stored value is the same in every phase, so 7.6 B at 6.3-8.1 M values/s
(the three runs above) is 940-1,200 s, 16 to 20 minutes, with the same peak
RSS (slabs, groups and blocks keep their sizes; only their counts grow) and
scratch of about 46 GB of shards plus the block files not yet read. The one
term that grows faster than the data is the number of shard ranges read,
slabs x groups (34 k ranges of ~290 KB here; about 1,500 x 500 = 760 k of
~60 KB there, some 2 M syscalls, tens of seconds); a larger budget shrinks
both counts. Not measured: the 61 GB file does not fit this machine's page
cache, so the read phase would be bounded by the disk.
"""


# Measured separately (benchmarks/store.py, needs cellucid 0.9.5's venv): kept on the page.
STORE = """## The Cellucid-ready store against cellucid 0.9.5

`python -m benchmarks.store` (its docstring says how): `prepare(format="zarr")`
of dask-cellucid and of cellucid 0.9.5 on the same input, each write in a fresh
process (peak RSS is the whole process's, input included), the writers
interleaved; 2 threads, default `codec="auto"`. Measured on 2026-12-07 04:13,
load average 1.2-2.8.

M (100,000 x 2,000, 8 % non-zero, CSR float32, NaN-free, read from an `.h5ad`
into memory before the clock starts), 5 repeats:

| writer | median s (all) | speed-up | peak RSS | store bytes |
|---|---|---|---|---|
| cellucid 0.9.5 | 3.22 (3.07-3.25) | 1x | 397 MiB | 68,949,995 |
| dask-cellucid | 0.84 (0.82-0.89) | **3.85x** | 399 MiB | 68,680,811 (0.996x) |

An earlier run of the same code gave 3.63x. Before `deflate_literals` (the
values chunks of M are continuous floats, where a match search finds almost
nothing: libdeflate's level 1 took 0.86 CPU-s on them, a Huffman block of
their bytes 0.17 s, +0.35 % bytes) the same benchmark gave 1.24 s against
3.39 s, 2.7x.

Backed CSR `.h5ad` files (`benchmarks/outofcore.py make`, log1p of geometric
counts at 8 %, x 4,000 genes), ours with `max_memory="600MB"`, one run each:

| cells | stored values | file | dask-cellucid | peak RSS | cellucid 0.9.5 | peak RSS | bytes, ours / 0.9.5 |
|---|---|---|---|---|---|---|---|
| 250,000 | 80 M | 0.66 GB | 13.4 s | 464 MiB | 39.1 s | 1,924 MiB | 1.027 |
| 500,000 | 160 M | 1.31 GB | 24.1 s | 551 MiB | 72.4 s | 2,569 MiB | 1.027 |
| 1,000,000 | 320 M | 2.62 GB | 37.2 s | 624 MiB | not run | | |

Ours again after `deflate_literals` (04:15, 3 repeats, median (range), peak RSS
over the repeats): 250,000 cells 9.9 s (8.7-10.8), 503 MiB; 500,000 cells
22.0 s (19.4-27.7), 555 MiB. These files' values chunks compress (few distinct
floats), so they keep libdeflate's level 6: the change is run-to-run spread.

The matrix part of our memory is bounded by the budget; what still grows with
the matrix is `obs` (every cell's name is held as a Python string, as
anndata and cellucid hold it: about 60 MB per million cells). The store is
2.7 % larger on these files: their values take about 30 distinct floats, where
zlib's level 6 finds longer matches than libdeflate's (X/data chunks: 0.161
against 0.179 of the raw size; libdeflate matches zlib only at level 8, and
is then slower than zlib: 12 against 18 MB/s). `codec="zlib"` writes cellucid 0.9.5's bytes exactly, at
about a third of the speed.
"""
