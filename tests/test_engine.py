"""engine.py: plan -> block tasks -> flushes -> the format's finish, on one Compute per call."""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import pytest

from dask_cellucid import _scheduler, api, prepare, read_genes, verify
from dask_cellucid.adapters import as_source
from dask_cellucid.engine import Export
from dask_cellucid.errors import InvalidOptionError
from dask_cellucid.formats.folder import journal
from dask_cellucid.formats.folder.spec import MANIFEST_NAME, Encoding
from dask_cellucid.formats.folder.writer import FolderWriter, folder_options, write_block
from dask_cellucid.plan import build_plan
from dask_cellucid.storage import Target
from dask_cellucid.testing import assert_export_equal

N_CELLS, N_GENES, PER_BLOCK = 30, 20, 10
NAMES = [f"G{j}" for j in range(N_GENES)]


def _matrix() -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.uniform(0.5, 4.0, (N_CELLS, N_GENES)).astype(np.float32)


def _plan(x: np.ndarray):
    ids, options = folder_options(
        NAMES,
        encoding=Encoding(8, None, codec="zlib"),
        layout="key",
        var_gene_id_column=None,
        make_unique=False,
    )
    source = as_source(x)
    plan = build_plan(
        n_cells=N_CELLS,
        gene_ids=ids,
        source_columns=range(N_GENES),
        block_size=PER_BLOCK,
        options=options,
        source_token=source.data_token(),
    )
    return plan, source


