"""Run inside the cellucid==0.9.5 venv: compare our store with what cellucid.prepare writes.

Usage: python oracle_095_script.py '[["ours.zarr", "ref.zarr", {prepare kwargs}], ...]'
Prints a JSON list of reports on stdout, one per store.
"""

import json
import sys
from pathlib import Path

import anndata
import cellucid
import numpy as np
import zarr
from cellucid import _anndata_files as files


def listing(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


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
    reports = [compare(Path(a), Path(b), kw) for a, b, kw in json.loads(sys.argv[1])]
    sys.stdout.write(json.dumps(reports))


def compare(ours: Path, ref: Path, kwargs: dict) -> dict:
    report: dict = {}
    cellucid.AnnDataServer(str(ours), serve_web_ui=False, quiet=True)
    report["server"] = True
    report["undecodable"] = [
        str(x) for x in files.browser_undecodable(files.classify_anndata_path(str(ours)))
    ]
    adata = anndata.read_zarr(ours)
    cellucid.prepare(ref, format="zarr", data=adata, **kwargs)
    a = json.loads((ours / ".zmetadata").read_text())
    b = json.loads((ref / ".zmetadata").read_text())
    report["zmetadata_equal"] = a == b
    ma, mb = a["metadata"], b["metadata"]
    report["zmetadata_diff"] = sorted(k for k in set(ma) | set(mb) if ma.get(k) != mb.get(k))[:20]
    fa, fb = listing(ours), listing(ref)
    report["only_ours"] = sorted(set(fa) - set(fb))[:20]
    report["only_ref"] = sorted(set(fb) - set(fa))[:20]
    report["bytes_differ"] = sorted(k for k in set(fa) & set(fb) if fa[k] != fb[k])[:20]
    report["n_files"] = len(fa)
    xa = arrays(zarr.open_group(str(ours), mode="r"))
    xb = arrays(zarr.open_group(str(ref), mode="r"))
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
