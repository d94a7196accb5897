"""Where the bytes go: an fsspec URL and the few operations an export needs.

The only module that imports fsspec. A :class:`Target` is a small picklable
description (URL + ``storage_options``); the filesystem object is built inside
each process that uses it (fsspec caches one instance per process), so forked
or spawned workers never share an async client.

Every file appears atomically: on a local filesystem it is written under a
temporary name and renamed; on object storage a single PUT is atomic anyway.
"""

from __future__ import annotations

import logging
import os
import posixpath
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from .errors import InvalidOptionError

log = logging.getLogger(__name__)

# Objects must not carry Content-Encoding: gzip (the browser would inflate them
# before the viewer does); see spec section 1.
CONTENT_TYPE = "application/octet-stream"
_RETRIES = 5


@dataclass(frozen=True)
class Target:
    """An export root: a local path or any fsspec URL, plus its storage options."""

    url: str
    storage_options: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_url(cls, url: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None) -> Target:
        url = os.fspath(url)
        if storage_options and "://" not in url:
            msg = (
                f"storage_options were given for the local path {url!r}; drop them, or give a "
                "URL such as 's3://bucket/prefix'."
            )
            raise InvalidOptionError(msg)
        if "://" not in url:
            url = os.path.abspath(os.path.expanduser(url))
        return cls(url.rstrip("/") or "/", dict(storage_options or {}))

    def __repr__(self) -> str:  # never show credentials
        return f"Target({self.url!r})"

    # -- the filesystem, built where it is used ---------------------------------
    def _fs_root(self) -> tuple[Any, str]:
        fs, root = fsspec.url_to_fs(self.url, **self.storage_options)
        return fs, root.rstrip("/")

    @property
    def fs(self) -> Any:
        return self._fs_root()[0]

    @property
    def root(self) -> str:
        return self._fs_root()[1]

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    def path(self, rel: str) -> str:
        return posixpath.join(self.root, rel) if rel else self.root

    # -- reads --------------------------------------------------------------------
    def read(self, rel: str) -> bytes | None:
        """The file's bytes, or None if there is no such file."""
        try:
            return self.fs.cat_file(self.path(rel))
        except FileNotFoundError:
            return None

    def exists(self, rel: str) -> bool:
        return bool(self.fs.exists(self.path(rel)))

    def sizes(self, prefix: str) -> dict[str, int]:
        """Sizes of the files under ``prefix``, keyed by path relative to the root."""
        fs, root = self._fs_root()
        base = posixpath.join(root, prefix)
        try:
            found = fs.find(base, detail=True)
        except FileNotFoundError:
            return {}
        n = len(root) + 1
        return {p[n:] if p.startswith(root) else p: int(info["size"]) for p, info in found.items()}

    # -- writes -------------------------------------------------------------------
    def prepare(self) -> None:
        """Create the root (and ``var/``) where a filesystem needs directories."""
        fs, root = self._fs_root()
        if isinstance(fs, LocalFileSystem):
            fs.makedirs(posixpath.join(root, "var"), exist_ok=True)

    def write(self, files: Mapping[str, bytes]) -> None:
        """Write several files, each atomically; one bulk request on object storage."""
        if not files:
            return
        fs, root = self._fs_root()
        if isinstance(fs, LocalFileSystem):
            for rel, data in files.items():
                _atomic_local_write(posixpath.join(root, rel), data)
            return
        paths = {posixpath.join(root, rel): data for rel, data in files.items()}
        _with_retries(lambda: fs.pipe(paths, **_put_options(fs)), what=f"{len(paths)} objects")

    def remove(self, rel: str) -> None:
        """Delete a file if it exists."""
        fs = self.fs
        path = self.path(rel)
        try:
            fs.rm_file(path)
        except FileNotFoundError:
            pass

    def remove_tree(self, rel: str) -> None:
        """Delete everything under ``rel`` (a no-op if there is nothing)."""
        fs = self.fs
        path = self.path(rel)
        if fs.exists(path):
            fs.rm(path, recursive=True)
        if isinstance(fs, LocalFileSystem):
            fs.makedirs(self.path("var"), exist_ok=True)

    def sync(self) -> None:
        """Make every file written so far durable before the manifest names it.

        Object stores acknowledge a PUT only once it is durable; on a local
        filesystem one ``sync`` is far cheaper than an ``fsync`` per file.
        """
        if self.is_local and hasattr(os, "sync"):
            os.sync()


def _atomic_local_write(path: str, data: bytes) -> None:
    tmp = f"{posixpath.dirname(path)}/.{posixpath.basename(path)}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        try:
            f = open(tmp, "wb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            os.makedirs(posixpath.dirname(path), exist_ok=True)
            f = open(tmp, "wb")  # noqa: SIM115
        with f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _put_options(fs: Any) -> dict[str, Any]:
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    if {"s3", "s3a"} & set(protocols):
        return {"ContentType": CONTENT_TYPE}
    if {"gs", "gcs"} & set(protocols):
        return {"content_type": CONTENT_TYPE}
    return {}


def _with_retries(call: Any, *, what: str) -> Any:
    """Retry transient storage errors with exponential backoff."""
    for attempt in range(_RETRIES):
        try:
            return call()
        except (OSError, TimeoutError) as err:
            if isinstance(err, (FileNotFoundError, PermissionError)) or attempt == _RETRIES - 1:
                raise
            delay = 0.2 * 2**attempt
            log.warning("writing %s failed (%s); retry %d in %.1fs", what, type(err).__name__, attempt + 1, delay)
            time.sleep(delay)
    return None
