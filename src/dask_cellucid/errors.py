"""Exceptions and warnings raised by dask-cellucid.

Every error subclasses both :class:`CellucidExportError` (catch everything we
raise) and the builtin it refines (``ValueError``, ``TypeError``, ...), so code
written against the builtins keeps working. Messages name the problem and the
fix.
"""

from __future__ import annotations


class CellucidExportError(Exception):
    """Base class of every error dask-cellucid raises on purpose."""


class InvalidOptionError(CellucidExportError, ValueError):
    """An argument has a value outside what it accepts."""


class InputShapeError(CellucidExportError, ValueError):
    """The matrix and ``var`` do not fit together (orientation, alignment)."""


class UnsupportedInputError(CellucidExportError, TypeError):
    """The matrix is of a type or dtype that cannot be exported."""


class InputValueError(CellucidExportError, ValueError):
    """The matrix holds values the format cannot store (finite, but beyond float32)."""


class GeneIdError(CellucidExportError, ValueError):
    """Gene identifiers are missing, duplicated, or collide as file names."""


class TargetExistsError(CellucidExportError, FileExistsError):
    """The output folder already holds an export and ``force`` was not given."""


class VerificationError(CellucidExportError, ValueError):
    """``prepare(..., verify=True)``: the folder written does not match its source."""


class StorageError(CellucidExportError, OSError):
    """Storage kept failing after every retry; no manifest names the unfinished files."""


class StorageAccessError(StorageError):
    """The storage cannot be used at all: missing credentials, an unreachable endpoint,
    a missing bucket or filesystem package. Raised by the probe before anything is
    read or written; the message names the cause and the fix."""


class ExportWarning(UserWarning):
    """Something in the data deserves a look, but the export went ahead."""
