"""The one writing path: plan -> block tasks -> run -> await flushes -> the format's finish.

A format plugs in as a *writer*: an object with the plan and target it writes,
and a few small named pieces (see :class:`Writer`). The engine knows no file
name or encoding; it resolves where tasks run once per call, builds one task
per block (:mod:`._graph`), runs them with progress, waits for the payloads to
be durable, and only then lets the format write its commit file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from . import _graph, _progress, _scheduler, storage

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    import dask.array as da

    from ._scheduler import Compute
    from .adapters import Source
    from .storage import Target
    from .types import Plan

log = logging.getLogger("dask_cellucid")


class Writer(Protocol):
    """What a format supplies to the engine, for one run."""

    plan: Plan
    target: Target

    #: ``block_task(block, job, target, flush_group) -> records``: module-level, picklable.
    block_task: Callable[..., list[Any]]

    def check(self) -> None:
        """Refuse what must be refused (reading only): nothing is written before this."""

    def begin(self) -> list[int]:
        """Withdraw an old output or resume an interrupted one; the blocks already written."""

    def jobs(self, skip: Sequence[int]) -> list[tuple[int, Any]]:
        """``(block index, job)`` for every block still to write."""

    def finish(self, records: list[Any], seconds: float) -> Any:
        """Write the commit file, last; return the run's result."""


@dataclass
class Export:
    """A planned export: nothing has been read or written yet.

    Returned by ``prepare(..., compute=False)``; run it with :meth:`execute`.
    """

    plan: Plan
    source: Source
    writer: Writer

    @property
    def target(self) -> Target:
        return self.writer.target

    def execute(
        self,
        scheduler: Any = None,
        num_workers: int | None = None,
        *,
        progress: bool | None = None,
    ) -> Any:
        """Write every block, then the format's commit file; return the format's result.

        Parameters
        ----------
        scheduler
            ``None`` (the current distributed Client if any, else threads),
            ``"threads"``, ``"processes"``, ``"synchronous"``, ``"distributed"``
            (the current Client, or a LocalCluster started and closed here), a
            scheduler address, or a :class:`distributed.Client`.
        num_workers
            Threads or processes for local schedulers; workers for a LocalCluster.
        progress
            Show a progress bar; by default only when stderr is a terminal.
        """
        with self.computing(scheduler, num_workers) as compute:
            return self.run(compute, progress=progress)

    @contextlib.contextmanager
    def computing(self, scheduler: Any, num_workers: int | None) -> Iterator[Compute]:
        """Check everything that needs no write, then start (or find) where tasks run.

        The scheduler is resolved once here, for the export and whatever
        follows it in the same call (a verification): one cluster, started
        before the first write, so a cluster that cannot start leaves nothing.
        """
        _scheduler.check(scheduler, num_workers)
        self.writer.check()
        with _scheduler.resolve(scheduler, num_workers) as compute:
            yield compute

    def run(self, compute: Compute, *, progress: bool | None = None) -> Any:
        """Run the export on ``compute`` (see :meth:`computing`)."""
        t0 = time.perf_counter()
        writer, plan, target = self.writer, self.plan, self.writer.target
        skip = writer.begin()
        x = self.source.column_blocks(plan.source_columns, plan.block_sizes)
        expected = ((plan.n_cells,), plan.block_sizes)
        if x.chunks != expected:
            msg = f"source chunks {x.chunks} do not match the plan's blocks {expected}"
            raise AssertionError(msg)
        # Tasks may leave their flush (and journal record) to a background
        # thread of their process where this run can wait for it afterwards:
        # in this process, or on every worker of a cluster (not in a pool of
        # processes that is gone once the tasks are done).
        flush_group = None if compute.local == "processes" else f"export-{uuid.uuid4().hex}"
        n_done = sum(plan.block_sizes[i] for i in skip)
        log.info(
            "exporting %d genes x %d cells in %d block tasks to %r%s",
            plan.n_genes,
            plan.n_cells,
            len(plan.block_sizes) - len(skip),
            target,
            f" ({n_done} genes already written)" if n_done else "",
        )
        # Uploads wait on the network: on object storage, twice as many threads as
        # cores keep both cores encoding (4 threads saturate 2 cores).
        threads = compute.num_workers or (None if target.is_local else 2 * (os.cpu_count() or 1))
        try:
            records = run_blocks(
                x,
                writer.block_task,
                writer.jobs(skip),
                target,
                flush_group,
                compute=compute,
                name=plan.fingerprint()[:8],
                n_items=plan.n_genes,
                initial=n_done,
                num_workers=threads,
                progress=progress,
            )
        except BaseException:
            # a retry may start at once: let no record of this run land after it
            with contextlib.suppress(Exception):
                _await_flushes(compute, flush_group)
            raise
        # every payload durable (and every journal record written) before the commit file
        _await_flushes(compute, flush_group)
        result = writer.finish(records, time.perf_counter() - t0)
        log.info("%s", result)
        return result


def run_blocks(
    x: da.Array,
    fn: Callable[..., list[Any]],
    jobs: Sequence[tuple[int, Any]],
    *args: Any,
    compute: Compute,
    name: str,
    n_items: int,
    initial: int = 0,
    num_workers: int | None = None,
    progress: bool | None = None,
    desc: str = "Exporting genes",
    unit: str = "gene",
) -> list[Any]:
    """Run ``fn(block, job, *args)`` for each job, with progress; the records, in job order."""
    import sys

    tasks = _graph.block_tasks(x, fn, jobs, *args, name=name)
    results = _progress.run(
        tasks,
        compute,
        n_genes=n_items,
        initial=initial,
        num_workers=num_workers,
        progress=sys.stderr.isatty() if progress is None else progress,
        desc=desc,
        unit=unit,
    )
    return [r for part in results for r in part]


def _await_flushes(compute: Compute, flush_group: str | None) -> None:
    """Wait for the background flushes of ``flush_group`` here, or on every worker."""
    if flush_group is None:
        return
    if compute.client is None:
        storage.await_flushes(flush_group)
    else:
        compute.client.run(storage.await_flushes, flush_group)
