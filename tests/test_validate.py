"""``validate``: every corruption of a folder is found, with a message that names it.

Folders are written by our exporter and by cellucid 0.9.2's own ``prepare``,
then damaged byte by byte the way real accidents damage them (a partial copy,
a hand-edited manifest, a second gzip member appended by a naive tool).
"""

from __future__ import annotations

import gzip
import json
import struct
import subprocess
import warnings
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from dask_cellucid import ExportWarning, prepare, validate, verify
from dask_cellucid.cli import main
from dask_cellucid.codecs import inflate

N_CELLS = 120
GENES = ["Cd4", "A_B", "const", "empty", "G.5", "neg"]


def _matrix() -> np.ndarray:
    rng = np.random.default_rng(3)
    x = rng.gamma(1.0, 2.0, size=(N_CELLS, len(GENES))).astype(np.float32)
    x[rng.random(x.shape) < 0.4] = 0.0
    x[:, 2] = 4.25  # constant
    x[:, 3] = np.nan  # no finite value
    x[:, 5] -= 3.0  # negative values
    x[7, 0] = np.nan
    return x


def _export(out: Path, **kw: object) -> Path:
    opts: dict[str, object] = {"var_quantization": 8, "compression": 6, "layout": "key"}
    opts.update(kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExportWarning)
        prepare(_matrix(), GENES, out_dir=out, **opts)  # type: ignore[arg-type]
    return out


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A good key-layout export, 8-bit, gzip 6."""
    return _export(tmp_path / "out")


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "var_manifest.json").read_text())


def _write_manifest(folder: Path, doc: dict, **dump: object) -> None:
    (folder / "var_manifest.json").write_text(json.dumps(doc, **dump))  # type: ignore[arg-type]


def _messages(report: object) -> list[str]:
    return [str(p) for p in report.problems]  # type: ignore[attr-defined]


def _only(report: object, *needles: str) -> str:
    """The report has exactly one problem and it contains every needle."""
    msgs = _messages(report)
    assert len(msgs) == 1, msgs
    for needle in needles:
        assert needle in msgs[0], msgs[0]
    return msgs[0]


# -- good folders pass ----------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["key", "index"])
@pytest.mark.parametrize("bits", [8, 16, None])
@pytest.mark.parametrize("compression", [None, 6])
def test_our_exports_pass(
    tmp_path: Path, layout: str, bits: int | None, compression: int | None
) -> None:
    out = _export(tmp_path / "o", layout=layout, var_quantization=bits, compression=compression)
    report = validate(out)
    assert report.ok, str(report)
    assert report.problems == []
    assert (report.n_genes, report.n_cells, report.layout) == (len(GENES), N_CELLS, layout)
    assert "OK" in str(report)


def test_folder_with_embedding_passes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExportWarning)
        prepare(
            _matrix(),
            GENES,
            out_dir=tmp_path,
            var_quantization=16,
            compression=6,
            X_umap_2d=rng.normal(size=(N_CELLS, 2)),
            X_umap_3d=rng.normal(size=(N_CELLS, 3)),
        )
    report = validate(tmp_path)
    assert report.ok, str(report)


def _cellucid_folder(
    out: Path, bits: int | None, compression: int | None
) -> tuple[np.ndarray, list[str]]:
    cellucid = pytest.importorskip("cellucid")
    rng = np.random.default_rng(5)
    x = rng.gamma(1.0, 2.0, size=(90, 7)).astype(np.float32)
    x[rng.random(x.shape) < 0.5] = 0
    x[:, 2] = 1.5
    names = [f"gene {i}" for i in range(7)]  # spaces are fine in the index layout
    obs = pd.DataFrame(
        {"kind": pd.Categorical(rng.choice(["a", "b"], 90)), "score": rng.normal(size=90)},
        index=[f"c{i}" for i in range(90)],
    )
    cellucid.prepare(
        latent_space=rng.normal(size=(90, 4)),
        obs=obs,
        var=pd.DataFrame(index=names),
        gene_expression=x,
        out_dir=out,
        var_quantization=bits,
        compression=compression,
        obs_categorical_dtype="uint8",
        dataset_name="ref",
        dataset_id="ref",
        X_umap_2d=rng.normal(size=(90, 2)),
        force=True,
    )
    return x, names


@pytest.mark.parametrize(("bits", "compression"), [(8, 6), (16, None), (None, 6)])
def test_cellucid_prepare_output_passes(
    tmp_path: Path, bits: int | None, compression: int | None
) -> None:
    _cellucid_folder(tmp_path / "ref", bits, compression)
    report = validate(tmp_path / "ref")
    assert report.ok, str(report)
    assert report.layout == "index"
    assert report.n_genes == 7


def test_cellucid_prepare_output_fails_for_the_right_reason(tmp_path: Path) -> None:
    _cellucid_folder(tmp_path / "ref", 8, 6)
    payload = tmp_path / "ref" / "var" / "3.values.u8.gz"
    raw = bytearray(payload.read_bytes())
    raw[-4:] = struct.pack("<I", 1234)
    payload.write_bytes(bytes(raw))
    identity = json.loads((tmp_path / "ref" / "dataset_identity.json").read_text())
    identity["stats"]["n_genes"] = 6
    (tmp_path / "ref" / "dataset_identity.json").write_text(json.dumps(identity))
    report = validate(tmp_path / "ref")
    msgs = _messages(report)
    assert len(msgs) == 2, msgs
    assert msgs[0].startswith("var/3.values.u8.gz: ")
    assert "ISIZE field says 1234 bytes but the member decompresses to 90" in msgs[0]
    assert "gene 'gene 3'" in msgs[0]
    assert "dataset_identity.json: stats.n_genes is 6 but var_manifest.json lists 7" in msgs[1]


def test_cellucid_009_output_passes(tmp_path: Path, oracle_009: Path) -> None:
    """The ``key`` layout's reference writer (cellucid 0.0.9, in its own venv)."""
    x = sp.csr_matrix(np.nan_to_num(_matrix()))
    names = ["CD3E", "A/B", "x y", "Gene.1", "_lead", "n5"]
    src = tmp_path / "x.npz"
    np.savez(src, data=x.data, indices=x.indices, indptr=x.indptr, shape=x.shape, genes=names)
    script = Path(__file__).resolve().parent / "oracles" / "cellucid009_export.py"
    out = tmp_path / "ref"
    subprocess.run(
        [str(oracle_009), str(script), str(src), str(out), "8", "6"],
        check=True,
        timeout=600,
        capture_output=True,
    )
    report = validate(out)
    assert report.ok, str(report)
    assert report.layout == "key"
    # it truncates in float32 without a nudge: within one step, not half
    assert verify(out, x, names, tolerance=1).ok
    assert not verify(out, x, names).ok
    p = out / "var" / "x_y.values.u8.gz"
    p.write_bytes(p.read_bytes()[:-1])
    _only(validate(out), "var/x_y.values.u8.gz", "truncated", "gene 'x y'")


