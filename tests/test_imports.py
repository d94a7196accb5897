"""The package's import structure, read statically from the source with ``ast``.

- No import cycle between dask_cellucid's modules, counting imports made inside
  functions and under ``TYPE_CHECKING`` too: every ``import`` statement is an edge.
- No module uses another module's private (``_name``) functions, classes or
  constants. Private *modules* (``_graph``, ``storage._local``...) may be imported;
  what they export without an underscore is their interface.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

import dask_cellucid

PACKAGE = "dask_cellucid"
SRC = Path(dask_cellucid.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = [PACKAGE, *path.relative_to(SRC).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources(root: Path = SRC) -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(root.rglob("*.py"))}


@dataclass(frozen=True)
class Import:
    """One explicit import of a package module: who, what, where."""

    importer: str
    module: str
    line: int


@dataclass(frozen=True)
class NameUse:
    """A name taken from a package module (``from m import n`` or ``m.n``)."""

    user: str
    module: str
    name: str
    line: int


class _Analysis:
    """Imports and name uses of every module of a source tree."""

    def __init__(self, modules: dict[str, Path]) -> None:
        self.modules = modules
        self.packages = {m for m, p in modules.items() if p.name == "__init__.py"}
        self.imports: list[Import] = []
        self.uses: list[NameUse] = []
        for name, path in modules.items():
            self._scan(name, ast.parse(path.read_text(), filename=str(path)))

    def _ours(self, module: str) -> bool:
        return module == PACKAGE or module.startswith(PACKAGE + ".")

    def _absolute(self, importer: str, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        base = importer.split(".")
        if importer not in self.packages:  # a plain module: relative to its package
            base = base[:-1]
        base = base[: len(base) - (node.level - 1)]
        return ".".join([*base, node.module] if node.module else base)

    def _scan(self, name: str, tree: ast.Module) -> None:
        # local name -> the package module it is bound to
        aliases: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if not self._ours(alias.name):
                        continue
                    self.imports.append(Import(name, alias.name, node.lineno))
                    if alias.asname:
                        aliases[alias.asname] = alias.name
                    else:
                        head = alias.name.split(".")[0]
                        aliases[head] = head
            elif isinstance(node, ast.ImportFrom):
                source = self._absolute(name, node)
                if not self._ours(source):
                    continue
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    if sub in self.modules:  # a submodule: importing it runs it
                        self.imports.append(Import(name, sub, node.lineno))
                        aliases[alias.asname or alias.name] = sub
                    else:  # a name defined in (or re-exported by) ``source``
                        self.imports.append(Import(name, source, node.lineno))
                        self.uses.append(NameUse(name, source, alias.name, node.lineno))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                chain = _chain(node)
                if chain is None or chain[0] not in aliases:
                    continue
                module = aliases[chain[0]]
                for attr in chain[1:]:
                    if f"{module}.{attr}" in self.modules:
                        module = f"{module}.{attr}"
                        continue
                    self.uses.append(NameUse(name, module, attr, node.lineno))
                    break

    def targets(self, imp: Import) -> set[str]:
        """The package modules one import statement runs (besides the importer).

        Importing ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__`` too; those
        count, except the importer's own enclosing packages, which Python has
        already started by the time the importer runs.
        """
        parts = imp.module.split(".")
        own = {".".join(imp.importer.split(".")[:k]) for k in range(1, len(parts) + 1)}
        enclosing = {".".join(parts[:k]) for k in range(1, len(parts))} - own
        return {t for t in {imp.module} | enclosing if t in self.modules and t != imp.importer}

    def edges(self) -> dict[str, set[str]]:
        """Module -> the package modules its import statements run."""
        graph: dict[str, set[str]] = {m: set() for m in self.modules}
        for imp in self.imports:
            graph[imp.importer] |= self.targets(imp)
        return graph


def _chain(node: ast.Attribute) -> list[str] | None:
    """``a.b.c`` as ``["a", "b", "c"]``; None when it does not start at a plain name."""
    parts: list[str] = []
    cur: ast.expr = node
    while isinstance(cur, ast.Attribute):
        parts.append(cur.attr)
        cur = cur.value
    if not isinstance(cur, ast.Name):
        return None
    return [cur.id, *reversed(parts)]


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def _describe(component: list[str], analysis: _Analysis) -> str:
    """Every import statement that makes an edge of the cycle, as ``file:line``."""
    members = set(component)
    lines = [f"cycle among {component}:"]
    for imp in sorted(analysis.imports, key=lambda i: (i.importer, i.line)):
        if imp.importer in members and analysis.targets(imp) & members:
            path = analysis.modules[imp.importer].relative_to(SRC.parent)
            lines.append(f"  {path}:{imp.line}: imports {imp.module}")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def analysis() -> _Analysis:
    return _Analysis(_sources())


# -- the checker itself, on small made-up trees ----------------------------------------
def _tree(tmp_path: Path, files: dict[str, str]) -> _Analysis:
    for rel, text in files.items():
        path = tmp_path / PACKAGE / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    root = tmp_path / PACKAGE
    return _Analysis({_module_name_in(root, p): p for p in sorted(root.rglob("*.py"))})


def _module_name_in(root: Path, path: Path) -> str:
    parts = [PACKAGE, *path.relative_to(root).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def test_checker_finds_a_cycle_through_an_import_inside_a_function(tmp_path):
    found = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from . import b\n",
            "b.py": "def f():\n    from .a import g\n    return g\n",
        },
    )
    assert cycles(found.edges()) == [[f"{PACKAGE}.a", f"{PACKAGE}.b"]]


def test_checker_finds_a_cycle_through_a_package_init(tmp_path):
    # sub/x imports the top-level api, whose import of sub.y runs sub/__init__, which imports x
    found = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "api.py": "from .sub.y import thing\n",
            "sub/__init__.py": "from . import x\n",
            "sub/x.py": "import dask_cellucid.api\n",
            "sub/y.py": "thing = 1\n",
        },
    )
    assert cycles(found.edges()) == [[f"{PACKAGE}.api", f"{PACKAGE}.sub", f"{PACKAGE}.sub.x"]]


def test_checker_ignores_the_implicit_import_of_the_importers_own_packages(tmp_path):
    found = _tree(
        tmp_path,
        {
            "__init__.py": "from .sub import x\n",
            "sub/__init__.py": "from . import x\n",
            "sub/x.py": "from .y import thing\nfrom ..errors import E\n",
            "sub/y.py": "thing = 1\n",
            "errors.py": "class E(Exception): ...\n",
        },
    )
    assert cycles(found.edges()) == []


def test_checker_counts_an_explicit_import_of_the_parent_package(tmp_path):
    found = _tree(
        tmp_path,
        {
            "__init__.py": "from .x import f\n",
            "x.py": "def f():\n    from dask_cellucid import __version__\n",
        },
    )
    assert cycles(found.edges()) == [[PACKAGE, f"{PACKAGE}.x"]]


def test_checker_finds_private_names_imported_and_used_as_attributes(tmp_path):
    found = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "_priv.py": "def _helper(): ...\ndef public(): ...\n",
            "a.py": "from ._priv import _helper, public\n",
            "b.py": "from . import _priv\n_priv.public()\n_priv._helper()\n",
            "c.py": "import dask_cellucid._priv as p\np._helper()\n",
        },
    )
    bad = sorted((u.user, u.name) for u in found.uses if _is_private(u.name))
    assert bad == [
        (f"{PACKAGE}.a", "_helper"),
        (f"{PACKAGE}.b", "_helper"),
        (f"{PACKAGE}.c", "_helper"),
    ]


# -- the package ---------------------------------------------------------------------------
def test_the_scan_sees_the_package(analysis):
    # guard against a checker that silently finds nothing
    assert {f"{PACKAGE}.api", f"{PACKAGE}.engine", f"{PACKAGE}.formats.folder.writer"} <= set(
        analysis.modules
    )
    edges = analysis.edges()
    assert f"{PACKAGE}.formats.folder.manifest" in edges[f"{PACKAGE}.formats.folder.writer"]
    assert f"{PACKAGE}._graph" in edges[f"{PACKAGE}.engine"]


def test_no_import_cycle_between_modules(analysis):
    found = cycles(analysis.edges())
    assert not found, "\n".join(_describe(c, analysis) for c in found)


def test_no_module_uses_another_modules_private_names(analysis):
    bad = [u for u in analysis.uses if _is_private(u.name) and u.module != u.user]
    report = [
        f"{analysis.modules[u.user].relative_to(SRC.parent)}:{u.line}: {u.module}.{u.name}"
        for u in sorted(bad, key=lambda u: (u.user, u.line))
    ]
    assert not report, "private names used across modules:\n" + "\n".join(report)
