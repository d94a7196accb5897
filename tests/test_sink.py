"""The local sink's write paths: atomic documents and in-place payloads."""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import pytest

from dask_cellucid.storage import Target
from dask_cellucid.storage import _local as sink

HAS_SYNCFS = sink._syncfs is not None


@pytest.fixture(params=["atomic", "in-place-fsync", "in-place-syncfs"])
def atomic(request, monkeypatch):
    """Each local write path: atomic documents; payloads fsynced one by one or by one syncfs."""
    if request.param == "in-place-syncfs":
        if not HAS_SYNCFS:
            pytest.skip("syncfs is Linux only")
        monkeypatch.setattr(sink, "_SYNCFS_MIN_FILES", 1)
    elif request.param == "in-place-fsync":
        monkeypatch.setattr(sink, "_syncfs", None)
    return request.param == "atomic"


def _open_fds(root) -> int:
    """Descriptors of this process open on ``root`` or anything under it.

    Counting only the test's own folder keeps descriptors that other threads
    open or close meanwhile (thread pools, an earlier test's flush) out of it.
    """
    root = os.path.realpath(root)
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed since listed, or the listing's own descriptor
            continue
        count += target == root or target.startswith(root + os.sep)
    return count


def _leftovers(root) -> list[str]:
    return [p.name for p in root.rglob("*") if p.name.endswith(".tmp")]


def test_overwrite_with_shorter_bytes_leaves_exactly_the_new_bytes(tmp_path, atomic):
    target = Target.from_url(tmp_path)
    target.write({"var/a.bin": b"x" * 1000}, atomic=atomic)
    target.write({"var/a.bin": b"y" * 10}, atomic=atomic)
    assert (tmp_path / "var" / "a.bin").read_bytes() == b"y" * 10


def test_writes_views_of_wider_dtypes_byte_for_byte(tmp_path, atomic):
    codes = np.arange(1000, dtype=np.uint16).reshape(10, 100)
    files = {f"var/{k}.u16": memoryview(codes[k]).cast("B") for k in range(10)}
    Target.from_url(tmp_path).write(files, atomic=atomic)
    for k in range(10):
        assert (tmp_path / "var" / f"{k}.u16").read_bytes() == codes[k].tobytes()
    assert not _leftovers(tmp_path)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts /proc/self/fd")
def test_no_descriptor_or_temporary_file_survives_a_write(tmp_path, atomic):
    target = Target.from_url(tmp_path)
    files = {f"var/g{k}.bin": os.urandom(100) for k in range(100)}
    before = _open_fds(tmp_path)
    target.write(files, atomic=atomic)
    assert _open_fds(tmp_path) == before
    assert not _leftovers(tmp_path)
    assert {p.name for p in (tmp_path / "var").iterdir()} == {f"g{k}.bin" for k in range(100)}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts /proc/self/fd")
def test_a_failing_file_closes_every_descriptor_and_raises(tmp_path, atomic):
    target = Target.from_url(tmp_path)
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "blocker").write_bytes(b"")  # a file where a folder is needed
    files = {f"var/g{k}.bin": b"abc" for k in range(50)}
    files["var/blocker/g.bin"] = b"abc"
    before = _open_fds(tmp_path)
    with pytest.raises(OSError):
        target.write(files, atomic=atomic)
    assert _open_fds(tmp_path) == before
    assert not _leftovers(tmp_path)


@pytest.mark.parametrize("atomic_path", [True, False], ids=["atomic", "in-place-fsync"])
def test_open_descriptors_stay_bounded_whatever_the_block_size(tmp_path, monkeypatch, atomic_path):
    # A block can hold thousands of genes: written files wait for their fsync
    # with at most a fixed number of descriptors open in the process.
    import threading

    monkeypatch.setattr(sink, "_syncfs", None)
    limit, open_now, most = 3, [0], [0]
    lock = threading.Lock()
    write_new, fsync_and_close = sink._write_new, sink._fsync_and_close

    def counting_write(path, data):
        fd = write_new(path, data)
        with lock:
            open_now[0] += 1
            most[0] = max(most[0], open_now[0])
        return fd

    def counting_close(fd):
        with lock:
            open_now[0] -= 1
        fsync_and_close(fd)

    monkeypatch.setattr(sink, "_open_slots", threading.BoundedSemaphore(limit))
    monkeypatch.setattr(sink, "_write_new", counting_write)
    monkeypatch.setattr(sink, "_fsync_and_close", counting_close)
    files = {f"var/g{k}.bin": bytes([k]) * 50 for k in range(40)}
    Target.from_url(tmp_path).write(files, atomic=atomic_path)
    assert 1 <= most[0] <= limit
    for k in range(40):
        assert (tmp_path / "var" / f"g{k}.bin").read_bytes() == bytes([k]) * 50


