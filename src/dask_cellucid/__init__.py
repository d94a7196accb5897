"""dask-cellucid: export gene expression for the Cellucid viewer, in parallel, at any scale."""

from __future__ import annotations

from .api import (
    Export,
    ExportResult,
    prepare,
    prepare_folder,
    read_gene,
    read_genes,
    validate,
    verify,
)
from .errors import (
    CellucidExportError,
    ExportWarning,
    GeneIdError,
    InputShapeError,
    InputValueError,
    InvalidOptionError,
    StorageError,
    TargetExistsError,
    UnsupportedInputError,
    VerificationError,
)
from .formats.folder.read import read_manifest
from .formats.folder.validate import ValidationReport
from .formats.folder.verify import VerifyReport
from .formats.store.validate import StoreValidationReport
from .formats.store.verify import StoreVerifyReport
from .store_api import prepare_store

__version__ = "0.1.0"

__all__ = [
    "CellucidExportError",
    "Export",
    "ExportResult",
    "ExportWarning",
    "GeneIdError",
    "InputShapeError",
    "InputValueError",
    "InvalidOptionError",
    "StorageError",
    "StoreValidationReport",
    "StoreVerifyReport",
    "TargetExistsError",
    "UnsupportedInputError",
    "ValidationReport",
    "VerificationError",
    "VerifyReport",
    "__version__",
    "prepare",
    "prepare_folder",
    "prepare_store",
    "read_gene",
    "read_genes",
    "read_manifest",
    "validate",
    "verify",
]
