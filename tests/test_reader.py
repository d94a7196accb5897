"""``read_gene``/``read_genes`` decode as the viewer does.

The folders here are written by hand, byte by byte, from the spec (not by our
writer), and the expected values are the spec's formula worked out by hand.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from dask_cellucid import GeneIdError, read_gene, read_genes, read_manifest


def _folder(root: Path, *, layout: str, bits: int | None, gz: bool, genes: dict) -> Path:
    """Write a manifest and payloads; ``genes`` maps id -> (payload array, bounds or None)."""
    ext = {None: "f32", 8: "u8", 16: "u16"}[bits]
    dtype = {None: "float32", 8: "uint8", 16: "uint16"}[bits]
    suffix = ".gz" if gz else ""
    placeholder = "{key}" if layout == "key" else "{index}"
    schema = {
        "kind": "continuous",
        "pathPattern": f"var/{placeholder}.values.{ext}{suffix}",
        "ext": ext,
        "dtype": dtype,
        "quantized": bits is not None,
    }
    if bits is not None:
        schema["quantizationBits"] = bits
    fields, n = [], None
    (root / "var").mkdir(parents=True)
    for i, (gid, (payload, bounds)) in enumerate(genes.items()):
        n = len(payload)
        stem = gid.replace("/", "_") if layout == "key" else str(i)
        raw = payload.tobytes()
        (root / "var" / f"{stem}.values.{ext}{suffix}").write_bytes(
            gzip.compress(raw, mtime=0) if gz else raw
        )
        head = [gid] if layout == "key" else [i, gid]
        fields.append(head + (list(bounds) if bounds is not None else []))
    doc = {
        "_format": "compact_v1",
        "n_points": n,
        "var_gene_id_column": None,
        "compression": 6 if gz else None,
        "quantization": bits,
        "_varSchema": schema,
        "fields": fields,
    }
    (root / "var_manifest.json").write_text(json.dumps(doc))
    return root


@pytest.mark.parametrize("layout", ["key", "index"])
@pytest.mark.parametrize("gz", [False, True])
def test_8_bit_decode_formula(tmp_path: Path, layout: str, gz: bool) -> None:
    codes = np.array([0, 127, 254, 255, 1], np.uint8)
    out = _folder(
        tmp_path,
        layout=layout,
        bits=8,
        gz=gz,
        genes={"A/B": (codes, (-1.0, 1.0)), "x": (codes[::-1].copy(), (2.0, 4.54))},
    )
    got = read_gene(out, "A/B")
    assert got.dtype == np.float32
    want = np.array([-1.0, -1.0 + 127 * 2 / 254, 1.0, np.nan, -1.0 + 2 / 254], np.float32)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(
        read_gene(out, "x"),
        np.array([2.0 + 1 * 2.54 / 254, np.nan, 4.54, 2.0 + 127 * 2.54 / 254, 2.0], np.float32),
    )


def test_16_bit_decode_formula(tmp_path: Path) -> None:
    codes = np.array([0, 65534, 65535, 32767], "<u2")
    out = _folder(tmp_path, layout="index", bits=16, gz=True, genes={"g": (codes, (10.0, 20.0))})
    np.testing.assert_array_equal(
        read_gene(out, "g"), np.array([10.0, 20.0, np.nan, 10.0 + 32767 * 10 / 65534], np.float32)
    )


def test_constant_genes_decode_exactly(tmp_path: Path) -> None:
    zeros = np.zeros(4, np.uint8)
    key = _folder(
        tmp_path / "k", layout="key", bits=8, gz=False, genes={"c": (zeros, (0.3, 1.3))}
    )  # key layout writes [v, v + 1]
    idx = _folder(
        tmp_path / "i", layout="index", bits=8, gz=False, genes={"c": (zeros, (0.3, 0.3))}
    )  # index layout writes [v, v]
    np.testing.assert_array_equal(read_gene(key, "c"), np.full(4, 0.3, np.float32))
    np.testing.assert_array_equal(read_gene(idx, "c"), np.full(4, 0.3, np.float32))


def test_float32_comes_back_as_written(tmp_path: Path) -> None:
    v = np.array([1.5, -0.0, np.inf, np.nan, 3e-38], "<f4")
    out = _folder(tmp_path, layout="key", bits=None, gz=True, genes={"f": (v, None)})
    got = read_gene(out, "f")
    assert got.view("<u4")[:3].tolist() == v.view("<u4")[:3].tolist()
    assert np.isnan(got[3])
    assert got[4] == np.float32(3e-38)


def test_read_genes_all_and_some(tmp_path: Path) -> None:
    genes = {f"g{i}": (np.full(3, i, np.uint8), (0.0, 254.0)) for i in range(5)}
    out = _folder(tmp_path, layout="key", bits=8, gz=True, genes=genes)
    every = read_genes(out)
    assert list(every) == [f"g{i}" for i in range(5)]
    assert every["g3"].tolist() == [3.0, 3.0, 3.0]
    some = read_genes(out, ["g4", "g1"])
    assert list(some) == ["g4", "g1"]
    assert read_manifest(out)["n_points"] == 3


def test_unknown_gene_and_missing_payload(tmp_path: Path) -> None:
    out = _folder(
        tmp_path,
        layout="key",
        bits=8,
        gz=False,
        genes={"a": (np.zeros(3, np.uint8), (0.0, 1.0)), "b": (np.zeros(3, np.uint8), (0.0, 1.0))},
    )
    with pytest.raises(GeneIdError, match=r"not in this export's manifest: \['nope'\]"):
        read_genes(out, ["a", "nope"])
    (out / "var" / "b.values.u8").unlink()
    with pytest.raises(FileNotFoundError, match=r"var/b.values.u8 \(gene 'b'\)"):
        read_gene(out, "b")
    with pytest.raises(FileNotFoundError, match=r"no var_manifest\.json"):
        read_gene(tmp_path / "elsewhere", "a")


@pytest.mark.s3
def test_read_from_s3(tmp_path: Path, s3_bucket: object) -> None:
    codes = np.array([0, 254, 255], np.uint8)
    local = _folder(
        tmp_path / "f",
        layout="index",
        bits=8,
        gz=True,
        genes={"g": (codes, (1.0, 3.0)), "h": (codes[::-1].copy(), (0.0, 1.0))},
    )
    boto, bucket = s3_bucket.boto, s3_bucket.bucket  # type: ignore[attr-defined]
    for p in local.rglob("*"):
        if p.is_file():
            boto.put_object(
                Bucket=bucket, Key=f"out/{p.relative_to(local).as_posix()}", Body=p.read_bytes()
            )
    got = read_genes(s3_bucket.url(), storage_options=s3_bucket.storage_options)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(got["g"], np.array([1.0, 3.0, np.nan], np.float32))
    np.testing.assert_array_equal(got["h"], np.array([np.nan, 1.0, 0.0], np.float32))