@pytest.mark.skipif(not HAS_SYNCFS, reason="syncfs is Linux only")
def test_a_block_of_payloads_is_flushed_by_one_syncfs_after_every_file_is_closed(
    tmp_path, monkeypatch
):
    calls, fsyncs = [], []
    real_syncfs, real_fsync = sink._syncfs, os.fsync

    def spy_syncfs(fd):
        calls.append(_open_fds(tmp_path))
        return real_syncfs(fd)

    def spy_fsync(fd):
        fsyncs.append(fd)
        return real_fsync(fd)

    writes, real_write_new = [], sink._write_new

    def spy_write_new(path, data):
        writes.append(_open_fds(tmp_path))
        return real_write_new(path, data)

    monkeypatch.setattr(sink, "_syncfs", spy_syncfs)
    monkeypatch.setattr(sink, "_write_new", spy_write_new)
    monkeypatch.setattr(os, "fsync", spy_fsync)
    files = {f"var/g{k}.bin": bytes([k]) * 100 for k in range(2 * sink._SYNCFS_MIN_FILES)}
    target = Target.from_url(tmp_path)
    target.prepare()
    before = _open_fds(tmp_path)
    target.write(files, atomic=False)
    # one flush for the block, with only its own directory descriptor open
    assert calls == [before + 1]
    # opened before the first write: syncfs reports the write-back errors that
    # happened since its descriptor was opened, so it must predate the writes
    assert writes == [before + 1] * len(files)
    assert fsyncs == []
    assert _open_fds(tmp_path) == before
    for k in range(len(files)):
        assert (tmp_path / "var" / f"g{k}.bin").read_bytes() == bytes([k]) * 100


@pytest.mark.skipif(not HAS_SYNCFS, reason="syncfs is Linux only")
def test_a_failed_syncfs_is_an_error_not_a_silent_success(tmp_path, monkeypatch):
    # Linux reports a write-back error (EIO, a full thin-provisioned disk...) only
    # through the flush; the block must then not count as written.
    import ctypes
    import errno

    def failing_syncfs(fd):
        ctypes.set_errno(errno.EIO)
        return -1

    monkeypatch.setattr(sink, "_syncfs", failing_syncfs)
    files = {f"var/g{k}.bin": b"abc" for k in range(sink._SYNCFS_MIN_FILES)}
    with pytest.raises(OSError, match="syncfs") as info:
        Target.from_url(tmp_path).write(files, atomic=False)
    assert info.value.errno == errno.EIO