# -- payload corruptions --------------------------------------------------------------------
def test_truncated_gzip_payload(folder: Path) -> None:
    p = folder / "var" / "Cd4.values.u8.gz"
    p.write_bytes(p.read_bytes()[:-30])
    report = validate(folder)
    assert not report.ok
    _only(report, "var/Cd4.values.u8.gz", "truncated", "gene 'Cd4'")


def test_truncated_raw_payload(tmp_path: Path) -> None:
    out = _export(tmp_path / "o", compression=None, var_quantization=16)
    p = out / "var" / "neg.values.u16"
    p.write_bytes(p.read_bytes()[:-2])
    _only(
        validate(out),
        "var/neg.values.u16",
        f"holds {2 * N_CELLS - 2} bytes",
        f"{2 * N_CELLS} expected",
        "truncated",
        "gene 'neg'",
    )


def test_payload_swapped_with_a_constant_gene(folder: Path) -> None:
    a, b = folder / "var" / "Cd4.values.u8.gz", folder / "var" / "const.values.u8.gz"
    ra, rb = a.read_bytes(), b.read_bytes()
    a.write_bytes(rb)
    b.write_bytes(ra)
    # 'const' is written [v, v + 1] with all codes 0 in the key layout, so its
    # slot may hold a full-range payload; 'Cd4' cannot hold all zeros.
    _only(validate(folder), "var/Cd4.values.u8.gz", "every code is 0", "another gene", "gene 'Cd4'")


def test_payload_swapped_index_layout_both_found(tmp_path: Path) -> None:
    out = _export(tmp_path / "o", layout="index")
    a, b = out / "var" / "0.values.u8.gz", out / "var" / "2.values.u8.gz"  # Cd4, const
    ra, rb = a.read_bytes(), b.read_bytes()
    a.write_bytes(rb)
    b.write_bytes(ra)
    msgs = _messages(validate(out))
    assert len(msgs) == 2, msgs
    assert msgs[0].startswith("var/0.values.u8.gz: every code is 0")
    assert msgs[1].startswith("var/2.values.u8.gz: bounds [4.25, 4.25] say the gene is constant")


