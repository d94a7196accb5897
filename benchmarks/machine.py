"""The machine a run was measured on: CPU, memory, filesystem, versions, file creation cost."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any


def _sh(cmd: str) -> str:
    try:
        return subprocess.run(
            cmd, shell=True, capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        return ""


def machine_info(workdir: Path) -> dict[str, Any]:
    import importlib.metadata as md

    cpu = _sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
    mem = _sh("grep MemTotal /proc/meminfo | awk '{print $2}'")
    versions = {}
    for pkg in ("numpy", "scipy", "dask", "deflate", "isal", "cellucid", "dask-cellucid"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = "-"
    return {
        "cpu": cpu or platform.processor(),
        "cores": os.cpu_count(),
        "memory_gib": round(int(mem) / 2**20, 1) if mem.isdigit() else None,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "filesystem": _sh(f"df -T {workdir} | tail -1 | awk '{{print $2}}'"),
        "versions": versions,
        "loadavg_start": os.getloadavg(),
    }


def file_creation_us(probe: Path, n: int = 500) -> float:
    """Microseconds to create (and write 1 byte to) one file in the fresh folder ``probe``.

    Context for the I/O rows: it depends on the filesystem and on how many
    files were deleted there in the last minutes. The caller removes ``probe``
    with the outputs, at the end.
    """
    probe.mkdir()
    t0 = time.perf_counter()
    for k in range(n):
        with open(probe / f"{k}.bin", "wb") as f:
            f.write(b"x")
    return (time.perf_counter() - t0) / n * 1e6
