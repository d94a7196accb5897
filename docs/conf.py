"""Sphinx configuration: Markdown pages (MyST) and an API reference from the docstrings.

Build with ``sphinx-build -W -b html docs docs/_build/html`` after
``pip install -e '.[docs]'``.
"""

from __future__ import annotations

import os
import re
import socket
from importlib.metadata import version as _version
from pathlib import Path
from typing import Any

project = "dask-cellucid"
author = "dask-cellucid developers"
copyright = "2026, dask-cellucid developers"
release = _version("dask-cellucid")
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "numpydoc",
]

# .rst only because numpydoc loads autosummary, which wants it; the pages are Markdown.
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# -- API reference -------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
# Classes are made by the library, not by users: show no constructor signature.
autodoc_class_signature = "separated"
# One parameter per line once a signature is longer than this (prepare has many).
python_maximum_signature_line_length = 88
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_validation_checks: set[str] = set()

# -- intersphinx: only with network access -------------------------------------------
# A failed inventory download is a warning, and -W turns it into an error, so an
# offline build (a cluster login node, CI without network) simply skips the links
# to other projects' docs. Set DASK_CELLUCID_DOCS_OFFLINE=1 to force that.
_INVENTORIES = {
    "python": ("https://docs.python.org/3", None),
    "numpy": ("https://numpy.org/doc/stable", None),
    "scipy": ("https://docs.scipy.org/doc/scipy", None),
    "pandas": ("https://pandas.pydata.org/docs", None),
    "dask": ("https://docs.dask.org/en/stable", None),
    "distributed": ("https://distributed.dask.org/en/stable", None),
    "fsspec": ("https://filesystem-spec.readthedocs.io/en/latest", None),
    "anndata": ("https://anndata.readthedocs.io/en/stable", None),
    "scanpy": ("https://scanpy.readthedocs.io/en/stable", None),
}


def _online(host: str = "docs.python.org") -> bool:
    if os.environ.get("DASK_CELLUCID_DOCS_OFFLINE"):
        return False
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return False
    return True


intersphinx_mapping = _INVENTORIES if _online() else {}
intersphinx_timeout = 10

# -- HTML ----------------------------------------------------------------------------
html_theme = "alabaster"
html_title = f"dask-cellucid {release}"
html_theme_options = {
    "description": "Export single-cell gene expression for the Cellucid viewer, with Dask.",
    "fixed_sidebar": True,
}

# -- command-line help, generated from the parser ------------------------------------
_CLI_HELP = re.compile(r"<!-- cli-help: (\w+) -->")


def _cli_help(command: str) -> str:
    import argparse

    from dask_cellucid import cli

    os.environ["COLUMNS"] = "88"  # argparse wraps to the terminal width
    parser = cli._build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return str(action.choices[command].format_help())
    msg = f"no subcommand {command!r} in dask-cellucid's parser"
    raise LookupError(msg)


def _with_cli_help(app: Any, docname: str, source: list[str]) -> None:
    """Replace ``<!-- cli-help: CMD -->`` markers by the command's ``--help`` text."""
    if docname == "cli":
        source[0] = _CLI_HELP.sub(lambda m: f"```text\n{_cli_help(m[1])}```\n", source[0])


# -- pages written by others: listed once they exist ---------------------------------
_OPTIONAL_PAGES = ("benchmarks",)


def _without_missing_pages(app: Any, docname: str, source: list[str]) -> None:
    """Drop toctree entries of optional pages that are not in the source tree yet."""
    if docname == "index":
        for page in _OPTIONAL_PAGES:
            if not (Path(app.srcdir) / f"{page}.md").is_file():
                source[0] = re.sub(rf"^{page}\n", "", source[0], flags=re.M)


def setup(app: Any) -> None:
    app.connect("source-read", _without_missing_pages)
    app.connect("source-read", _with_cli_help)