def test_gzip_with_two_members(folder: Path) -> None:
    p = folder / "var" / "G.5.values.u8.gz"
    data = gzip.decompress(p.read_bytes())
    p.write_bytes(gzip.compress(data[:50]) + gzip.compress(data[50:]))
    _only(validate(folder), "var/G.5.values.u8.gz", "holds 2 gzip members", "exactly one")


def test_wrong_isize(folder: Path) -> None:
    p = folder / "var" / "A_B.values.u8.gz"
    raw = bytearray(p.read_bytes())
    raw[-4:] = struct.pack("<I", N_CELLS + 1)
    p.write_bytes(bytes(raw))
    _only(
        validate(folder),
        "var/A_B.values.u8.gz",
        f"ISIZE field says {N_CELLS + 1} bytes but the member decompresses to {N_CELLS}",
    )


def test_corrupt_crc_and_stray_bytes(folder: Path) -> None:
    p = folder / "var" / "A_B.values.u8.gz"
    raw = bytearray(p.read_bytes())
    raw[-8] ^= 0xFF
    p.write_bytes(bytes(raw) + b"junk")
    msgs = _messages(validate(folder))
    assert len(msgs) == 2, msgs
    assert "CRC-32" in msgs[0]
    assert "4 stray byte(s) after the gzip member" in msgs[1]


def test_not_gzip_at_all(folder: Path) -> None:
    p = folder / "var" / "A_B.values.u8.gz"
    p.write_bytes(gzip.decompress(p.read_bytes()))
    _only(validate(folder), "var/A_B.values.u8.gz", "magic bytes 1f 8b")


def test_missing_payload(folder: Path) -> None:
    (folder / "var" / "neg.values.u8.gz").unlink()
    _only(validate(folder), "var/neg.values.u8.gz: is missing (gene 'neg' names it)")


def test_stray_file_is_a_warning_only(folder: Path) -> None:
    (folder / "var" / "old.values.u8.gz").write_bytes(b"x")
    report = validate(folder)
    assert report.ok, str(report)
    assert len(report.warnings) == 1
    assert "var/old.values.u8.gz" in str(report.warnings[0])


# -- manifest corruptions -------------------------------------------------------------------
def test_manifest_with_an_extra_key(folder: Path) -> None:
    doc = _manifest(folder)
    doc["generator"] = "me"
    _write_manifest(folder, doc)
    _only(validate(folder), "var_manifest.json", "has the key(s) ['generator']", "seven")


def test_manifest_missing_a_key(folder: Path) -> None:
    doc = _manifest(folder)
    del doc["var_gene_id_column"]
    _write_manifest(folder, doc)
    _only(validate(folder), "lacks the required key(s) ['var_gene_id_column']")


def test_nan_in_bounds(folder: Path) -> None:
    doc = _manifest(folder)
    doc["fields"][4][1] = float("nan")
    _write_manifest(folder, doc)  # json.dumps writes the NaN token
    msgs = _messages(validate(folder))
    assert len(msgs) == 2, msgs
    assert "non-JSON number(s) ['NaN']" in msgs[0]
    assert "gene 'G.5': bounds [nan, " in msgs[1]
    assert "are not finite" in msgs[1]


def test_bounds_out_of_order(folder: Path) -> None:
    doc = _manifest(folder)
    doc["fields"][0][1:] = [5.0, 5.0]  # key layout wants min < max
    _write_manifest(folder, doc)
    msgs = _messages(validate(folder))
    assert any(
        "gene 'Cd4': bounds [5.0, 5.0] must have min < max in the 'key' layout" in m for m in msgs
    ), msgs


def test_duplicate_id(folder: Path) -> None:
    doc = _manifest(folder)
    doc["fields"][4][0] = "Cd4"
    _write_manifest(folder, doc)
    _only(validate(folder), "1 gene id(s) occur more than once: 'Cd4' (2 times)")


def test_key_layout_name_collision(folder: Path) -> None:
    doc = _manifest(folder)
    doc["fields"][4][0] = "A/B"  # sanitizes to A_B, the file of gene 'A_B'
    _write_manifest(folder, doc)
    _only(validate(folder), "gene ids 'A_B', 'A/B' all become the file var/A_B.values.u8.gz")


