"""The user guide cannot rot: its examples run, and its names exist.

- code blocks marked ``:class: runnable`` in ``docs/*.md`` are executed, page by
  page, in a fresh folder (Python blocks share one namespace per page; shell
  blocks may only call ``dask-cellucid``, run in-process), and the quick start's
  folder listing is what the demo writes;
- the guide's and troubleshooting page's other Python examples run too, on a
  small scanpy-shaped ``adata`` (all but the S3 one);
- every Python block parses, and its calls to ``prepare`` (ours and
  ``cellucid.prepare``) use only keywords that exist; so do the ``name=value``
  spans and ``--options`` quoted in the text;
- every error and warning message the troubleshooting page quotes is one the
  code gives;
- the API reference documents every public name and names nothing that is gone.

None of this needs Sphinx; the full ``sphinx-build -W`` runs only where the
``docs`` extra is installed.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import inspect
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import dask_cellucid
from dask_cellucid import cli

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = sorted(DOCS.glob("*.md"))
# The benchmark report quotes other tools' options (pytest's, say): not checked here.
GUIDE_PAGES = [p for p in PAGES if p.name != "benchmarks.md"]

# ```python ... ``` or ```{code-block} python\n:option: value\n...\n\n ... ```
_FENCE = re.compile(
    r"^```(?:\{code-block\}\s*)?(?P<lang>\w+)[^\n]*\n"
    r"(?P<options>(?::[\w-]+:[^\n]*\n)*)"
    r"(?P<code>.*?)^```\s*$",
    re.M | re.S,
)


@dataclass(frozen=True)
class Block:
    page: str
    lang: str
    runnable: bool
    code: str
    line: int


def blocks(page: Path) -> list[Block]:
    text = page.read_text()
    out = []
    for m in _FENCE.finditer(text):
        options = dict(
            re.match(r":([\w-]+):\s*(.*)", o).groups()  # type: ignore[union-attr]
            for o in m["options"].splitlines()
        )
        out.append(
            Block(
                page=page.name,
                lang=m["lang"],
                runnable="runnable" in options.get("class", "").split(),
                code=m["code"].lstrip("\n"),
                line=text.count("\n", 0, m.start()) + 1,
            )
        )
    return out


ALL_BLOCKS = [b for page in PAGES for b in blocks(page)]
RUNNABLE_PAGES = sorted({b.page for b in ALL_BLOCKS if b.runnable})


def test_the_quick_start_has_runnable_examples() -> None:
    quick = [b for b in ALL_BLOCKS if b.page == "quickstart.md" and b.runnable]
    assert {b.lang for b in quick} == {"python", "shell"}
    assert len(quick) >= 4, "the quick start's examples lost their ':class: runnable' marker"


def _run_shell(block: Block) -> None:
    for line in block.code.splitlines():
        argv = shlex.split(line, comments=True)
        if not argv:
            continue
        assert argv[0] == "dask-cellucid", (
            f"{block.page}:{block.line}: runnable shell blocks may only call dask-cellucid, "
            f"not {line!r}"
        )
        assert cli.main(argv[1:]) == 0, f"{block.page}:{block.line}: {line!r} failed"


@pytest.mark.parametrize("page", RUNNABLE_PAGES)
def test_runnable_blocks_run(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    for block in (b for b in ALL_BLOCKS if b.page == page and b.runnable):
        if block.lang == "shell":
            _run_shell(block)
        else:
            assert block.lang == "python", f"{page}:{block.line}: cannot run {block.lang}"
            code = compile(block.code, f"{page}:{block.line}", "exec")
            exec(code, namespace)  # running the guide is the point
    if page == "quickstart.md":
        _check_demo_listing(tmp_path / "cellucid-demo")


def _check_demo_listing(folder: Path) -> None:
    """The files the quick start says the demo writes are the files it wrote."""
    listing = next(
        b for b in ALL_BLOCKS if b.page == "quickstart.md" and b.code.startswith("cellucid-demo/")
    )
    named = [line.split()[0] for line in listing.code.splitlines()[1:] if line.split()]
    named = [n for n in named if n != "..."]
    assert len(named) >= 5, "the listing names too few files"
    for name in named:
        assert (folder / name).is_file(), f"the quick start lists {name}; the demo wrote none"
    written = {p.name for p in folder.iterdir() if p.is_file()}
    assert written == {n for n in named if "/" not in n}


# -- names used in the pages exist -----------------------------------------------------
PREPARE_PARAMS = set(inspect.signature(dask_cellucid.prepare).parameters)


def _cellucid_prepare_params() -> set[str] | None:
    try:
        import cellucid
    except ImportError:
        return None
    return set(inspect.signature(cellucid.prepare).parameters)


PREPARE_OF = {
    "dc": PREPARE_PARAMS,
    "dask_cellucid": PREPARE_PARAMS,
    "": PREPARE_PARAMS,
    "cellucid": _cellucid_prepare_params(),
}


def _prepare_calls(tree: ast.AST) -> list[tuple[str, ast.Call]]:
    """Calls to ``dc.prepare`` / ``cellucid.prepare`` / ``prepare`` in a block."""
    calls = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
            owner, name = f.value.id, f.attr
        else:
            owner, name = "", getattr(f, "id", "")
        if name == "prepare" and owner in PREPARE_OF:
            calls.append((owner, node))
    return calls


@pytest.mark.parametrize(
    "block",
    [pytest.param(b, id=f"{b.page}:{b.line}") for b in ALL_BLOCKS if b.lang == "python"],
)
def test_python_blocks_parse_and_call_prepare_correctly(block: Block) -> None:
    tree = ast.parse(block.code, f"{block.page}:{block.line}")
    for owner, call in _prepare_calls(tree):
        params = PREPARE_OF[owner]
        if params is None:
            continue  # cellucid is not installed here
        unknown = {k.arg for k in call.keywords} - params - {None}
        assert not unknown, f"{block.page}:{block.line}: {owner}.prepare() has no {unknown}"


_INLINE_KWARG = re.compile(r"`(\w+)=(?!=)[^`]*`")  # name=value, not pkg==version
# Keywords of other functions that the pages quote inline.
_NOT_PREPARE = {"min_cells", "min_genes"}


@pytest.mark.parametrize("page", [p.name for p in GUIDE_PAGES])
def test_inline_arguments_are_arguments_of_prepare(page: str) -> None:
    text = _FENCE.sub("", (DOCS / page).read_text())
    quoted = set(_INLINE_KWARG.findall(text)) - _NOT_PREPARE
    assert quoted <= PREPARE_PARAMS, (
        f"{page} names {quoted - PREPARE_PARAMS}, not arguments of prepare"
    )


def _cli_options() -> set[str]:
    parser = cli._build_parser()
    found = {s for a in parser._actions for s in a.option_strings}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= {s for a in sub._actions for s in a.option_strings}
    return found


def test_command_line_options_in_the_pages_exist() -> None:
    options = _cli_options()
    for page in GUIDE_PAGES:
        mentioned = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", page.read_text()))
        assert mentioned <= options, f"{page.name} mentions {mentioned - options}"


# -- the guide's own examples run on a toy dataset ------------------------------------
def _toy_adata() -> Any:
    """An ``adata`` like the guide's: scanpy-shaped, with the genes the guide names."""
    import anndata as ad
    import numpy as np
    import pandas as pd

    from dask_cellucid.datasets import synthetic

    data = synthetic(n_cells=600, n_genes=120, seed=1)
    names = ["CD3E", "MS4A1", "NKG7", "LYZ", *data.var.index[4:]]
    obs = data.obs.assign(
        leiden=data.obs["cluster"], n_genes=np.diff(data.X.indptr).astype(np.int64)
    )
    adata = ad.AnnData(
        X=data.X,
        obs=obs,
        var=data.var.set_axis(pd.Index(names), axis=0),
        obsm={"X_umap": data.umap_2d, "X_pca": data.umap_3d},
    )
    adata = adata[:, np.diff(data.X.tocsc().indptr) > 0].copy()  # sc.pp.filter_genes
    adata.raw = adata
    return adata


