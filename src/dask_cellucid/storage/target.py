"""Where the bytes go: an fsspec URL and the few operations a writer needs.

The only module that imports fsspec. A :class:`Target` is a small picklable
description (URL + ``storage_options``); the filesystem object is built inside
each process that uses it (fsspec caches one instance per process and drops
the cache after a fork), so forked or spawned workers never share an async
client. It knows no output format: writers name their own files.

On a local disk the writes go through :mod:`._local` (atomic documents,
payloads flushed per block). On object storage a block's files go out as one
bulk write: on an async filesystem (s3fs, gcsfs, adlfs) all its PUTs run
concurrently on one connection pool, and only the ones that failed with a
transient error are retried, with exponential backoff (:mod:`._retry`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import fsspec
from fsspec.asyn import AsyncFileSystem, _run_coros_in_chunks, sync
from fsspec.implementations.local import LocalFileSystem
from fsspec.utils import get_protocol

from dask_cellucid.errors import InvalidOptionError, StorageAccessError

from ._local import background_flush, flush_now, unlink_quietly, write_atomically, write_in_place
from ._retry import is_transient, write_with_retries

log = logging.getLogger("dask_cellucid.storage")

# Objects must not carry Content-Encoding: gzip (the browser would inflate them
# before the viewer does); see spec section 1.
CONTENT_TYPE = "application/octet-stream"
#: Manifests and other JSON documents.
JSON_CONTENT_TYPE = "application/json"

#: Connections per process to S3 when ``storage_options`` leave it unset
#: (botocore's default is 10). One block's bulk write runs this many PUTs at once.
DEFAULT_POOL = 64
#: Attempts of one object write before giving up (on top of the client library's own).

_S3 = frozenset({"s3", "s3a"})
_USERINFO = re.compile(r"(://)[^/@]*@")
# what fsspec implementations call a file's last change (local, S3, GCS, Azure...)
_STAMP_KEYS = ("mtime", "LastModified", "ETag", "etag", "updated", "last_modified", "created")


def resolve_url(
    url: str | os.PathLike[str],
    storage_options: Mapping[str, Any] | None,
    *,
    option: str = "storage_options",
    example: str = "s3://bucket/prefix",
) -> str:
    """``url`` as a string, a local path made absolute; options with a local path refused.

    ``option`` and ``example`` name the argument and a URL in the message.
    """
    url = os.fspath(url)
    if "://" in url:
        return url
    if storage_options:
        msg = (
            f"{option} were given for the local path {url!r}; drop them, or give a URL "
            f"such as {example!r}."
        )
        raise InvalidOptionError(msg)
    return os.path.abspath(os.path.expanduser(url))


@dataclass(frozen=True)
class Target:
    """An export root: a local path or any fsspec URL, plus its storage options.

    ``storage_options`` (credentials, ``endpoint_url``, ``client_kwargs``,
    ``config_kwargs``...) go to :func:`fsspec.url_to_fs` unchanged, except that
    S3 gets a connection pool of :data:`DEFAULT_POOL` when none is set. They are
    never shown: not by ``repr``, not in logs or errors.
    """

    url: str
    storage_options: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def of(
        cls,
        where: Target | str | os.PathLike[str],
        storage_options: Mapping[str, Any] | None = None,
    ) -> Target:
        """``where`` itself when it is a :class:`Target`, else :meth:`from_url`."""
        return where if isinstance(where, Target) else cls.from_url(where, storage_options)

    @classmethod
    def from_url(
        cls, url: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None
    ) -> Target:
        """A target for ``url``; local paths are made absolute.

        Raises
        ------
        InvalidOptionError
            ``storage_options`` given with a local path, or not a mapping.
        """
        if not isinstance(url, str | os.PathLike):
            msg = (
                f"expected a path or a URL such as 's3://bucket/prefix', "
                f"got {url!r} ({type(url).__name__})."
            )
            raise InvalidOptionError(msg)
        if storage_options is not None and not isinstance(storage_options, Mapping):
            msg = (
                f"storage_options must be a dict of fsspec options, got "
                f"{type(storage_options).__name__}."
            )
            raise InvalidOptionError(msg)
        url = resolve_url(url, storage_options)
        options = dict(storage_options or {})
        if get_protocol(url) in _S3:
            config = dict(options.get("config_kwargs") or {})
            config.setdefault("max_pool_connections", DEFAULT_POOL)
            options["config_kwargs"] = config
        return cls(url.rstrip("/") or "/", options)

    @property
    def display_url(self) -> str:
        """The URL with any ``user:password@`` part removed: safe for logs and errors."""
        return _USERINFO.sub(r"\1", self.url)

    def __repr__(self) -> str:  # never show credentials
        return f"Target({self.display_url!r})"

    # -- the filesystem, built where it is used ---------------------------------
    def _fs_root(self) -> tuple[Any, str]:
        # fsspec returns the process's cached instance for the same arguments
        # (and a fresh one after a fork), so this is cheap after the first call.
        if get_protocol(self.url) == "zip":
            return _archive_fs(self.url, self.storage_options)
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

    @property
    def pool_size(self) -> int:
        """Concurrent requests of one bulk write."""
        config = self.storage_options.get("config_kwargs") or {}
        return max(1, int(config.get("max_pool_connections", DEFAULT_POOL)))

    def path(self, rel: str) -> str:
        return posixpath.join(self.root, rel) if rel else self.root

    # -- before anything else: can the storage be used at all? ----------------------
    def _check_local_folder(self) -> None:
        """A local output must be a folder, or a path a folder can be made at."""
        path = os.path.abspath(self.url.removeprefix("file://"))
        probe = path
        while not os.path.exists(probe):
            parent = os.path.dirname(probe)
            if parent == probe:
                return
            probe = parent
        if os.path.isdir(probe):
            if not os.access(probe, os.W_OK | os.X_OK):
                msg = (
                    f"the output {path} cannot be written: {probe} is read-only for this "
                    "user. Choose a folder you may write to, or change its permissions."
                )
                raise StorageAccessError(msg)
            return
        where = (
            "is a file, not a folder"
            if probe == path
            else f"lies under {probe}, which is a file, not a folder"
        )
        msg = f"the output {path} {where}. Choose a folder path (a new one, or an export)."
        raise StorageAccessError(msg)

    def check_access(self, *, write: bool = True, option: str = "storage_options") -> None:
        """Probe the storage with one quick request; raise a short error naming the fix.

        Local paths are not probed. Elsewhere one metadata request is made
        (S3: with a 5 s connect timeout unless ``config_kwargs`` set one, and
        no retries, so that an unreachable endpoint fails in about a second,
        not after many retries): for an S3 ``write``, of the bucket (which
        must exist); otherwise of the path itself. A transient error
        (throttling, a 5xx) is left to the run's own retries. Missing
        credentials, an unreachable endpoint, denied access, a missing
        bucket or a missing filesystem package (s3fs) raise
        :class:`~dask_cellucid.errors.StorageAccessError`, before anything is
        read or written. ``option`` names the argument that carries this
        target's ``storage_options`` in the messages.

        For reads, only what makes every read fail is raised here (credentials,
        endpoint, package): a missing or forbidden path is left to the read,
        which says more about it.
        """
        if get_protocol(self.url) in ("file", "local"):
            if write:
                self._check_local_folder()
            return
        try:
            fs, root = self._probe_fs()
            if isinstance(fs, LocalFileSystem):
                return
            if write and get_protocol(self.url) in _S3:
                bucket = root.split("/", 1)[0]
                try:
                    fs.info(bucket)
                except FileNotFoundError:
                    msg = (
                        f"the bucket {bucket!r} of {self.display_url} does not exist, or these "
                        "credentials cannot see it. Create it first, or check the URL"
                        f"{' and the endpoint_url' if self._endpoint() else ''}."
                    )
                    raise StorageAccessError(msg) from None
            else:
                try:
                    fs.info(root)
                except (FileNotFoundError, PermissionError):
                    if write:
                        fs.exists(posixpath.dirname(root) or root)
        except StorageAccessError:
            raise
        except Exception as err:
            translated = access_error(
                err, self.display_url, option=option, reading=not write, endpoint=self._endpoint()
            )
            if translated is not None:
                raise translated from err
            if is_transient(err):  # throttled, a 5xx: the run's own retries deal with it
                log.debug("storage probe of %s: %s; going on", self.display_url, err)
                return
            raise

    def _probe_fs(self) -> tuple[Any, str]:
        """A filesystem for one quick probe: on S3, short timeouts and no retries."""
        options = dict(self.storage_options)
        if get_protocol(self.url) not in _S3:
            return self._fs_root()
        config = dict(options.get("config_kwargs") or {})
        config.setdefault("connect_timeout", 5)  # a timeout the user set is kept
        config.setdefault("read_timeout", 20)
        config["retries"] = {"total_max_attempts": 1}
        options["config_kwargs"] = config
        # a fresh instance: these settings must not reach the cached one the export uses
        options["skip_instance_cache"] = True
        fs, root = fsspec.url_to_fs(self.url, **options)
        if hasattr(fs, "retries"):
            fs.retries = 1  # s3fs's own retry loop, on top of botocore's
        return fs, root.rstrip("/")

    def _endpoint(self) -> str:
        endpoint = self.storage_options.get("endpoint_url") or (
            self.storage_options.get("client_kwargs") or {}
        ).get("endpoint_url")
        return _USERINFO.sub(r"\1", str(endpoint)) if endpoint else ""

    # -- reads --------------------------------------------------------------------
    def read(self, rel: str) -> bytes | None:
        """The file's bytes, or None if there is no such file."""
        try:
            return self.fs.cat_file(self.path(rel))  # type: ignore[no-any-return]
        except FileNotFoundError:
            return None

    def read_many(self, rels: list[str]) -> dict[str, bytes | None]:
        """Several small files at once (concurrently on object storage).

        A missing file maps to None; any other error is raised.
        """
        fs, root = self._fs_root()
        paths = [posixpath.join(root, rel) for rel in rels]
        if isinstance(fs, AsyncFileSystem) and len(paths) > 1:
            out = sync(fs.loop, _gather, [fs._cat_file(p) for p in paths], self.pool_size)
        else:
            out = []
            for p in paths:
                try:
                    out.append(fs.cat_file(p))
                except FileNotFoundError as err:
                    out.append(err)
        failed = next(
            (
                v
                for v in out
                if isinstance(v, BaseException) and not isinstance(v, FileNotFoundError)
            ),
            None,
        )
        if failed is not None:
            raise failed
        return {
            rel: (None if isinstance(v, BaseException) else v)
            for rel, v in zip(rels, out, strict=True)
        }

    def exists(self, rel: str) -> bool:
        fs = self.fs
        path = self.path(rel)
        fs.invalidate_cache(path)  # another process may have written it since
        return bool(fs.exists(path))

    def sizes(self, prefix: str) -> dict[str, int]:
        """Sizes of the files under ``prefix``, keyed by path relative to the root.

        Always a fresh listing: other processes (workers, an earlier run) may
        have written since this process last looked.
        """
        fs, root = self._fs_root()
        base = posixpath.join(root, prefix)
        fs.invalidate_cache(base)
        try:
            found = fs.find(base, detail=True)
        except FileNotFoundError:
            return {}
        n = len(root) + 1
        return {
            p[n:] if p.startswith(root + "/") else p: int(info["size"]) for p, info in found.items()
        }

    def stamp(self, rel: str = "") -> str:
        """A digest of the names, sizes and modification stamps stored at ``rel``.

        For a file, its own; for a folder (a zarr store), every file under it.
        It changes when the data is rewritten, so an export can tell that its
        input changed without reading it.
        """
        fs, root = self._fs_root()
        path = posixpath.join(root, rel) if rel else root
        info = fs.info(path)
        found = fs.find(path, detail=True).values() if info["type"] == "directory" else [info]
        digest = hashlib.sha256()
        for entry in sorted(found, key=lambda e: str(e["name"])):
            when = next((entry[k] for k in _STAMP_KEYS if entry.get(k) is not None), None)
            digest.update(f"{entry['name']}|{entry.get('size')}|{when}\n".encode())
        return digest.hexdigest()[:24]

    # -- writes -------------------------------------------------------------------
    def prepare(self, *dirs: str) -> None:
        """Create the root (and ``dirs`` under it) where a filesystem needs directories.

        On a local filesystem, also remove temporary files that a killed writer
        left in them (they are never named by anything).
        """
        fs, root = self._fs_root()
        if isinstance(fs, LocalFileSystem):
            fs.makedirs(root, exist_ok=True)
            for rel in dirs:
                where = posixpath.join(root, rel)
                fs.makedirs(where, exist_ok=True)
                for name in os.listdir(where):
                    if name.startswith(".") and name.endswith(".tmp"):
                        unlink_quietly(posixpath.join(where, name))

    def write(self, files: Mapping[str, Any], *, atomic: bool = True) -> None:
        """Write several files, durably; one bulk request on object storage.

        Transient failures (throttling, server errors, dropped connections) are
        retried per object with exponential backoff.

        Parameters
        ----------
        files
            Bytes (or byte views) by path relative to the root.
        atomic
            On a local filesystem, make each file appear whole or not at all
            (temporary name, then rename). ``False`` writes in place, which
            saves a rename, an extra open and a directory entry per file: for
            payloads that nothing names until a later, atomic document does.
            Either way every file is on disk (flushed) when this returns.

        Raises
        ------
        StorageError
            Some object could still not be written after :data:`ATTEMPTS` tries.
        """
        if not files:
            return
        fs, root = self._fs_root()
        if isinstance(fs, LocalFileSystem):
            local = {posixpath.join(root, rel): data for rel, data in files.items()}
            if atomic:
                write_atomically(local)
            else:
                flush_now(write_in_place(list(local), local.values()))
            return
        pending = {posixpath.join(root, rel): data for rel, data in files.items()}
        if isinstance(fs, AsyncFileSystem):
            limit = self.pool_size

            def put(batch: dict[str, bytes]) -> list[Any]:
                coros = [fs._pipe_file(p, d, **_put_options(fs, p)) for p, d in batch.items()]
                return sync(fs.loop, _gather, coros, limit)  # type: ignore[no-any-return]
        else:

            def put(batch: dict[str, bytes]) -> list[Any]:
                out: list[Any] = []
                for p, d in batch.items():
                    try:
                        fs.pipe_file(p, d, **_put_options(fs, p))
                        out.append(None)
                    except Exception as err:
                        out.append(err)
                return out

        write_with_retries(put, pending, where=self.display_url)

    def write_payloads(
        self,
        paths: Sequence[str],
        payloads: Iterable[Any],
        then: Callable[[], None],
        *,
        flush_group: str | None = None,
    ) -> None:
        """Write payloads in place, make them durable, then call ``then``.

        On a local filesystem each payload is written before the next is
        drawn, so an iterator may hand out views of one reused buffer;
        elsewhere they are gathered into one bulk write, and must be
        independent bytes. ``then`` (a block's journal record) runs only
        once the payloads are on disk. With a ``flush_group``, on a local
        Linux filesystem, the flush and ``then`` are left to this process's
        background flush thread, so the caller goes on encoding while the
        disk catches up; blocks that pile up are flushed together.
        :func:`await_flushes` waits for a group's flushes and raises what
        failed. Otherwise, or for a few files, both happen before this
        returns.
        """
        fs, root = self._fs_root()
        if not isinstance(fs, LocalFileSystem):
            self.write(dict(zip(paths, payloads, strict=True)), atomic=False)
            then()
            return
        opened = write_in_place([posixpath.join(root, rel) for rel in paths], payloads)
        if opened is not None and flush_group is not None:
            background_flush().submit(flush_group, opened, then)
            return
        flush_now(opened)
        then()

    def upload(self, local_path: str, rel: str = "") -> None:
        """Copy the local file ``local_path`` to ``rel`` (the target itself by default):
        one object written whole on object storage."""
        fs, root = self._fs_root()
        path = posixpath.join(root, rel) if rel else root
        fs.put_file(local_path, path, **_put_options(fs, path))
        fs.invalidate_cache(path)

    def remove(self, rel: str) -> None:
        """Delete a file if it exists."""
        fs = self.fs
        path = self.path(rel)
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(path)
        fs.invalidate_cache(path)

    def remove_tree(self, rel: str) -> None:
        """Delete everything under ``rel`` (a no-op if there is nothing)."""
        fs = self.fs
        path = self.path(rel)
        fs.invalidate_cache(path)
        if fs.exists(path):
            fs.rm(path, recursive=True)
        fs.invalidate_cache(path)


