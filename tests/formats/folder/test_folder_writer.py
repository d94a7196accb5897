"""formats/folder/writer.py: the block task and the writer's begin/jobs/finish."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import scipy.sparse as sp

from dask_cellucid.errors import ExportWarning, InputShapeError, TargetExistsError
from dask_cellucid.formats.folder import journal, kernels, manifest
from dask_cellucid.formats.folder.spec import MANIFEST_NAME, Encoding
from dask_cellucid.formats.folder.writer import (
    FolderWriter,
    block_jobs,
    encode_files,
    folder_options,
    write_block,
)
from dask_cellucid.plan import build_plan
from dask_cellucid.storage import Target

N_CELLS = 9
IDS = ["G0", "G1", "G2", "G3", "G4"]


def _plan(bits=8, compression=None, layout="key"):
    ids, options = folder_options(
        IDS,
        encoding=Encoding(bits, compression, codec="zlib"),
        layout=layout,
        var_gene_id_column=None,
        make_unique=False,
    )
    return build_plan(
        n_cells=N_CELLS, gene_ids=ids, source_columns=range(5), block_size=2, options=options
    )


def _matrix():
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 4, (N_CELLS, len(IDS))).astype(np.float32)
    x[:, 1] = 2.5  # constant
    x[0, 2] = np.nan
    x[:, 3] = 0.0  # all zero
    return x


def _block(x, job):
    return x[:, job.start : job.start + len(job.gene_ids)]


@pytest.fixture
def target(tmp_path):
    return Target.from_url(tmp_path / "out")


def test_block_jobs_slice_the_plan():
    plan = _plan()
    jobs = block_jobs(plan)
    assert [(j.start, j.gene_ids) for j in jobs] == [
        (0, ("G0", "G1")),
        (2, ("G2", "G3")),
        (4, ("G4",)),
    ]
    assert {j.n_cells for j in jobs} == {N_CELLS}
    assert jobs[1].paths == ("var/G2.values.u8", "var/G3.values.u8")
    assert {j.fingerprint for j in jobs} == {plan.fingerprint()}


@pytest.mark.parametrize(("bits", "compression"), [(8, None), (16, 6), (None, None), (None, 1)])
@pytest.mark.parametrize("sparse", [False, True])
def test_encode_files_matches_the_kernels(bits, compression, sparse):
    plan = _plan(bits, compression)
    x = _matrix()
    job = block_jobs(plan)[1]
    source = _block(x, job)
    if sparse:
        source = np.nan_to_num(source, nan=0.0)
    expected = kernels.encode_block(source, bits)
    block = sp.csr_matrix(source) if sparse else source
    payloads, entries = encode_files(block, job)
    assert entries == []  # filled as payloads are drawn
    drawn = [bytes(p) for p in payloads]
    assert len(drawn) == len(job.paths)
    for k, (data, entry) in enumerate(zip(drawn, entries, strict=True)):
        raw = gzip.decompress(data) if compression else data
        assert raw == expected.values[k].tobytes()
        assert entry.position == job.start + k
        assert entry.gene_id == job.gene_ids[k]
        assert entry.nbytes == len(data)
        np.testing.assert_equal(entry.lo, expected.lo[k])
        np.testing.assert_equal(entry.hi, expected.hi[k])
        assert entry.n_nonfinite == expected.n_nonfinite[k]
    assert entries[1].all_zero


@pytest.mark.parametrize("shape", [(N_CELLS, 3), (N_CELLS - 1, 2)])
def test_encode_files_refuses_a_block_that_is_not_the_jobs_shape(shape):
    job = block_jobs(_plan())[0]
    with pytest.raises(InputShapeError, match="chunks declare"):
        encode_files(_matrix()[: shape[0], : shape[1]], job)


@pytest.mark.parametrize("compression", [None, 6])
def test_write_block_writes_payloads_then_its_record(target, compression):
    plan = _plan(16, compression)
    target.prepare("var")
    journal.begin(target, plan)
    x = _matrix()
    job = block_jobs(plan)[1]
    entries = write_block(_block(x, job), job, target)
    files = target.sizes("var")
    assert {p: files[p] for p in job.paths} == {
        e_path: e.nbytes for e_path, e in zip(job.paths, entries, strict=True)
    }
    rel, record = journal.block_record(job.fingerprint, job.start, entries)
    assert target.read(rel) == record
    # a later run trusts exactly these genes
    assert sorted(journal.completed(target, plan)) == [2, 3]
    raw = target.read(job.paths[0])
    raw = gzip.decompress(raw) if compression else raw
    assert raw == kernels.encode_block(_block(x, job), 16).values[0].tobytes()


def _old_export(target):
    """A finished export of other genes, as an earlier run left it."""
    target.write({MANIFEST_NAME: b'{"old": true}', "var/OLD.values.u8": b"old"})


def test_begin_refuses_an_existing_manifest_without_force(target):
    _old_export(target)
    writer = FolderWriter(_plan(), target)
    with pytest.raises(TargetExistsError, match="force=True"):
        writer.begin()
    assert target.read(MANIFEST_NAME) == b'{"old": true}'
    assert target.read("var/OLD.values.u8") == b"old"
    assert journal.read_fingerprint(target) is None


def test_begin_with_force_withdraws_the_old_export(target):
    _old_export(target)
    plan = _plan()
    writer = FolderWriter(plan, target, force=True)
    assert writer.begin() == []
    assert not target.exists(MANIFEST_NAME)
    assert target.sizes("var") == {}
    assert journal.read_fingerprint(target) == plan.fingerprint()


def test_begin_resumes_the_blocks_already_written(target):
    plan = _plan()
    x = _matrix()
    first = FolderWriter(plan, target)
    assert first.begin() == []
    jobs = dict(first.jobs([]))
    write_block(_block(x, jobs[2]), jobs[2], target)
    again = FolderWriter(plan, target)
    assert again.begin() == [2]
    assert [i for i, _ in again.jobs([2])] == [0, 1]


def test_begin_refuses_an_unfinished_export_of_another_plan(target):
    other = _plan(bits=16)
    FolderWriter(other, target).begin()
    with pytest.raises(TargetExistsError, match="other settings"):
        FolderWriter(_plan(), target).begin()
    assert journal.read_fingerprint(target) == other.fingerprint()


def test_finish_writes_the_manifest_last_and_clears_the_journal(target):
    plan = _plan()
    x = _matrix()
    writer = FolderWriter(plan, target)
    writer.begin()
    entries = [e for i, job in writer.jobs([]) for e in write_block(_block(x, job), job, target)]
    with pytest.warns(ExportWarning) as caught:
        result = writer.finish(entries, 1.0)
    messages = [str(w.message) for w in caught]
    assert any("NaN or Inf values ('G2')" in m for m in messages)
    assert any("zero in every cell ('G3')" in m for m in messages)
    doc = manifest.loads(target.read(MANIFEST_NAME))
    assert doc == result.manifest == manifest.build(plan, entries)
    assert (result.n_genes, result.n_genes_written, result.n_cells) == (5, 5, N_CELLS)
    assert result.payload_bytes == sum(target.sizes("var").values())
    assert target.sizes(journal.JOURNAL_DIR) == {}