class RecordingWriter(FolderWriter):
    """The real folder writer, noting the engine's calls and what was durable at finish."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[Any] = []
        self.trusted_at_finish: list[int] = []

    def check(self) -> None:
        self.calls.append("check")
        super().check()

    def begin(self) -> list[int]:
        skip = super().begin()
        self.calls.append(("begin", skip))
        return skip

    def jobs(self, skip):
        self.calls.append(("jobs", list(skip)))
        return super().jobs(skip)

    def finish(self, entries, seconds):
        self.calls.append(("finish", sorted(e.position for e in entries)))
        # every payload and journal record is on disk before the commit file
        self.trusted_at_finish = sorted(journal.completed(self.target, self.plan))
        assert not self.target.exists(MANIFEST_NAME)
        return super().finish(entries, seconds)


def fail_on_second_block(block, job, target, flush_group=None):
    if job.start == PER_BLOCK:
        msg = "disk on fire"
        raise RuntimeError(msg)
    return write_block(block, job, target, flush_group)


@pytest.mark.parametrize("scheduler", ["synchronous", "threads"])
def test_run_writes_every_block_then_finishes(tmp_path, scheduler):
    x = _matrix()
    plan, source = _plan(x)
    writer = RecordingWriter(plan, Target.from_url(tmp_path / "out"))
    export = Export(plan, source, writer)
    with export.computing(scheduler, None) as compute:
        assert compute.local == scheduler
        result = export.run(compute, progress=False)
    assert writer.calls == [
        "check",
        ("begin", []),
        ("jobs", []),
        ("finish", list(range(N_GENES))),
    ]
    assert writer.trusted_at_finish == list(range(N_GENES))
    assert (result.n_genes, result.n_genes_written, result.n_cells) == (N_GENES, N_GENES, N_CELLS)
    # the journal is gone, the genes decode to the input within half a step
    assert not (tmp_path / "out" / journal.JOURNAL_DIR).exists()
    decoded = read_genes(tmp_path / "out")
    for j, gene in enumerate(NAMES):
        step = (x[:, j].max() - x[:, j].min()) / 254
        assert np.abs(decoded[gene] - x[:, j]).max() <= step / 2 + 1e-6
    # the same bytes as prepare() writes for the same plan
    assert_export_equal(tmp_path / "out", _fresh_export(tmp_path / "ref", x))


def test_a_failed_block_task_propagates_and_leaves_no_manifest(tmp_path):
    plan, source = _plan(_matrix())
    target = Target.from_url(tmp_path / "out")
    writer = RecordingWriter(plan, target)
    writer.block_task = fail_on_second_block
    export = Export(plan, source, writer)
    with pytest.raises(RuntimeError, match="disk on fire"), export.computing("threads", None) as c:
        export.run(c, progress=False)
    assert [c for c in writer.calls if c[0] == "finish"] == []
    assert not target.exists(MANIFEST_NAME)
    assert journal.read_fingerprint(target) == plan.fingerprint()  # resumable


def test_run_resumes_and_writes_only_the_blocks_left(tmp_path):
    x = _matrix()
    plan, source = _plan(x)
    target = Target.from_url(tmp_path / "out")
    # an earlier run that wrote the first block only
    earlier = FolderWriter(plan, target)
    earlier.begin()
    _, first = earlier.jobs([])[0]
    write_block(x[:, :PER_BLOCK], first, target)

    writer = RecordingWriter(plan, target)
    export = Export(plan, source, writer)
    with export.computing("synchronous", None) as c:
        result = export.run(c, progress=False)
    assert writer.calls == [
        "check",
        ("begin", [0]),
        ("jobs", [0]),
        ("finish", list(range(PER_BLOCK, N_GENES))),  # this run's records only...
    ]
    # ...and the manifest covers every gene
    assert (result.n_genes, result.n_genes_written) == (N_GENES, N_GENES - PER_BLOCK)
    assert len(result.manifest["fields"]) == N_GENES
    assert_export_equal(tmp_path / "out", _fresh_export(tmp_path / "ref", x))


def _fresh_export(out, x):
    prepare(
        x,
        NAMES,
        out_dir=out,
        var_quantization=8,
        codec="zlib",
        genes_per_block=PER_BLOCK,
        progress=False,
    )
    return out


def test_execute_refuses_a_bad_scheduler_before_writing(tmp_path):
    plan, source = _plan(_matrix())
    writer = RecordingWriter(plan, Target.from_url(tmp_path / "out"))
    with pytest.raises(InvalidOptionError, match="scheduler='nope'"):
        Export(plan, source, writer).execute(scheduler="nope", progress=False)
    assert writer.calls == []
    assert not (tmp_path / "out").exists()


@contextlib.contextmanager
def _counting_resolves(monkeypatch):
    calls: list[Any] = []
    real = _scheduler.resolve

    @contextlib.contextmanager
    def resolve(scheduler, num_workers=None):
        calls.append(scheduler)
        with real(scheduler, num_workers) as compute:
            yield compute

    monkeypatch.setattr(_scheduler, "resolve", resolve)
    yield calls


def test_prepare_with_verify_resolves_the_scheduler_once(tmp_path, monkeypatch):
    with _counting_resolves(monkeypatch) as calls:
        result = prepare(
            _matrix(),
            NAMES,
            out_dir=tmp_path / "out",
            var_quantization=8,
            genes_per_block=PER_BLOCK,
            scheduler="threads",
            verify=True,
            progress=False,
        )
    assert result.n_genes == N_GENES
    assert calls == ["threads"]


@pytest.mark.distributed
@pytest.mark.slow
def test_prepare_with_verify_on_distributed_starts_one_cluster(tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    with pytest.raises(ValueError):
        distributed.default_client()  # else "distributed" would use it and start none
    started: list[Any] = []
    real_init = distributed.LocalCluster.__init__

    def counting_init(self, *args, **kwargs):
        started.append(self)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(distributed.LocalCluster, "__init__", counting_init)
    result = prepare(
        _matrix(),
        NAMES,
        out_dir=tmp_path / "out",
        var_quantization=8,
        genes_per_block=PER_BLOCK,
        scheduler="distributed",
        num_workers=1,
        verify=True,
        progress=False,
    )
    assert result.n_genes == N_GENES
    assert len(started) == 1, f"export and verification started {len(started)} LocalClusters"
    assert started[0].status.name == "closed"


# -- verify's max_memory --------------------------------------------------------------------
@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("engine") / "out"
    prepare(_matrix(), NAMES, out_dir=out, var_quantization=8, progress=False)
    return out


def test_verify_accepts_max_memory(exported):
    report = verify(
        exported, _matrix(), NAMES, max_memory="64MiB", scheduler="synchronous", progress=False
    )
    assert report.ok
    assert len(report.genes) == N_GENES


@pytest.mark.parametrize("bad", ["lots", 0, "-1GiB", True])
def test_verify_refuses_a_bad_max_memory(exported, bad):
    with pytest.raises(InvalidOptionError, match="max_memory="):
        verify(exported, _matrix(), NAMES, max_memory=bad, scheduler="synchronous", progress=False)


def test_verify_sizes_its_blocks_from_max_memory(tmp_path, monkeypatch):
    n_cells, n_genes = 4000, 200
    x = np.random.default_rng(1).uniform(0, 1, (n_cells, n_genes)).astype(np.float32)
    names = [f"g{j}" for j in range(n_genes)]
    prepare(x, names, out_dir=tmp_path, var_quantization=8, progress=False)
    n_tasks: list[int] = []
    real = api.run_blocks

    def counting(x, fn, jobs, *args, **kw):
        n_tasks.append(len(jobs))
        return real(x, fn, jobs, *args, **kw)

    monkeypatch.setattr(api, "run_blocks", counting)
    for budget in ("4GiB", "1MiB"):
        assert verify(
            tmp_path, x, names, max_memory=budget, scheduler="synchronous", progress=False
        ).ok
    big, small = n_tasks
    assert small > big  # a smaller budget, smaller blocks
