"""Run inside the cellucid==0.9.5 venv: compare our store with what cellucid.prepare writes.

Usage: python oracle_095_script.py '[["ours.zarr", "ref.zarr", {prepare kwargs}], ...]'
Prints a JSON list of reports on stdout, one per store. A store is a ``.zarr``
folder (zarr v2 or v3) or a ``.zarr.zip`` file; ``ref`` takes the same suffix, and
the kwargs carry ``zarr_format``. A job ``["refuse", "out.zarr", {prepare kwargs}]``
instead reports how cellucid.prepare refuses those arguments (on a small AnnData).
"""

import json
import sys
import zipfile
from pathlib import Path

import anndata
import cellucid
import numpy as np
import zarr
from cellucid import _anndata_files as files


def listing(root: Path) -> dict[str, bytes]:
    if root.is_file():
        with zipfile.ZipFile(root) as z:
            return {name: z.read(name) for name in z.namelist()}
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def consolidated(files: dict[str, bytes]) -> dict:
    """The consolidated metadata: .zmetadata's, or the root zarr.json's (v3)."""
    if ".zmetadata" in files:
        return json.loads(files[".zmetadata"])
    return json.loads(files["zarr.json"])


def nodes(document: dict) -> dict:
    if "metadata" in document:
        return document["metadata"]
    return {
        "": {k: v for k, v in document.items() if k != "consolidated_metadata"},
        **document["consolidated_metadata"]["metadata"],
    }


def open_root(path: Path):
    if path.is_file():
        return zarr.open_group(zarr.storage.ZipStore(path, mode="r"), mode="r")
    return zarr.open_group(str(path), mode="r")


def refuse(kwargs: dict) -> dict:
    """How cellucid.prepare refuses ``kwargs`` (with a small AnnData), or that it does not."""
    import tempfile

    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    adata = anndata.AnnData(
        X=sp.random(20, 5, density=0.5, format="csr", random_state=0, dtype=np.float32),
        obsm={"X_umap": rng.normal(size=(20, 2))},
    )
    adata.var_names = [f"G{j}" for j in range(5)]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / kwargs.pop("out")
        try:
            cellucid.prepare(out, data=adata, **kwargs)
        except (TypeError, ValueError) as err:
            return {"refused": type(err).__name__, "message": str(err), "written": out.exists()}
        return {"refused": None, "written": out.exists()}


def arrays(group: zarr.Group, prefix: str = "") -> dict[str, np.ndarray]:
    out = {}
    for name, item in group.members():
        path = f"{prefix}{name}"
        if isinstance(item, zarr.Group):
            out.update(arrays(item, path + "/"))
        else:
            out[path] = np.asarray(item[...])
    return out


def main() -> None:
    reports = [
        refuse({"out": b, **kw}) if a == "refuse" else compare(Path(a), Path(b), kw)
        for a, b, kw in json.loads(sys.argv[1])
    ]
    sys.stdout.write(json.dumps(reports))


def compare(ours: Path, ref: Path, kwargs: dict) -> dict:
    report: dict = {}
    cellucid.AnnDataServer(str(ours), serve_web_ui=False, quiet=True)
    report["server"] = True
    store = files.classify_anndata_path(str(ours))
    report["undecodable"] = [str(x) for x in files.browser_undecodable(store)]
    report["zip_root"] = store.zip_root if ours.is_file() else None
    adata = files.read_into_memory(store)
    fmt = "zarr.zip" if ours.name.endswith(".zarr.zip") else "zarr"
    cellucid.prepare(ref, format=fmt, data=adata, **kwargs)
    fa, fb = listing(ours), listing(ref)
    a, b = consolidated(fa), consolidated(fb)
    report["zarr_format"] = 2 if ".zmetadata" in fa else 3
    report["zmetadata_equal"] = a == b
    ma, mb = nodes(a), nodes(b)
    report["zmetadata_diff"] = sorted(k for k in set(ma) | set(mb) if ma.get(k) != mb.get(k))[:20]
    report["only_ours"] = sorted(set(fa) - set(fb))[:20]
    report["only_ref"] = sorted(set(fb) - set(fa))[:20]
    report["bytes_differ"] = sorted(k for k in set(fa) & set(fb) if fa[k] != fb[k])[:20]
    report["n_files"] = len(fa)
    if ours.is_file():
        report["same_entry_order"] = list(fa) == list(fb)
        report["same_archive_bytes"] = ours.read_bytes() == ref.read_bytes()
    xa = arrays(open_root(ours))
    xb = arrays(open_root(ref))
    report["arrays_differ"] = sorted(
        k
        for k in set(xa) | set(xb)
        if k not in xa
        or k not in xb
        or xa[k].dtype != xb[k].dtype
        or xa[k].shape != xb[k].shape
        or not np.array_equal(xa[k], xb[k])
    )
    report["n_arrays"] = len(xa)
    return report


if __name__ == "__main__":
    main()
