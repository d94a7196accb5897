"""Export folders read back by a real browser, the way the Cellucid viewer reads them.

The spec (export-format.md, section 1) asks for this: the viewer inflates each
``.gz`` payload with the browser's ``DecompressionStream("gzip")``, which is
stricter than Python's ``gzip`` module, so what we write must be tested with a
browser, not only with Python.

One headless Chromium run (module fixture) reads every folder built here: the
page ``tests/browser/decode.html`` fetches ``var_manifest.json``, resolves each
field's payload path (``key`` layout: the sanitized id; ``index``: the
position), fetches it from a loopback HTTP server (``application/octet-stream``,
no ``Content-Encoding``, as the spec requires), inflates ``.gz`` names with
``DecompressionStream``, checks the byte length, decodes with the viewer's
formula and POSTs each decoded gene back as float32 bytes. Each test then
compares one folder's genes with :func:`dask_cellucid.read_genes` (exactly, as
float32) and with the input matrix (within half a quantization step).

Folders: three inputs (a 300 x 12 sparse matrix of awkward genes, genes whose
runs of the code of zero are 257/258/259 cells and other lengths around match
limits, and 100,000-cell genes), 8/16-bit and float32 payloads, both layouts,
and gzip members from every encoder: ``zlib``, ``libdeflate``, the writer's
``sparse``/``auto`` codecs, and the sparse-aware encoder
(``formats/folder/sparse_gzip.py``) called directly. Negative controls (a
reserved header flag, a bad CRC, a bad ISIZE, a truncated member) show the
browser run does catch what ``DecompressionStream`` refuses. Two folders with
bounds chosen so that the order of evaluation of the viewer's formula changes one
float32 value check that the page, and read_genes, decode as the spec writes it.

Skipped without Chromium, except on CI (env ``CI`` set), where that fails.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import warnings
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import dask_cellucid
from dask_cellucid.errors import ExportWarning, InvalidOptionError
from dask_cellucid.formats.folder import kernels, sparse_gzip
from dask_cellucid.formats.folder.spec import field_locations

PAGE = Path(__file__).parent / "browser" / "decode.html"
BROWSER_TIMEOUT = 90.0  # seconds for the whole browser run (it takes ~2 s)
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--no-proxy-server",
)

# -- inputs ------------------------------------------------------------------------------


def _csc(columns: list[tuple[np.ndarray, np.ndarray]], n_cells: int) -> sp.csc_matrix:
    """A canonical CSC float32 matrix from per-gene (rows, values); explicit zeros kept."""
    indptr = np.cumsum([0] + [len(r) for r, _ in columns])
    indices = np.concatenate([np.asarray(r, np.int32) for r, _ in columns])
    data = np.concatenate([np.asarray(v, np.float32) for _, v in columns])
    m = sp.csc_matrix((data, indices, indptr), shape=(n_cells, len(columns)))
    assert m.has_canonical_format
    return m


def _main_input() -> tuple[sp.csc_matrix, list[str]]:
    """300 cells x 12 genes: NaN/Inf, constant, all-zero, negative, explicit zeros..."""
    n = 300
    rng = np.random.default_rng(20261206)
    x = sp.random(n, 12, density=0.3, format="csc", dtype=np.float32, random_state=rng)
    x.data = rng.normal(0.0, 3.0, len(x.data)).astype(np.float32)  # negative values too

    def col(j: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = x.indptr[j], x.indptr[j + 1]
        return x.indices[a:b].copy(), x.data[a:b].copy()

    def some(k: int) -> np.ndarray:
        return np.sort(rng.choice(n, k, replace=False))

    r0, v0 = col(0)
    v0[::7] = np.nan  # NaN among stored values
    r3 = some(60)
    v3 = rng.normal(0, 2, 60).astype(np.float32)
    v3[:3] = [np.inf, -np.inf, np.nan]
    r5 = some(80)
    v5 = rng.normal(0, 1, 80).astype(np.float32)
    v5[::2] = 0.0  # explicit zeros: they encode to the fill element
    r10 = some(100)
    v10 = rng.normal(0, 1e-3, 100).astype(np.float32)
    v10[:5] = [5.0, -5.0, 1e-6, -1e-6, 0.0]  # many quantize to the code of zero
    columns = [
        (r0, v0),
        (np.arange(n), np.full(n, 2.5)),  # constant gene (every cell 2.5)
        (np.array([], int), np.array([])),  # all-zero gene (nothing stored)
        (r3, v3),  # +Inf, -Inf and NaN
        (some(150), -rng.gamma(2.0, 2.0, 150)),  # only negative values (max is 0)
        (r5, v5),
        (np.arange(n), rng.normal(0, 1, n)),  # dense gene
        (np.array([n - 1]), np.array([7.0])),  # one stored value, in the last cell
        (np.arange(n), np.full(n, np.nan)),  # no finite value at all
        (some(30), rng.normal(0, 1e6, 30)),  # large range
        (r10, v10),
        (np.array([0]), np.array([-1.0])),  # one stored value, in the first cell
    ]
    ids = [
        "A/B",
        "cell type",
        ".hidden_",
        "Gene.1",
        "neg",
        "explicit_zeros",
        "dense",
        "last",
        "all_nan",
        "big",
        "tiny",
        "Gen\u00e9 \u57fa\u56e0 (x)",  # non-ASCII: the key layout's file is "Gen_x"
    ]
    return _csc(columns, n), ids


def _rows_from_gaps(gaps: list[int], n: int, first: int = 0) -> np.ndarray:
    """Stored rows from ``first`` on, separated by runs of ``gaps`` (cycled) fill cells."""
    rows, r, k = [], first, 0
    while r < n:
        rows.append(r)
        r += gaps[k % len(gaps)] + 1
        k += 1
    return np.array(rows)


def _runs_input() -> tuple[sp.csc_matrix, list[str]]:
    """4,000 cells: runs of the fill element around the deflate match limits."""
    n = 4000
    rng = np.random.default_rng(258)
    around = [1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 64, 65, 66, 85, 86, 87, 128, 129, 130]
    around += [256, 257, 258, 259, 260, 515, 516, 517, 518, 774, 775]
    row_sets = [
        _rows_from_gaps([257, 258, 259], n),  # runs of exactly 257, 258, 259
        _rows_from_gaps([259, 258, 257], n, first=258),  # leading run of 258
        _rows_from_gaps(around, n),
        _rows_from_gaps(around[::-1], n, first=1),
        np.r_[np.arange(0, n - 258), n - 1],  # all stored but a run of 257 before the last
        np.array([259, n - 260]),  # leading 259, a long middle run, trailing 259
    ]
    columns = []
    for rows in row_sets:
        values = rng.uniform(0.5, 4.0, len(rows))
        values[rng.random(len(rows)) < 0.1] = 0.0  # explicit zeros merge into runs
        columns.append((rows, values))
    ids = ["run257_258_259", "lead258", "gaps_up", "gaps_down", "almost_full", "two"]
    return _csc(columns, n), ids


def _large_input() -> tuple[sp.csc_matrix, list[str]]:
    """100,000 cells: a very sparse, a sparse, a half-full and an incompressible gene."""
    n = 100_000
    rng = np.random.default_rng(100_000)
    columns = []
    for k in (10, 1_000, 30_000, 50_000):
        rows = np.sort(rng.choice(n, k, replace=False))
        columns.append((rows, np.log1p(rng.gamma(1.0, 5.0, k))))
    # every cell stored, uniform: incompressible (the sparse encoder's stored blocks)
    columns.append((np.arange(n), rng.uniform(-1.0, 1.0, n)))
    ids = ["very_sparse", "sparse_1pc", "sparse_30pc", "half", "incompressible"]
    return _csc(columns, n), ids


INPUTS = {
    name: functools.cache(make)
    for name, make in {"main": _main_input, "runs": _runs_input, "large": _large_input}.items()
}

# -- the folders -------------------------------------------------------------------------

# How a folder's gzip members are made: a codec of the writer, or the sparse-aware
# encoder called directly on a zlib export's codes ("direct-csc": one call for all
# genes; "direct-gene": one call per gene); "none": no compression.
DIRECT = ("direct-csc", "direct-gene")


@dataclass(frozen=True)
class Case:
    data: str
    bits: int | None
    layout: str
    codec: str

    @property
    def name(self) -> str:
        return f"{self.data}-q{self.bits or 32}-{self.layout}-{self.codec}"


# Layouts differ only in names and bounds, so the index layout gets fewer codecs. Every
# "direct-*" folder is a copy of the zlib folder of the same input, bits and layout.
CASES = [
    *(
        Case("main", bits, "key", codec)
        for bits in (8, 16, None)
        for codec in ("zlib", "libdeflate", "sparse", "none", "direct-csc")
    ),
    *(
        Case("main", bits, "index", codec)
        for bits in (8, 16, None)
        for codec in ("zlib", "sparse", "direct-gene")
    ),
    *(
        Case("runs", bits, "key", codec)
        for bits in (8, 16, None)
        for codec in ("zlib", "sparse", "direct-csc", "direct-gene")
    ),
    *(
        Case("large", bits, "index", codec)
        for bits in (8, 16, None)
        for codec in ("zlib", "sparse", "auto", "direct-gene")
    ),
]
NEGATIVE = "negative-controls"

# Bounds for which the two ways of evaluating the viewer's formula differ in float32 for
# one code: the spec's ``min + code * (max - min) / maxQuant`` read left to right (as
# JavaScript does) and ``min + code * ((max - min) / maxQuant)`` (kernels.decode).
# Found by search; about 2 values in a million differ.
ORDER = {
    "order-q8": (8, -3.1919007301330566, 12.703463554382324),  # code 127
    "order-q16": (16, -14.19182014465332, -0.6790212988853455),  # code 37448
}


def _export(x: sp.csc_matrix, ids: list[str], out: Path, case: Case) -> None:
    codec = "zlib" if case.codec == "none" else case.codec
    with warnings.catch_warnings():  # the all-zero and NaN genes are there on purpose
        warnings.simplefilter("ignore", ExportWarning)
        _prepare(x, ids, out, case, codec)


def _prepare(x: sp.csc_matrix, ids: list[str], out: Path, case: Case, codec: str) -> None:
    dask_cellucid.prepare(
        x,
        pd.DataFrame(index=ids),
        out_dir=out,
        var_quantization=case.bits,
        compression=None if case.codec == "none" else 6,
        layout=case.layout,
        codec=codec,
        scheduler="synchronous",
        progress=False,
    )


def _order_folder(out: Path, bits: int, lo: float, hi: float) -> None:
    """Every code once, in a gene whose bounds are exactly ``lo`` and ``hi``."""
    top = kernels.max_code(bits)
    x = (lo + np.arange(top + 1) * (hi - lo) / top).astype(np.float32)
    x[0], x[-1] = lo, hi
    dask_cellucid.prepare(
        x[:, None],
        pd.DataFrame(index=["g"]),
        out_dir=out,
        var_quantization=bits,
        compression=6,
        codec="zlib",
        scheduler="synchronous",
        progress=False,
    )


def _code_of_zero(lo: float, hi: float, bits: int | None) -> Any:
    """The fill element as ``encode_csc`` computes it (0.0 for float32 payloads)."""
    if bits is None:
        return np.float32(0.0)
    span = hi - lo
    scale = kernels.max_code(bits) / span if np.isfinite(span) and span > 0 else 0.0
    lo0 = 0.0 if np.isnan(lo) else lo
    return kernels.codes_for(np.zeros(1), lo0, scale, bits, "nearest")[0]


def _rewrite_with_sparse_encoder(x: sp.csc_matrix, out: Path, case: Case) -> None:
    """Replace every payload of a zlib export by the sparse-aware encoder's member.

    The codes come from ``kernels.encode_block`` (checked equal to what the writer
    wrote) and the fill is the code of zero as ``encode_csc`` computes it (checked
    equal to every unstored cell's code); Python's gzip must inflate each member
    to the exact dense payload before the browser is asked to.
    """
    manifest = json.loads((out / "var_manifest.json").read_text())
    locations = field_locations(manifest)
    payloads = kernels.encode_block(x, case.bits)
    dense = payloads.values
    assert dense is not None
    fills = []
    for k, loc in enumerate(locations):
        written = gzip.decompress((out / loc.path).read_bytes())
        assert written == dense[k].tobytes(), f"{loc.path}: encode_block disagrees"
        fill = _code_of_zero(payloads.lo[k], payloads.hi[k], case.bits)
        stored = x.indices[x.indptr[k] : x.indptr[k + 1]]
        unstored = np.setdiff1d(np.arange(x.shape[0]), stored)
        assert (dense[k][unstored] == fill).all()
        fills.append(fill)
    rows = x.indices
    codes = np.concatenate(
        [dense[k][rows[x.indptr[k] : x.indptr[k + 1]]] for k in range(len(locations))]
    ).astype(dense.dtype)
    n = x.shape[0]
    if case.codec == "direct-csc":
        members = sparse_gzip.gzip_members_csc(codes, rows, x.indptr, n, np.array(fills))
    else:
        members = [
            sparse_gzip.gzip_member_sparse(
                rows[x.indptr[k] : x.indptr[k + 1]],
                codes[x.indptr[k] : x.indptr[k + 1]],
                n,
                fills[k],
            )
            for k in range(len(locations))
        ]
    for k, loc in enumerate(locations):
        assert members[k][:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
        assert gzip.decompress(members[k]) == dense[k].tobytes(), loc.path
        (out / loc.path).write_bytes(members[k])


def _negative_controls(source: Path, out: Path) -> None:
    """A copy of a folder whose first four payloads are broken in ways a browser refuses."""
    shutil.copytree(source, out)
    locations = field_locations(json.loads((out / "var_manifest.json").read_text()))

    def damage(k: int, how: Any) -> None:
        p = out / locations[k].path
        p.write_bytes(bytes(how(bytearray(p.read_bytes()))))

    def flag(b: bytearray) -> bytearray:
        b[3] = 0x20  # a reserved FLG bit: Python's gzip ignores it, browsers refuse it
        return b

    def crc(b: bytearray) -> bytearray:
        b[-8] ^= 0xFF
        return b

    def isize(b: bytearray) -> bytearray:
        b[-4] ^= 0x01
        return b

    def truncate(b: bytearray) -> bytearray:
        return b[:-4]

    for k, how in enumerate((flag, crc, isize, truncate)):
        damage(k, how)


# -- serving and the browser ------------------------------------------------------------


class _Run:
    """What the page posted: each folder's decoded genes (float32 bytes), and a summary."""

    def __init__(self) -> None:
        self.genes: dict[str, bytes] = {}
        self.summary: dict[str, Any] | None = None
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.headers: list[tuple[str, str, str]] = []  # (path, header, value) sent


def _handler(root: Path, run: _Run) -> type[SimpleHTTPRequestHandler]:
    class Handler(SimpleHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: hundreds of small requests
        disable_nagle_algorithm = True  # else each response can wait ~40 ms for an ACK

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def guess_type(self, path: str | os.PathLike[str]) -> str:
            # payloads (.gz or not) are opaque bytes: never Content-Encoding: gzip
            suffix = Path(path).suffix
            return {".html": "text/html", ".json": "application/json"}.get(
                suffix, "application/octet-stream"
            )

        def end_headers(self) -> None:
            self.send_header("Cache-Control", "no-store")
            super().end_headers()

        def send_header(self, keyword: str, value: str) -> None:
            with run.lock:
                run.headers.append((self.path, keyword.lower(), value))
            super().send_header(keyword, value)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query)
            with run.lock:
                if url.path == "/result":
                    run.genes[query["case"][0]] = body
                elif url.path == "/done":
                    run.summary = json.loads(body)
                    run.done.set()
                else:
                    self.send_error(404)
                    return
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # the browser's keep-alive connections are reset when it is stopped
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _chromium() -> str | None:
    return next(
        filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))),
        None,
    )