#: zip filesystems of this process (fsspec caches none), by process, URL and options.
_ARCHIVES: dict[tuple[int, str], tuple[Any, str]] = {}


def _archive_fs(url: str, options: Mapping[str, Any]) -> tuple[Any, str]:
    """A ``zip://`` URL's filesystem, built once per process (it reads the central directory)."""
    from fsspec.utils import tokenize

    key = (os.getpid(), tokenize(url, dict(options)))
    hit = _ARCHIVES.get(key)
    if hit is None:
        if len(_ARCHIVES) >= 16:
            _ARCHIVES.clear()
        fs, root = fsspec.url_to_fs(url, **options)
        hit = _ARCHIVES[key] = (fs, root.rstrip("/"))
    return hit


async def _gather(coros: list[Any], limit: int) -> list[Any]:
    """Run coroutines, at most ``limit`` at once; exceptions are returned, not raised."""
    return await _run_coros_in_chunks(  # type: ignore[no-any-return]
        coros, batch_size=limit, return_exceptions=True, nofiles=True
    )


def _put_options(fs: Any, path: str) -> dict[str, Any]:
    # An explicit type, and never a Content-Encoding: the .gz suffix alone says
    # gzip, and the viewer inflates it itself (spec section 1).
    ctype = JSON_CONTENT_TYPE if path.endswith(".json") else CONTENT_TYPE
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    if _S3 & set(protocols):
        return {"ContentType": ctype}
    if {"gs", "gcs"} & set(protocols):
        return {"content_type": ctype}
    return {}


