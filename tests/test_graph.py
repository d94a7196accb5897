"""_graph.py: one Dask task per gene-column block that has a job."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import dask
import dask.array as da
import numpy as np

from dask_cellucid import _graph

N_CELLS = 4
WIDTHS = (2, 3, 1, 2)


@dataclass(frozen=True)
class Job:
    """A job shaped like the folder's: a dataclass holding tuples."""

    start: int
    names: tuple[str, ...]


def _matrix():
    return np.arange(N_CELLS * sum(WIDTHS), dtype=np.float32).reshape(N_CELLS, -1)


def _array(reads):
    """The matrix as Dask blocks of WIDTHS columns; ``reads`` collects every block read."""
    lock = threading.Lock()

    def read(block, block_info=None):
        with lock:
            reads.append(block_info[0]["chunk-location"][1])
        return block

    x = da.from_array(_matrix(), chunks=(N_CELLS, WIDTHS))
    return x.map_blocks(read, dtype=x.dtype)


def _jobs(indices):
    starts = np.concatenate([[0], np.cumsum(WIDTHS)])
    return [
        (i, Job(int(starts[i]), tuple(f"g{j}" for j in range(starts[i], starts[i + 1]))))
        for i in indices
    ]


def task(block, job, tag):
    """A block task: one small record per column, naming the block it saw."""
    assert isinstance(job, Job)
    return [(tag, job.start + k, float(block[0, k]), block.shape) for k in range(block.shape[1])]


def test_one_task_per_job_keyed_by_name_and_block_index():
    tasks = _graph.block_tasks(_array([]), task, _jobs([0, 2, 3]), "t", name="abc")
    assert len(tasks) == 3
    prefix = f"{_graph.TASK_PREFIX}-abc"
    assert [t.key for t in tasks] == [(prefix, 0), (prefix, 2), (prefix, 3)]


def test_each_task_gets_its_block_its_job_and_the_extra_args():
    x = _matrix()
    jobs = _jobs([1, 3])
    tasks = _graph.block_tasks(_array([]), task, jobs, "tag", name="n")
    out = dask.compute(*tasks, scheduler="synchronous")
    for (_, job), records in zip(jobs, out, strict=True):
        width = len(job.names)
        assert records == [
            ("tag", job.start + k, float(x[0, job.start + k]), (N_CELLS, width))
            for k in range(width)
        ]


def test_blocks_without_a_job_get_no_task_and_are_never_read():
    reads: list[int] = []
    x = _array(reads)
    tasks = _graph.block_tasks(x, task, _jobs([1, 3]), "t", name="skip")
    # culled to the tasks (as Dask does before running them), only their blocks are left
    culled = tasks[0].__dask_graph__().cull({t.key for t in tasks})
    assert sorted(k for k in culled if k[0] == x.name) == [(x.name, 0, 1), (x.name, 0, 3)]
    dask.compute(*tasks, scheduler="threads")
    assert sorted(reads) == [1, 3]


def test_no_jobs_no_tasks():
    assert _graph.block_tasks(_array([]), task, [], name="none") == []


def test_two_graphs_of_one_array_do_not_share_keys():
    reads: list[int] = []
    x = _array(reads)
    a = _graph.block_tasks(x, task, _jobs([0]), "a", name="export")
    b = _graph.block_tasks(x, task, _jobs([0]), "b", name="verify")
    assert a[0].key != b[0].key
    ra, rb = dask.compute(a[0], b[0], scheduler="synchronous")
    assert {r[0] for r in ra} == {"a"} and {r[0] for r in rb} == {"b"}
