"""Durable writes to a local disk: the engine under :class:`~dask_cellucid.storage.Target`.

Documents appear atomically (temporary name, fsync, rename, fsync of the
folder). Payloads, which nothing names until a later atomic document does, are
written in place and flushed: on Linux by one ``syncfs`` per block, which a
block task may leave to this process's background flush thread so that the
disk's wait overlaps encoding; elsewhere by an fsync per file. Measurements
behind these choices are in ``benchmarks/README.md``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import posixpath
import sys
import threading
import uuid
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence


def write_atomically(files: Mapping[str, Any]) -> None:
    """Write files so each appears atomically and is durable once this returns.

    Every file is written under a temporary name and fsynced, then all are
    renamed into place and their directories fsynced: a crash leaves either
    the old file or the complete new one.
    """
    staged = [
        (f"{posixpath.dirname(p)}/.{posixpath.basename(p)}.{uuid.uuid4().hex[:8]}.tmp", p)
        for p in files
    ]
    try:
        _write_and_fsync((tmp, files[path]) for tmp, path in staged)
        for tmp, path in staged:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in staged:
            unlink_quietly(tmp)
        raise
    _fsync_paths(sorted({posixpath.dirname(path) for _, path in staged}))


def write_in_place(paths: Sequence[str], payloads: Iterable[Any]) -> list[tuple[int, str]] | None:
    """Write files under their own names, each before the next payload is drawn.

    A crash can leave a partial file, which is harmless here: the caller names
    these files only after they are durable (journal record, then manifest),
    and a resumed run rewrites any block that has no record.

    On Linux a batch of files is written and closed, then flushed by one
    ``syncfs`` of their filesystem: one flush for the whole block instead of
    one per file. That flush is left to the caller: the descriptors to pass to
    :func:`_syncfs_and_close` are returned. Elsewhere, or for a few files, each
    file is fsynced on its own descriptor (no temporary name, second open or
    rename) before this returns None. Measurements: benchmarks/README.md.
    """
    if _syncfs is not None and len(paths) >= _SYNCFS_MIN_FILES:
        return _write_and_close(paths, payloads)
    _write_and_fsync(zip(paths, payloads, strict=True))
    _fsync_paths(sorted({posixpath.dirname(path) for path in paths}))
    return None


def flush_now(opened: list[tuple[int, str]] | None) -> None:
    if opened is not None:
        _syncfs_and_close(opened)


def _write_and_close(paths: Sequence[str], payloads: Iterable[Any]) -> list[tuple[int, str]]:
    """Write each payload in place (each before the next is drawn) and close it, not flushed.

    Returns the descriptors (opened first) that :func:`_syncfs_and_close` flushes them with.
    """
    opened = _open_for_sync(posixpath.dirname(path) for path in paths)
    try:
        for path, data in zip(paths, payloads, strict=True):
            os.close(_write_new(path, data))
    except BaseException:
        _close_all(opened)
        raise
    return opened


def _load_syncfs() -> Callable[[int], int] | None:
    """Linux's ``syncfs(2)`` from the C library, or None where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).syncfs  # ctypes releases the GIL in the call
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
    return fn  # type: ignore[no-any-return]


_syncfs = _load_syncfs()
# Below this many files a syncfs (which flushes everything dirty on the
# filesystem, other programs' writes included) is not worth it.
_SYNCFS_MIN_FILES = 8


def _open_for_sync(dirs: Iterable[str]) -> list[tuple[int, str]]:
    """A descriptor on each filesystem holding ``dirs``, opened before the writes it will flush.

    Since Linux 5.8 ``syncfs`` reports the write-back errors of the
    filesystem that happened since its descriptor was opened: one opened
    after the writes would miss an error of write-back that began meanwhile.
    """
    opened: list[tuple[int, str]] = []
    devices: set[int] = set()
    try:
        for d in sorted(set(dirs)):
            os.makedirs(d, exist_ok=True)
            fd = os.open(d, os.O_RDONLY)
            device = os.fstat(fd).st_dev
            if device in devices:
                os.close(fd)
                continue
            devices.add(device)
            opened.append((fd, d))
    except BaseException:
        _close_all(opened)
        raise
    return opened


def _syncfs_and_close(opened: list[tuple[int, str]]) -> None:
    """``syncfs`` through each descriptor, then close them all; raise if writing back failed."""
    try:
        for fd, d in opened:
            if _syncfs(fd) != 0:  # type: ignore[misc]
                err = ctypes.get_errno()
                raise OSError(err, f"syncfs failed: {os.strerror(err)}", d)
    finally:
        _close_all(opened)


def _close_all(opened: list[tuple[int, str]]) -> None:
    for fd, _ in opened:
        os.close(fd)


