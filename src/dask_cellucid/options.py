"""Checks of the scalar options every format shares, and what ``max_memory`` means.

``max_memory`` is parsed here and only here. It is the budget of one export
(or verification) in this process: the input's working set (row slabs of a
file read out of core, the column blocks built from them, spill buffers) plus
the block tasks' encode buffers, for all threads together. For an input that is
already in memory (NumPy, scipy.sparse, an AnnData not backed) the input itself
is not counted, and the budget bounds only the block tasks: it sets how many
genes one task takes. By default it is a quarter of this machine's memory (or
of the container's limit, when that is lower).
"""

from __future__ import annotations

import os
from typing import Any, Literal

from .errors import InvalidOptionError

# Default budget: this fraction of the machine's memory.
MEMORY_FRACTION = 0.25
_FALLBACK_MEMORY = 16 * 2**30


def total_memory() -> int:
    """Physical memory, or the cgroup's memory limit when that is lower."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        total = _FALLBACK_MEMORY
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(limit_file) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return int(total)


def process_rss() -> int:
    """Resident memory of this process now, in bytes (0 where it cannot be read).

    What the interpreter and the libraries already loaded hold before an
    export starts: the part of the process's peak that ``max_memory`` does not size.
    """
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):  # pragma: no cover - not Linux
        return 0


def default_max_memory() -> int:
    """The budget when ``max_memory`` is not given."""
    return int(total_memory() * MEMORY_FRACTION)


def parse_memory(value: Any, name: str = "max_memory") -> int | None:
    """A memory size (``4GiB``, ``500MB``, a number of bytes) as bytes; None stays None."""
    if value is None:
        return None
    from dask.utils import parse_bytes

    not_a_size = f"{name}={value!r} is not a memory size; write it like 4GiB, 500MB or 2000000000."
    # dask reads "" as one byte and True as 1: budgets nobody means
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidOptionError(not_a_size)
    if isinstance(value, str) and not value.strip():
        raise InvalidOptionError(not_a_size)
    try:
        n = int(parse_bytes(value))
    except (ValueError, TypeError, OverflowError) as err:
        raise InvalidOptionError(not_a_size) from err
    if n <= 0:
        msg = f"{name}={value!r} must be more than zero, e.g. 4GiB."
        raise InvalidOptionError(msg)
    return n


def resolve_memory(value: Any) -> int:
    """``max_memory`` as bytes, with the default filled in."""
    parsed = parse_memory(value)
    return default_max_memory() if parsed is None else parsed


def check_flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        msg = f"{name} must be True or False, got {value!r}."
        raise InvalidOptionError(msg)
    return value


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> Any:
    if not isinstance(value, str) or value not in choices:
        msg = f"{name}={value!r} must be one of {', '.join(map(repr, choices))}."
        raise InvalidOptionError(msg)
    return value


def check_bits(var_quantization: Any) -> Literal[8, 16] | None:
    if var_quantization is None or (type(var_quantization) is int and var_quantization in (8, 16)):
        return var_quantization  # type: ignore[no-any-return]
    msg = (
        f"var_quantization={var_quantization!r} must be None (float32), 8 or 16. 8 bits is "
        "the compact default most users want; 16 keeps 256x finer steps."
    )
    raise InvalidOptionError(msg)


def check_compression(compression: Any) -> int | None:
    if compression is None or (compression == 0 and type(compression) is int):
        return None
    if type(compression) is int and 1 <= compression <= 9:
        return compression
    msg = (
        f"compression={compression!r} must be None or 0 (off), or a gzip level from 1 to 9 "
        "(6 is typical)."
    )
    raise InvalidOptionError(msg)


def check_positive_int(name: str, value: Any) -> int:
    if not (type(value) is int and value > 0):
        msg = f"{name}={value!r} must be a positive integer."
        raise InvalidOptionError(msg)
    return value


def check_tolerance(tolerance: Any) -> float:
    if not (isinstance(tolerance, int | float) and not isinstance(tolerance, bool)) or not (
        tolerance >= 0
    ):
        msg = f"tolerance={tolerance!r} must be a number of steps >= 0 (0.5 for nearest rounding)."
        raise InvalidOptionError(msg)
    return float(tolerance)


def check_path(name: str, value: Any) -> None:
    """An output must be a path or a URL string."""
    if not isinstance(value, str | os.PathLike) or not os.fspath(value):
        msg = f"{name}={value!r} must be a folder path or a URL such as 's3://bucket/prefix'."
        raise InvalidOptionError(msg)