def test_key_layout_case_collision(folder: Path) -> None:
    (folder / "var" / "G.5.values.u8.gz").rename(folder / "var" / "cd4.values.u8.gz")
    doc = _manifest(folder)
    doc["fields"][4][0] = "cd4"
    _write_manifest(folder, doc)
    _only(
        validate(folder),
        "var/Cd4.values.u8.gz",
        "var/cd4.values.u8.gz",
        "letter case",
        "macOS and Windows",
    )


def test_key_layout_unusable_id(folder: Path) -> None:
    doc = _manifest(folder)
    doc["fields"][4][0] = "基因"
    _write_manifest(folder, doc)
    _only(validate(folder), "gene '基因'", "no character usable in a file name")


def test_index_layout_rules(tmp_path: Path) -> None:
    out = _export(tmp_path / "o", layout="index")
    doc = _manifest(out)
    doc["fields"][1][0] = 7
    doc["fields"][2][1] = " const"
    doc["fields"][3][1] = "em\tpty"
    doc["fields"][4][1] = ""
    _write_manifest(out, doc)
    msgs = _messages(validate(out))
    assert len(msgs) == 5, msgs
    assert "gene 'A_B' (fields[1]) has index 7; indices must be exactly 0..N-1" in msgs[0]
    assert "gene ' const' (fields[2]) has leading or trailing white space" in msgs[1]
    assert "gene 'em\\tpty' (fields[3]) holds control characters" in msgs[2]
    assert "fields[4] has an empty name" in msgs[3]
    assert msgs[4].startswith("var/7.values.u8.gz: is missing")


def test_schema_mismatches(folder: Path) -> None:
    doc = _manifest(folder)
    doc["_varSchema"]["pathPattern"] = "var/{key}.values.u8"  # .gz dropped, compression on
    doc["quantization"] = 16
    _write_manifest(folder, doc)
    msgs = _messages(validate(folder))
    assert any("_varSchema.dtype 'uint8' does not match quantization 16" in m for m in msgs)
    assert any(
        "pathPattern is 'var/{key}.values.u8'" in m and "'.gz' if and only if" in m for m in msgs
    ), msgs


def test_every_problem_is_reported(folder: Path) -> None:
    doc = _manifest(folder)
    doc["extra"] = 1
    doc["fields"][1][0] = "Cd4"  # duplicate of fields[0] (and A_B's file now unnamed)
    _write_manifest(folder, doc)
    (folder / "var" / "neg.values.u8.gz").unlink()
    p = folder / "var" / "G.5.values.u8.gz"
    p.write_bytes(p.read_bytes()[:-20])
    report = validate(folder)
    text = str(report)
    assert len(report.problems) == 4, text
    for needle in (
        "['extra']",
        "'Cd4' (2 times)",
        "neg.values.u8.gz: is missing",
        "G.5.values.u8.gz: truncated",
    ):
        assert needle in text
    assert "4 problem(s)" in text


def test_manifest_not_json(folder: Path) -> None:
    (folder / "var_manifest.json").write_text('{"_format": "compact_v1", ')
    _only(validate(folder), "var_manifest.json: is not valid JSON")


def test_no_manifest(tmp_path: Path) -> None:
    _only(validate(tmp_path), "var_manifest.json", "not an export folder")


def test_unfinished_export_journal_warns(folder: Path) -> None:
    (folder / ".dask-cellucid").mkdir()
    (folder / ".dask-cellucid" / "export.json").write_text("{}")
    report = validate(folder)
    assert report.ok
    assert any("journal" in str(w) for w in report.warnings)


# -- the rest of the folder -----------------------------------------------------------------
def test_identity_and_obs_manifest_consistency(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExportWarning)
        prepare(
            _matrix(),
            GENES,
            out_dir=tmp_path,
            var_quantization=8,
            compression=6,
            X_umap_2d=rng.normal(size=(N_CELLS, 2)),
        )
    ident = json.loads((tmp_path / "dataset_identity.json").read_text())
    ident["export_settings"]["var_quantization"] = 16
    ident["stats"]["n_cells"] = N_CELLS + 1
    ident["color"] = "red"
    (tmp_path / "dataset_identity.json").write_text(json.dumps(ident))
    obs = json.loads((tmp_path / "obs_manifest.json").read_text())
    obs["compression"] = None
    (tmp_path / "obs_manifest.json").write_text(json.dumps(obs))
    pts = tmp_path / "points_2d.bin.gz"
    pts.write_bytes(gzip.compress(gzip.decompress(pts.read_bytes())[:-4]))
    msgs = _messages(validate(tmp_path))
    expected = [
        "dataset_identity.json: it has the key(s) ['color'] the format does not allow",
        f"stats.n_cells is {N_CELLS + 1} but var_manifest.json has n_points={N_CELLS}",
        "export_settings.var_quantization is 16 but var_manifest.json says quantization=8",
        f"points_2d.bin.gz: holds {N_CELLS * 8 - 4:,} bytes",
        "obs_manifest.json: compression is None but var_manifest.json says 6",
    ]
    assert len(msgs) == len(expected), msgs
    for needle in expected:
        assert any(needle in m for m in msgs), (needle, msgs)