def _run_browser(browser: str, root: Path, tmp: Path) -> tuple[_Run, float]:
    run = _Run()
    server = _Server(("127.0.0.1", 0), _handler(root, run))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    profile = tmp / "profile"
    profile.mkdir()
    log = tmp / "chromium.log"
    url = f"http://127.0.0.1:{server.server_address[1]}/decode.html"
    start = time.perf_counter()
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", url],
            stdin=subprocess.DEVNULL,
            stdout=err,
            stderr=err,
            start_new_session=True,  # its own process group: stopped as a whole below
        )
    try:
        deadline = start + BROWSER_TIMEOUT
        while not run.done.wait(0.1):
            if proc.poll() is not None or time.perf_counter() > deadline:
                what = f"exited with {proc.returncode}" if proc.poll() is not None else "timed out"
                tail = log.read_text(errors="replace")[-3000:]
                pytest.fail(f"Chromium {what} before the page reported:\n{tail}")
        elapsed = time.perf_counter() - start
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        server.shutdown()
        server.server_close()
        thread.join(10)
    return run, elapsed


@pytest.fixture(scope="module")
def browser_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, _Run, dict[str, str]]:
    browser = _chromium()
    if browser is None:
        msg = "Chromium is not installed (Debian: apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"{msg}; CI must run the browser tests")
        pytest.skip(msg)
    tmp = tmp_path_factory.mktemp("browser")
    root = tmp / "www"
    root.mkdir()
    unavailable: dict[str, str] = {}
    for case in CASES:
        if case.codec not in DIRECT:
            try:
                _export(*INPUTS[case.data](), root / case.name, case)
            except InvalidOptionError as e:  # a codec not wired into this writer (yet)
                unavailable[case.name] = str(e)
    for case in CASES:
        if case.codec in DIRECT:
            base = dataclasses.replace(case, codec="zlib")
            shutil.copytree(root / base.name, root / case.name)
            _rewrite_with_sparse_encoder(INPUTS[case.data]()[0], root / case.name, case)
    _negative_controls(root / "main-q8-key-zlib", root / NEGATIVE)
    for name, (bits, lo, hi) in ORDER.items():
        _order_folder(root / name, bits, lo, hi)
    names = [c.name for c in CASES if c.name not in unavailable] + [NEGATIVE, *ORDER]
    (root / "cases.json").write_text(json.dumps(names))
    shutil.copy(PAGE, root / "decode.html")
    run, elapsed = _run_browser(browser, root, tmp)
    page = (run.summary["endMs"] - run.summary["startMs"]) / 1000
    print(f"browser: {len(names)} folders in {elapsed:.2f} s, {page:.2f} s of it in the page")
    assert run.summary is not None
    assert not run.summary.get("error"), run.summary
    return root, run, unavailable


