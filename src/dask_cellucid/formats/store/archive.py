"""The single-file store, ``.zarr.zip``: packed at the end of a run, read in place.

A ``.zarr.zip`` is the store folder in one ZIP archive, as cellucid 0.9.5's
``prepare(format="zarr.zip")`` writes it: the store at the top level of the
archive; every entry stored (not deflated: each chunk is compressed already,
and a stored entry is read with one range request at its offset); the chunks
first, each array's in grid order, then the metadata documents, the
consolidated metadata last (a reader opening the archive reads its end, the
central directory, and with it the documents); every timestamp 1980-01-01
00:00 and every entry a 0644 regular file, so that the bytes depend on the
entries alone.

The run writes the store folder as usual, into a staging folder beside
``out_path`` (a local disk) or under a staging prefix beside it (object
storage); :func:`pack_into_place` packs it into one archive on the local disk,
moves it into place (or uploads it, one object written whole), and removes the
staging folder.

Reading goes through fsspec's zip filesystem (:func:`store_target`), which
reads the central directory once and then each entry at its offset.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tempfile
import zipfile
from typing import TYPE_CHECKING, Any

from dask_cellucid.errors import InvalidOptionError, TargetExistsError
from dask_cellucid.storage import Target

from .spec import CONSOLIDATED, V3_METADATA, ZIP_SUFFIX

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

#: The timestamp of every entry: the earliest a ZIP can carry.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
#: The metadata documents of a zarr store (v2 and v3).
METADATA_NAMES = frozenset({".zarray", ".zattrs", ".zgroup", CONSOLIDATED, V3_METADATA})
#: Entries read from object storage per request batch while packing.
_BATCH = 256
#: A run's own bookkeeping beside the store (a journal), never packed.
RUN_FILES_DIR = ".dask-cellucid"


def is_zip_name(path_or_url: Any) -> bool:
    """Whether a path, URL or target names a ``.zarr.zip`` (by its suffix)."""
    url = path_or_url.url if isinstance(path_or_url, Target) else os.fspath(path_or_url)
    name = url.rstrip("/").rsplit("/", 1)[-1].lower()
    return name.endswith(ZIP_SUFFIX) and name != ZIP_SUFFIX


def entry_order(name: str) -> tuple[Any, ...]:
    """Where an entry goes: chunks first (array, then grid position in numbers), then
    the metadata documents, the consolidated metadata (the top-level one) last."""
    parts = tuple(name.split("/"))
    if parts[-1] in METADATA_NAMES:
        return (1, len(parts) == 1, parts)
    for at in range(len(parts) - 1, -1, -1):
        if parts[at] == "c" and all(p.isdigit() for p in parts[at + 1 :]):
            return (0, parts[:at], tuple(int(p) for p in parts[at + 1 :]))
    return (0, parts[:-1], tuple(int(p) for p in parts[-1].split(".") if p.isdigit()))


def _entry(name: str, size: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, ZIP_EPOCH)
    info.create_system = 3
    info.external_attr = 0o100644 << 16
    info.file_size = size
    return info


def is_store_file(name: str) -> bool:
    """Whether a file of the staging folder belongs in the archive: not a run's own
    bookkeeping (:data:`RUN_FILES_DIR`) nor a temporary file a killed write left."""
    return name.split("/", 1)[0] != RUN_FILES_DIR and not name.endswith(".tmp")


def pack(folder: Target, archive: str) -> None:
    """Pack the store folder at ``folder`` into the local file ``archive`` (see the module)."""
    sizes = folder.sizes("")
    names = sorted((n for n in sizes if is_store_file(n)), key=entry_order)
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as out:
        if folder.is_local:
            for name in names:
                with (
                    open(folder.path(name), "rb") as reader,
                    out.open(_entry(name, sizes[name]), "w") as writer,
                ):
                    shutil.copyfileobj(reader, writer, 1 << 20)
            return
        for batch in _batches(names, _BATCH):
            got = folder.read_many(batch)
            for name in batch:
                data = got[name]
                if data is None:
                    msg = f"{folder.display_url}: {name} vanished while the archive was packed"
                    raise FileNotFoundError(msg)
                with out.open(_entry(name, len(data)), "w") as writer:
                    writer.write(data)


def _batches(items: list[str], n: int) -> Iterable[list[str]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def pack_into_place(staging: Target, final: Target) -> None:
    """Pack the finished store folder ``staging`` into ``final``, then remove ``staging``.

    On a local disk the archive is written beside ``final`` and renamed into
    place (an old archive is replaced only then); elsewhere it is written to a
    local temporary file and uploaded as one object.
    """
    if final.is_local:
        parent, name = os.path.split(final.root)
        os.makedirs(parent, exist_ok=True)
        partial = os.path.join(parent, f".{name}.{os.getpid()}.zip.partial")
        try:
            pack(staging, partial)
            os.replace(partial, final.root)
        finally:
            if os.path.lexists(partial):
                os.unlink(partial)
        shutil.rmtree(staging.root, ignore_errors=True)
        return
    with tempfile.TemporaryDirectory(prefix="dask-cellucid-zip-") as tmp:
        local = os.path.join(tmp, "store.zarr.zip")
        pack(staging, local)
        final.upload(local)
    staging.remove_tree("")


def check_access(final: Target, *, zipped: bool) -> None:
    """:meth:`Target.check_access` of ``out_path``; of its folder for a local ``.zarr.zip``."""
    if zipped and final.is_local:
        Target.from_url(os.path.dirname(final.root)).check_access()
    else:
        final.check_access()


def check_zip_destination(final: Target, *, force: bool) -> None:
    """``out_path`` absent, or (with ``force``) a file that may be replaced."""
    if final.is_local:
        path = final.root
        if not os.path.lexists(path):
            return
        if not force:
            msg = f"{path} already exists; pass force=True to replace it."
            raise TargetExistsError(msg)
        if os.path.islink(path):
            msg = f"{path} is a symbolic link; remove it yourself if it should go."
            raise TargetExistsError(msg)
        if not os.path.isfile(path):
            msg = (
                f'{path} is a folder, and format="zarr.zip" writes a file; remove it yourself '
                "if it should go."
            )
            raise TargetExistsError(msg)
        return
    if final.exists("") and not force:
        msg = f"{final.display_url} already exists; pass force=True to replace it."
        raise TargetExistsError(msg)


def store_root(names: Iterable[str]) -> str | None:
    """The folder inside an archive that holds the store: the shallowest holding a root
    metadata document (``""`` for the top level, as written here), or None."""
    roots = [
        posixpath.dirname(n)
        for n in names
        if posixpath.basename(n) in (".zgroup", ".zmetadata", V3_METADATA)
    ]
    if not roots:
        return None
    return min(roots, key=lambda r: (0 if not r else r.count("/") + 1, r))


def store_target(
    where: str | os.PathLike[str] | Target, storage_options: Mapping[str, Any] | None = None
) -> Target:
    """A target reading the store inside a ``.zarr.zip`` (any other path: :meth:`Target.of`).

    The archive's central directory is read once per process and target; the
    target names the archive's size and time, so a rewritten archive is read
    anew.
    """
    target = Target.of(where, storage_options)
    if not is_zip_name(target) or target.url.startswith("zip://"):
        return target
    fs = target.fs
    try:
        info = fs.info(target.root)
    except FileNotFoundError:
        msg = f"{target.display_url} does not exist."
        raise InvalidOptionError(msg) from None
    if info.get("type") != "file":
        msg = f"{target.display_url} is not a file: a .zarr.zip store is one ZIP file."
        raise InvalidOptionError(msg)
    stamp = "|".join(str(info.get(k)) for k in ("size", "mtime", "ETag", "LastModified"))
    inner = target.url if "://" in target.url else f"file://{target.url}"
    protocol = inner.split("://", 1)[0]
    options: dict[str, Any] = {"archive_stamp": stamp}
    if target.storage_options:
        options[protocol] = dict(target.storage_options)
    try:
        with fs.open(target.root, "rb") as f, zipfile.ZipFile(f) as z:
            root = store_root(z.namelist())
    except zipfile.BadZipFile as err:
        msg = f"{target.display_url} is not a readable ZIP archive: {err}"
        raise InvalidOptionError(msg) from err
    if root is None:
        msg = f"{target.display_url} holds no zarr store (no .zgroup or zarr.json)."
        raise InvalidOptionError(msg)
    return Target(f"zip://{root}::{inner}", options)


__all__ = [
    "check_access",
    "check_zip_destination",
    "entry_order",
    "is_store_file",
    "is_zip_name",
    "pack",
    "pack_into_place",
    "store_root",
    "store_target",
]