# -- the gzip checker on its own ------------------------------------------------------------
def test_inflate_accepts_any_single_member() -> None:
    data = bytes(range(256)) * 10
    for member in (gzip.compress(data, mtime=12345), _zlib_gzip(data)):
        assert inflate(member) == (data, [])
    named = gzip.GzipFile(filename="x.bin", mode="wb", fileobj=(buf := _Buf()), mtime=1)
    named.write(data)
    named.close()
    assert inflate(buf.value) == (data, [])


class _Buf:
    def __init__(self) -> None:
        self.value = b""

    def write(self, b: bytes) -> int:
        self.value += bytes(b)
        return len(b)

    def flush(self) -> None:
        pass


def _zlib_gzip(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    return c.compress(data) + c.flush()


def test_inflate_reports_empty_and_short() -> None:
    assert inflate(b"") == (None, ["the file is empty"])
    data, problems = inflate(b"\x1f\x8b\x08\x00")
    assert data is None
    assert "truncated" in problems[0]


# -- command line and object storage --------------------------------------------------------
def test_cli_validate_exit_status(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(folder)]) == 0
    assert "OK, no problem found" in capsys.readouterr().out
    (folder / "var" / "neg.values.u8.gz").unlink()
    (folder / "var" / "Cd4.values.u8.gz").write_bytes(b"")
    assert main(["validate", str(folder)]) == 1
    out = capsys.readouterr().out
    assert "2 problem(s)" in out
    assert "var/neg.values.u8.gz: is missing" in out
    assert "var/Cd4.values.u8.gz: the file is empty" in out


@pytest.mark.s3
def test_validate_on_s3(tmp_path: Path, s3_bucket: object) -> None:
    bucket = s3_bucket
    url, opts = bucket.url(), bucket.storage_options  # type: ignore[attr-defined]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExportWarning)
        prepare(
            _matrix(), GENES, out_dir=url, storage_options=opts, var_quantization=8, compression=6
        )
    assert validate(url, storage_options=opts).ok
    key = "out/var/A_B.values.u8.gz"
    body = bucket.boto.get_object(Bucket=bucket.bucket, Key=key)["Body"].read()  # type: ignore[attr-defined]
    bucket.boto.put_object(Bucket=bucket.bucket, Key=key, Body=body[:-10])  # type: ignore[attr-defined]
    bucket.boto.delete_object(Bucket=bucket.bucket, Key="out/var/neg.values.u8.gz")  # type: ignore[attr-defined]
    report = validate(url, storage_options=opts)
    msgs = _messages(report)
    assert len(msgs) == 2, msgs
    assert msgs[0].startswith("var/A_B.values.u8.gz: truncated")
    assert msgs[1] == "var/neg.values.u8.gz: is missing (gene 'neg' names it)"


def test_obs_manifest_without_fields_has_fixed_keys(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExportWarning)
        prepare(_matrix(), GENES, out_dir=tmp_path, X_umap_2d=rng.normal(size=(N_CELLS, 2)))
    obs = json.loads((tmp_path / "obs_manifest.json").read_text())
    obs["centroid_outlier_quantile"] = 0.95  # inert without fields, as cellucid writes it
    obs["latent_key"] = "latent_space"
    (tmp_path / "obs_manifest.json").write_text(json.dumps(obs))
    assert validate(tmp_path).ok
    obs["_obsSchemas"] = {"continuous": {}}
    obs["extra"] = True
    (tmp_path / "obs_manifest.json").write_text(json.dumps(obs))
    msgs = _messages(validate(tmp_path))
    assert msgs == [
        "obs_manifest.json: with no obs field, it has the key(s) ['extra'] the format does "
        "not allow",
        "obs_manifest.json: with no obs field, ['_obsSchemas'] must be [{}]",
    ]
