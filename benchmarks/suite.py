"""What the suite runs: the settings, one case to time, and the plan of cases.

Shared by :mod:`benchmarks.run` (which runs the plan) and
:mod:`benchmarks.report` (which renders it).
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
        if self.kind == "encoder":
            return "encoder limit (sparse-aware, on the genes auto gives it)"
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


def library_on_path() -> None:
    """Let this process import dask_cellucid from the checkout even when it is not installed."""
    src = str(REPO / "src")
    if src not in sys.path:
        sys.path.insert(0, src)


def available_codecs() -> list[str]:
    library_on_path()
    from dask_cellucid import codecs

    return list(codecs.available_codecs())


def auto_codec() -> str:
    """The generic codec ``codec="auto"`` uses for the genes the sparse-aware encoder leaves."""
    library_on_path()
    from dask_cellucid import codecs

    return codecs.resolve_codec("auto")


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
            # one codec limit per generic encoder: "auto" stands for the one auto uses
            generic = [c for c in codecs if c == "auto" or c not in ("sparse", auto_codec())]
            cases += [Case("codec", s, spec, codec=c, threads=threads) for c in generic]
            cases.append(Case("encoder", s, spec, codec="sparse", threads=threads))
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