def _browser_genes(run: _Run, name: str) -> tuple[dict[str, Any], list[np.ndarray | None]]:
    assert run.summary is not None
    (report,) = [c for c in run.summary["cases"] if c["name"] == name]
    assert not report.get("error"), report
    decoded = iter(np.frombuffer(run.genes[name], np.float32).reshape(-1, report["n_points"]))
    values = [next(decoded) if g["ok"] else None for g in report["genes"]]
    assert next(decoded, None) is None
    return report, values


def _assert_close_to_input(got: np.ndarray, want: np.ndarray, bounds: list[Any], bits: Any) -> None:
    if bits is None:  # float32 payloads: the input's values, NaN and Inf included
        np.testing.assert_array_equal(got, want)
        return
    finite = np.isfinite(want)
    np.testing.assert_array_equal(np.isnan(got), ~finite)  # NaN/Inf -> the marker -> NaN
    lo, hi = bounds
    half_step = (hi - lo) / kernels.max_code(bits) / 2
    slack = 4 * np.finfo(np.float32).eps * max(abs(lo), abs(hi), 1e-30)
    err = np.abs(got[finite].astype(np.float64) - want[finite].astype(np.float64))
    assert err.max(initial=0.0) <= half_step + slack, (err.max(), half_step)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_browser_decodes_export(browser_run: tuple[Path, _Run, dict[str, str]], case: Case) -> None:
    root, run, unavailable = browser_run
    if case.name in unavailable:
        pytest.skip(unavailable[case.name])
    folder = root / case.name
    report, values = _browser_genes(run, case.name)
    bad = [g for g in report["genes"] if not g["ok"]]
    assert not bad, f"the browser could not read: {bad}"

    manifest = json.loads((folder / "var_manifest.json").read_text())
    locations = field_locations(manifest)
    assert [g["path"] for g in report["genes"]] == [loc.path for loc in locations]
    ours = dask_cellucid.read_genes(folder)
    x, ids = INPUTS[case.data]()
    assert [g["id"] for g in report["genes"]] == list(ours) == ids
    dense = x.toarray()
    for k, (loc, got) in enumerate(zip(locations, values, strict=True)):
        assert got is not None
        assert got.shape == (x.shape[0],)
        # exactly what our reader decodes (NaN == NaN)
        np.testing.assert_array_equal(got, ours[loc.gene_id], err_msg=loc.path)
        _assert_close_to_input(got, dense[:, k], list(loc.bounds), case.bits)