# -- storage errors, in words ----------------------------------------------------------------
# Exceptions of the client libraries (botocore, aiobotocore, aiohttp, s3fs, gcsfs, adlfs),
# recognised by class name so that none of them is imported here.
_NO_CREDENTIALS = frozenset(
    {
        "NoCredentialsError",
        "PartialCredentialsError",
        "CredentialRetrievalError",
        "DefaultCredentialsError",
        "ClientAuthenticationError",
    }
)
_UNREACHABLE = frozenset(
    {
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ProxyConnectionError",
        "ClientConnectorError",
        "ClientConnectionError",
        "ServerDisconnectedError",
        "ConnectionError",
        "gaierror",
    }
)
_TIMEOUT = frozenset({"ReadTimeoutError", "FSTimeoutError", "ServerTimeoutError", "TimeoutError"})
_DENIED_WORDS = re.compile(
    r"AccessDenied|InvalidAccessKeyId|SignatureDoesNotMatch|ExpiredToken|InvalidToken|Forbidden"
)
# the extra of this project that installs a protocol's filesystem
_EXTRAS = {"s3": ("s3fs", "'dask-cellucid[s3]'"), "s3a": ("s3fs", "'dask-cellucid[s3]'")}


def access_error(
    err: BaseException,
    where: str | None = None,
    *,
    option: str = "storage_options",
    reading: bool = False,
    endpoint: str = "",
) -> StorageAccessError | None:
    """The short error to raise instead of ``err``, a client library's storage error.

    ``where`` is the URL being accessed (for the message; never with
    credentials), ``option`` the argument that carries its storage options.
    None when ``err`` is not one of the errors recognised here (missing
    credentials or filesystem package, unreachable endpoint, time-outs, denied
    access). The caller raises the result ``from err``.
    """
    place = where or "the storage"
    protocol = get_protocol(where) if where and "://" in where else ""
    for e in _chain(err):
        names = {c.__name__ for c in type(e).__mro__}
        reason = _reason(e)
        if isinstance(e, ImportError) and (protocol or "to access" in str(e)):
            pkg, extra = _EXTRAS.get(protocol, ("", ""))
            if pkg:
                msg = (
                    f"{protocol}:// URLs need the {pkg} package, which is not installed: "
                    f"pip install {extra} (or pip install {pkg})."
                )
            else:
                msg = f"{place} needs a filesystem package that is not installed: {reason}."
            return StorageAccessError(msg)
        if names & _NO_CREDENTIALS or "Unable to locate credentials" in str(e):
            if protocol in _S3 or protocol == "":
                how = (
                    f"Pass them with {option}={{'key': ..., 'secret': ...}} (or "
                    f"{option}={{'profile': NAME}}), or set the environment variables "
                    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or write them to "
                    "~/.aws/credentials."
                )
            else:
                how = f"Pass them with {option}, or configure the storage's default credentials."
            if reading:
                how += f" A public bucket is read with {option}={{'anon': True}}."
            return StorageAccessError(f"no credentials were found for {place}. {how}")
        if names & _UNREACHABLE or (
            isinstance(e, ConnectionError) and not isinstance(e, BrokenPipeError)
        ):
            at = endpoint or _endpoint_of(e)
            msg = (
                f"cannot connect to the storage endpoint{f' {at}' if at else ''} of {place} "
                f"({reason}). Check {option}={{'endpoint_url': ...}}: the address and port of "
                "your S3-compatible store (leave it out for AWS itself), and that the store is "
                "running and reachable from here."
            )
            return StorageAccessError(msg)
        if names & _TIMEOUT:
            msg = (
                f"the storage endpoint{f' {endpoint}' if endpoint else ''} of {place} did not "
                f"answer in time ({reason}). Check {option}={{'endpoint_url': ...}} and the "
                "network, then run again."
            )
            return StorageAccessError(msg)
        if isinstance(e, PermissionError) or _DENIED_WORDS.search(f"{type(e).__name__} {e}"):
            msg = (
                f"access to {place} was denied ({reason}). Check the credentials "
                f"({option} key/secret/profile, or the AWS_* environment variables) and that "
                "they may list, read and write this bucket and prefix."
            )
            return StorageAccessError(msg)
        if isinstance(e, ValueError) and "Protocol not known" in str(e):
            msg = (
                f"{place}: {reason}. Check the URL's protocol (s3://, gs://, ... or a local path)."
            )
            return StorageAccessError(msg)
    return None