class _BackgroundFlush:
    """One thread per process that flushes written payloads, then runs what waited on that.

    A block task writes its payloads, hands their flush and its journal record
    here and starts the next block: the ``syncfs`` (a wait on the disk, 10 %
    of a task's time on M) overlaps encoding instead of stalling it. Blocks
    queued meanwhile are flushed together: the first ``syncfs`` writes them
    all back, the others find (almost) nothing left to write. Work is kept
    per group (one export), so :meth:`wait` waits for, and raises the errors
    of, its own export only.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: list[tuple[str, list[tuple[int, str]], Callable[[], None]]] = []
        self._pending: dict[str, int] = {}
        self._errors: dict[str, BaseException] = {}
        self._thread: threading.Thread | None = None

    def submit(self, group: str, opened: list[tuple[int, str]], then: Callable[[], None]) -> None:
        """Flush through ``opened`` (descriptors it then closes), then call ``then``."""
        with self._cond:
            # a disk slower than the encoders: hold the tasks back (bounded
            # descriptors and dirty pages) rather than queue without end
            while len(self._queue) >= _MAX_QUEUED_FLUSHES and self._thread is not None:
                self._cond.wait()
            if group in self._errors:  # fail the next task fast; wait() raises it too
                _close_all(opened)
                raise self._errors[group]
            self._queue.append((group, opened, then))
            self._pending[group] = self._pending.get(group, 0) + 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="cellucid-flush", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()

    def wait(self, group: str) -> None:
        """Return once every flush of ``group`` is done; raise the first that failed."""
        with self._cond:
            while self._pending.get(group):
                self._cond.wait()
            self._pending.pop(group, None)
            error = self._errors.pop(group, None)
        if error is not None:
            raise error

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                batch, self._queue = self._queue, []
                self._cond.notify_all()
            failed: BaseException | None = None
            # Each descriptor reports the errors since its own opening; after
            # the first, the syncfs calls have (almost) nothing left to write.
            for _, opened, _ in batch:
                try:
                    _syncfs_and_close(opened)
                except BaseException as err:  # reported to every group of the batch
                    failed = failed or err
            for group, _, then in batch:
                with self._cond:
                    error = failed or self._errors.get(group)
                if error is None:
                    try:
                        then()  # only after the flush: a journal record names durable files
                    except BaseException as err:
                        error = err
                with self._cond:
                    if error is not None:
                        self._errors.setdefault(group, error)
                    self._pending[group] -= 1
                    self._cond.notify_all()


_flush: _BackgroundFlush | None = None
_flush_lock = threading.Lock()
# Blocks waiting for their flush, per process, before a task waits to hand one over.
_MAX_QUEUED_FLUSHES = 32


def background_flush() -> _BackgroundFlush:
    global _flush
    with _flush_lock:
        if _flush is None:
            _flush = _BackgroundFlush()
        return _flush


def await_flushes(group: str) -> None:
    """Wait until this process has flushed every payload of ``group`` (see
    :meth:`Target.write_payloads`) and written what followed; raise what failed."""
    with _flush_lock:
        flush = _flush
    if flush is not None:
        flush.wait(group)


# fsyncs in flight at once: the device merges them (benchmarks/README.md).
_FSYNC_THREADS = 8
# Written files waiting for their fsync, per process: bounds open descriptors
# whatever the block size and thread count (a block can hold thousands of genes).
_MAX_OPEN = 128
_open_slots = threading.BoundedSemaphore(_MAX_OPEN)
_fsync_pool: ThreadPoolExecutor | None = None
_fsync_pool_lock = threading.Lock()
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)


def _forget_pool_after_fork() -> None:
    # A forked child inherits the pool object but none of its threads (work sent
    # to it would wait forever), and maybe a lock held by a parent's thread.
    global _fsync_pool, _fsync_pool_lock, _open_slots, _flush, _flush_lock
    _fsync_pool, _fsync_pool_lock = None, threading.Lock()
    _open_slots = threading.BoundedSemaphore(_MAX_OPEN)
    _flush, _flush_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def _pool() -> ThreadPoolExecutor:
    global _fsync_pool
    with _fsync_pool_lock:
        if _fsync_pool is None:
            _fsync_pool = ThreadPoolExecutor(_FSYNC_THREADS, thread_name_prefix="cellucid-fsync")
        return _fsync_pool


def _write_and_fsync(items: Iterable[tuple[str, Any]]) -> None:
    """Create or truncate each path and write its bytes; fsync them all before returning.

    Each file's fsync (and close) starts in the pool as soon as it is written,
    so flushing overlaps writing the next files. Raises the first error once
    every descriptor is closed.
    """
    pool = _pool()
    futures: list[Future[None]] = []
    try:
        for path, data in items:
            _open_slots.acquire()
            try:
                fd = _write_new(path, data)
            except BaseException:
                _open_slots.release()
                raise
            try:
                futures.append(pool.submit(_fsync_and_close, fd))
            except BaseException:
                os.close(fd)
                _open_slots.release()
                raise
    finally:
        wait(futures)  # every descriptor closed, whatever happened
    for future in futures:
        future.result()


def _write_new(path: str, data: Any) -> int:
    """Create or truncate ``path``, write ``data`` and return the still open descriptor."""
    try:
        fd = os.open(path, _WRITE_FLAGS, 0o644)
    except FileNotFoundError:
        os.makedirs(posixpath.dirname(path), exist_ok=True)
        fd = os.open(path, _WRITE_FLAGS, 0o644)
    try:
        view = memoryview(data).cast("B")
        while view:  # os.write may write less than asked
            view = view[os.write(fd, view) :]
    except BaseException:
        os.close(fd)
        raise
    return fd


def _fsync_and_close(fd: int) -> None:
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
        _open_slots.release()


def _fsync_paths(paths: list[str]) -> None:
    if len(paths) <= 1:
        for p in paths:
            _fsync_path(p)
        return
    list(_pool().map(_fsync_path, paths))  # re-raises the first error


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unlink_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