def test_browser_refuses_broken_members(browser_run: tuple[Path, _Run, dict[str, str]]) -> None:
    """The harness sees DecompressionStream's refusals (else a pass would mean little)."""
    _, run, _ = browser_run
    report, values = _browser_genes(run, NEGATIVE)
    broken = {0: "reserved flag", 1: "bad CRC", 2: "bad ISIZE", 3: "truncated"}
    refused = {g["i"] for g in report["genes"] if not g["ok"]}
    assert refused == set(broken), [(g["i"], g.get("error")) for g in report["genes"]]
    assert all(v is not None for k, v in enumerate(values) if k not in broken)


def test_served_without_content_encoding(browser_run: tuple[Path, _Run, dict[str, str]]) -> None:
    """Payloads went out as application/octet-stream, the way object storage must serve them."""
    _, run, _ = browser_run
    payloads = [(h, v) for p, h, v in run.headers if "/var/" in p and h.startswith("content-")]
    assert {v for h, v in payloads if h == "content-type"} == {"application/octet-stream"}
    assert not [v for h, v in payloads if h == "content-encoding"]


def _order_case(run: _Run, root: Path, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(browser's values, the spec's formula left to right, the other order) for ORDER[name]."""
    bits, lo, hi = ORDER[name]
    report, (got,) = _browser_genes(run, name)
    assert got is not None, report
    manifest = json.loads((root / name / "var_manifest.json").read_text())
    (loc,) = field_locations(manifest)
    assert list(loc.bounds) == [lo, hi]
    raw = gzip.decompress((root / name / loc.path).read_bytes())
    codes = np.frombuffer(raw, kernels.code_dtype(bits)).astype(np.float64)
    top = kernels.max_code(bits)
    spec = (lo + (codes * (hi - lo)) / top).astype(np.float32)
    return got, spec, (lo + codes * ((hi - lo) / top)).astype(np.float32)


@pytest.mark.parametrize("name", list(ORDER))
def test_browser_decodes_with_the_spec_formula(
    browser_run: tuple[Path, _Run, dict[str, str]], name: str
) -> None:
    """The page evaluates the spec's formula as written; these bounds tell the orders apart."""
    root, run, _ = browser_run
    got, spec, other = _order_case(run, root, name)
    assert (spec != other).sum() == 1  # the case does tell the two orders apart
    np.testing.assert_array_equal(got, spec)


@pytest.mark.parametrize("name", list(ORDER))
def test_read_genes_matches_browser_formula_order(
    browser_run: tuple[Path, _Run, dict[str, str]], name: str
) -> None:
    root, run, _ = browser_run
    got, _, _ = _order_case(run, root, name)
    np.testing.assert_array_equal(got, dask_cellucid.read_genes(root / name)["g"])