def _chain(err: BaseException) -> list[BaseException]:
    """``err`` and what caused it (a few levels: libraries wrap each other's errors)."""
    out: list[BaseException] = []
    e: BaseException | None = err
    while e is not None and len(out) < 5 and e not in out:
        out.append(e)
        e = e.__cause__ or e.__context__
    return out


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    text = _USERINFO.sub(r"\1", text)
    return f"{type(err).__name__}: {text[:160]}" if text else type(err).__name__


def _endpoint_of(err: BaseException) -> str:
    kwargs = getattr(err, "kwargs", None)
    url = kwargs.get("endpoint_url") if isinstance(kwargs, dict) else None
    if not url:
        return ""
    # the request's URL: keep the scheme and host
    m = re.match(r"[a-z][a-z0-9+.-]*://[^/]+", str(url))
    return _USERINFO.sub(r"\1", m.group(0) if m else str(url))


def read_fingerprint(target: Target, rel: str) -> str | None:
    """The ``fingerprint`` of the JSON document ``rel`` (an unfinished run's journal head).

    None when there is no such file; ``"<unreadable>"`` when it holds no
    fingerprint (a run cut short while writing it), which matches no plan.
    """
    raw = target.read(rel)
    if raw is None:
        return None
    try:
        return str(json.loads(raw)["fingerprint"])
    except (ValueError, KeyError, TypeError):
        return "<unreadable>"