GUIDE_BLOCKS = [
    pytest.param(b, id=f"{b.page}:{b.line}")
    for b in ALL_BLOCKS
    if b.page in ("guide.md", "troubleshooting.md") and b.lang == "python" and not b.runnable
]


def test_the_guide_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every Python example of the guide and troubleshooting pages, in order, on ``adata``.

    Each example that exports starts from an empty folder; the S3 example
    needs a bucket and is left to the S3 tests.
    """
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": "__docs__", "adata": _toy_adata()}
    ran = 0
    for param in GUIDE_BLOCKS:
        block = param.values[0]
        if "s3://" in block.code:
            continue
        if "import cellucid\n" in block.code:
            pytest.importorskip("cellucid")
        if _prepare_calls(ast.parse(block.code)):
            for folder in tmp_path.iterdir():
                shutil.rmtree(folder) if folder.is_dir() else folder.unlink()
        exec(compile(block.code, f"{block.page}:{block.line}", "exec"), namespace)
        ran += 1
    assert ran >= 6


# -- the API reference ---------------------------------------------------------------
API = (DOCS / "api.md").read_text()
_DIRECTIVE = re.compile(r"^\.\. (auto\w+|py:\w+):: ([\w.]+)", re.M)


def _resolve(directive: str, target: str) -> Any:
    """The object a directive documents, found the way autodoc finds it."""
    if directive == "automodule":
        return importlib.import_module(target)
    module, _, attr = target.rpartition(".")
    try:
        owner = importlib.import_module(module)
    except ImportError:  # a member of a class: dask_cellucid.Export.execute
        owner = _resolve("autoclass", module)
    return getattr(owner, attr)


def test_every_api_reference_target_exists() -> None:
    directives = _DIRECTIVE.findall(API)
    assert len(directives) > 10
    for directive, target in directives:
        _resolve(directive, target)  # raises if the name is gone


def _documented() -> tuple[set[str], list[Any]]:
    directives = _DIRECTIVE.findall(API)
    return {t for _, t in directives}, [_resolve(d, t) for d, t in directives]


@pytest.mark.parametrize(
    "module", ["dask_cellucid", "dask_cellucid.formats.folder.validate", "dask_cellucid.api"]
)
def test_every_public_name_is_in_the_api_reference(module: str) -> None:
    mod = importlib.import_module(module)
    targets, objects = _documented()
    missing = [
        name
        for name in mod.__all__
        if f"{module}.{name}" not in targets
        and not any(getattr(mod, name) is obj for obj in objects)
    ]
    assert not missing, f"docs/api.md does not document {module}.{missing}"


@pytest.mark.slow
def test_sphinx_build_has_no_warnings(tmp_path: Path) -> None:
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_parser")
    pytest.importorskip("numpydoc")
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "-q", "-E", "-b", "html", str(DOCS), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


# -- the troubleshooting page quotes messages the code really gives -------------------
def _normalised(text: str) -> str:
    text = re.sub(r"(?<!\w)'[^']*'(?!\w)", "S", text)  # quoted values, not layout's
    text = re.sub(r"\S*/\S*", "P", text)  # paths and URLs
    text = re.sub(r"\d+(?:[.,]\d+)*", "N", text)  # numbers
    return " ".join(text.split())


def _messages(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Trigger every error and warning the troubleshooting page describes."""
    import warnings

    import numpy as np
    import pandas as pd

    X = np.arange(15, dtype=np.float32).reshape(5, 3)
    umap = np.arange(10, dtype=np.float32).reshape(5, 2)
    out: list[str] = []

    def fails(*args: Any, **kw: Any) -> None:
        kw.setdefault("out_dir", tmp / f"o{len(out)}")
        kw.setdefault("progress", False)
        with pytest.raises(dask_cellucid.CellucidExportError) as err:
            dask_cellucid.prepare(*args, **kw)
        out.append(str(err.value))

    names = ["CD3E", "MS4A1", "NKG7"]
    fails(X, var=[f"c{i}" for i in range(5)])  # transposed
    fails(X, var=names[:2])  # misaligned
    fails(X)  # no var
    fails(X, names, gene_identifiers=["CD3", "ms4a1", "NKG7"])
    fails(X, pd.DataFrame(index=names), var_gene_id_column="gene_symbols")
    fails(X, ["MATR3", "MATR3", "A"])
    fails(X, ["Foxp3", "FOXP3", "A"])
    fails(X, ["基因", "A", "B"])
    fails(X, [" A", "B", "C"], layout="index")
    fails(X, pd.DataFrame(index=pd.Index(["A", None, "C"], dtype=object)))
    fails(X, names, out_dir=tmp / "o", storage_options={"anon": True})

    dataset = tmp / "dataset"
    dask_cellucid.prepare(X, names, out_dir=dataset, X_umap_2d=umap, compression=6, progress=False)
    fails(X, names, out_dir=dataset, compression=6)  # a gene export exists
    fails(X, names, out_dir=dataset, X_umap_2d=umap, compression=6)  # a dataset exists
    fails(np.zeros((6, 3)), names, out_dir=dataset)  # other cells
    fails(X, names, out_dir=dataset, compression=None)  # other compression
    unfinished = tmp / "unfinished"
    (unfinished / "var").mkdir(parents=True)
    (unfinished / "var" / "x.values.u8").write_bytes(b"\0" * 5)
    fails(X, names, out_dir=unfinished)

    bad = np.ones((5, 4), np.float32)
    bad[0, :3] = np.nan  # three genes with a NaN cell
    bad[:, 3] = 0  # and one zero everywhere
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dask_cellucid.prepare(bad, [*names, "LYZ"], out_dir=tmp / "warned", progress=False)
    out += [str(w.message) for w in caught if issubclass(w.category, dask_cellucid.ExportWarning)]

    find_spec = importlib.util.find_spec  # as if distributed were not installed:
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "distributed" else find_spec(name, *a),
    )
    fails(X, names, scheduler="distributed")
    return out


def test_troubleshooting_quotes_real_messages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = [_normalised(m) for m in _messages(tmp_path, monkeypatch)]
    page = (DOCS / "troubleshooting.md").read_text()
    quotes = [q.removeprefix("ExportWarning: ") for q in re.findall(r"^> (.*)$", page, re.M)]
    assert len(quotes) >= 15
    for quote in quotes:
        pieces = [_normalised(p) for p in re.split(r"\(\.\.\.\)|\.\.\.", quote)]
        pieces = [p for p in pieces if re.search(r"\w", p)]
        assert any(all(p in m for p in pieces) for m in real), (
            f"troubleshooting.md quotes a message the code does not give: {quote!r}"
        )