_FORK_SCRIPT = """
import multiprocessing, sys
from dask_cellucid.storage import Target

from dask_cellucid.storage import _local as sink

target = Target.from_url(sys.argv[1])
target.write({f"var/p{k}.bin": b"parent" for k in range(5)}, atomic=False)
# and the background flush thread, where there is one
sink._SYNCFS_MIN_FILES = 1
target.write_payloads(["var/q.bin"], [b"parent"], lambda: None, flush_group="parent")
sink.await_flushes("parent")


def child_writes():
    target.write({f"var/c{k}.bin": b"child" for k in range(5)})
    target.write_payloads(["var/d.bin"], [b"child"], lambda: None, flush_group="child")
    sink.await_flushes("child")


child = multiprocessing.get_context("fork").Process(target=child_writes)
child.start()
child.join(30)
if child.is_alive():
    child.kill()
    sys.exit("the forked child hung")
sys.exit(child.exitcode)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_worker_can_write_after_its_parent_did(tmp_path):
    # The parent's fsync pool and flush thread do not survive a fork (their
    # threads stay behind): a child that used them would wait forever. Run in a fresh interpreter, so the
    # parent is only this script.
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-c", _FORK_SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert all((tmp_path / "var" / f"c{k}.bin").read_bytes() == b"child" for k in range(5))
    assert (tmp_path / "var" / "d.bin").read_bytes() == b"child"


@pytest.mark.skipif(not HAS_SYNCFS, reason="the background flush needs syncfs")
def test_what_follows_a_background_flush_runs_only_after_it(tmp_path, monkeypatch):
    import threading
    import time

    events, real_syncfs = [], sink._syncfs
    gate = threading.Event()

    def slow_syncfs(fd):
        events.append("flush-start")
        gate.wait(10)  # the caller has long returned by now
        events.append("flush-end")
        return real_syncfs(fd)

    monkeypatch.setattr(sink, "_syncfs", slow_syncfs)
    target = Target.from_url(tmp_path)
    target.prepare()
    files = {f"var/g{k}.bin": bytes([k]) * 10 for k in range(sink._SYNCFS_MIN_FILES)}
    target.write_payloads(
        list(files), files.values(), lambda: events.append("record"), flush_group="a"
    )
    events.append("returned")  # before the flush is done: the task goes on
    time.sleep(0.05)
    assert "record" not in events
    gate.set()
    sink.await_flushes("a")
    assert events.index("flush-end") < events.index("record")
    assert events.index("returned") < events.index("flush-end")
    assert all((tmp_path / "var" / f"g{k}.bin").read_bytes() == bytes([k]) * 10 for k in range(8))


@pytest.mark.skipif(not HAS_SYNCFS, reason="the background flush needs syncfs")
def test_a_failed_background_flush_is_raised_to_its_own_export_only(tmp_path, monkeypatch):
    import ctypes
    import errno

    real_syncfs, fail = sink._syncfs, [True]

    def syncfs(fd):
        if fail[0]:
            ctypes.set_errno(errno.EIO)
            return -1
        return real_syncfs(fd)

    monkeypatch.setattr(sink, "_syncfs", syncfs)
    target = Target.from_url(tmp_path)
    target.prepare()
    files = {f"var/g{k}.bin": b"abc" for k in range(sink._SYNCFS_MIN_FILES)}
    records = []
    target.write_payloads(
        list(files), files.values(), lambda: records.append("bad"), flush_group="bad"
    )
    with pytest.raises(OSError, match="syncfs") as info:
        sink.await_flushes("bad")
    assert info.value.errno == errno.EIO
    assert records == []  # nothing may name payloads that did not reach the disk
    fail[0] = False
    target.write_payloads(
        list(files), files.values(), lambda: records.append("good"), flush_group="good"
    )
    sink.await_flushes("good")  # another export's flushes are not poisoned
    sink.await_flushes("bad")  # and the error was reported once
    assert records == ["good"]


@pytest.mark.skipif(not HAS_SYNCFS, reason="the background flush needs syncfs")
def test_a_slow_disk_holds_the_writers_back_instead_of_queueing_without_end(tmp_path, monkeypatch):
    import threading

    real_syncfs, gate = sink._syncfs, threading.Event()

    def slow_syncfs(fd):
        gate.wait(10)
        return real_syncfs(fd)

    monkeypatch.setattr(sink, "_syncfs", slow_syncfs)
    monkeypatch.setattr(sink, "_MAX_QUEUED_FLUSHES", 1)
    target = Target.from_url(tmp_path)
    target.prepare()

    def block(k):
        files = {f"var/b{k}-{i}.bin": b"x" for i in range(sink._SYNCFS_MIN_FILES)}
        target.write_payloads(list(files), files.values(), lambda: None, flush_group="slow")

    block(0)  # taken by the flush thread, which now waits on the disk
    time.sleep(0.05)
    block(1)  # queued
    third = threading.Thread(target=block, args=(2,))
    third.start()
    third.join(0.2)
    assert third.is_alive()  # held back: one block already waits for the disk
    gate.set()
    third.join(10)
    assert not third.is_alive()
    sink.await_flushes("slow")


@pytest.mark.parametrize("flush", ["syncfs", "syncfs-background", "fsync"])
def test_payloads_drawn_from_one_reused_buffer_each_land_whole(tmp_path, monkeypatch, flush):
    # A sparse block's float32 payloads are views of one reused vector: each
    # must be written before the next overwrites it.
    if flush.startswith("syncfs") and not HAS_SYNCFS:
        pytest.skip("syncfs is Linux only")
    if flush == "fsync":
        monkeypatch.setattr(sink, "_syncfs", None)
    group = "reuse" if flush == "syncfs-background" else None
    buffer = bytearray(64)

    def payloads():
        for k in range(2 * sink._SYNCFS_MIN_FILES):
            buffer[:] = bytes([k]) * 64
            yield memoryview(buffer)

    target = Target.from_url(tmp_path)
    target.prepare()
    paths = [f"var/g{k}.bin" for k in range(2 * sink._SYNCFS_MIN_FILES)]
    recorded = []
    target.write_payloads(paths, payloads(), lambda: recorded.append(True), flush_group=group)
    if group:
        sink.await_flushes(group)
    assert recorded == [True]
    for k, path in enumerate(paths):
        assert (tmp_path / path).read_bytes() == bytes([k]) * 64
