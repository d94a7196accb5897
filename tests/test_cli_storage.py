"""Object-storage mistakes: a short error naming the cause and the fix, before any write.

No credentials, an endpoint nobody listens on, a missing bucket, s3fs not installed:
each is found by one quick probe of the storage and comes out as a
:class:`~dask_cellucid.errors.StorageAccessError` (a ``StorageError``): on the command
line one line, exit status 2, no traceback (unless ``-v``), and nothing written.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from dask_cellucid import StorageError, prepare, verify
from dask_cellucid.testing import assert_export_equal, random_matrix

if TYPE_CHECKING:
    from conftest import S3Bucket

pytestmark = pytest.mark.s3

N_CELLS, N_GENES = 60, 8
X = random_matrix(N_CELLS, N_GENES, density=0.3, seed=7)
NAMES = [f"G{j}" for j in range(N_GENES)]
_CREDENTIAL_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
)


def run(
    *args: str, cwd: Path, env: dict[str, str] | None = None, prelude: str = ""
) -> subprocess.CompletedProcess[str]:
    """The command as users run it; ``prelude`` is Python run first (in a ``python -c``)."""
    exe = shutil.which("dask-cellucid")
    if exe and not prelude:
        cmd = [exe, *args]
    else:
        code = f"{prelude}\nimport sys\nfrom dask_cellucid.cli import main\nsys.exit(main())"
        cmd = [sys.executable, "-c", code, *args]
    return subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture
def no_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """No AWS credentials anywhere: environment, config files, instance metadata."""
    for name in _CREDENTIAL_VARS:
        monkeypatch.delenv(name, raising=False)
    empty = tmp_path / "aws-empty"
    empty.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return dict(os.environ)


@pytest.fixture
def closed_port() -> str:
    """An endpoint on a port nobody listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def small_h5ad(tmp_path: Path) -> Path:
    a = ad.AnnData(
        X.copy(),
        obs=pd.DataFrame(index=[f"c{i}" for i in range(N_CELLS)]),
        var=pd.DataFrame(index=NAMES),
    )
    a.obsm["X_umap"] = np.random.default_rng(0).normal(size=(N_CELLS, 2)).astype(np.float32)
    path = tmp_path / "data.h5ad"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a.write_h5ad(path)
    return path


def _keys(bucket: S3Bucket) -> list[str]:
    listed = bucket.boto.list_objects_v2(Bucket=bucket.bucket)
    return [o["Key"] for o in listed.get("Contents", [])]


def _one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: ")
    return line


# -- no credentials -----------------------------------------------------------------------
def test_no_credentials_for_the_output(
    tmp_path: Path, s3_bucket: S3Bucket, no_credentials: dict[str, str]
) -> None:
    opts = ["--storage-option", f"endpoint_url={s3_bucket.endpoint}"]
    line = _one_line_error(run("export", "-o", s3_bucket.url(), *opts, cwd=tmp_path))
    assert f"no credentials were found for {s3_bucket.url()}" in line
    assert "--storage-option key=... --storage-option secret=..." in line
    assert "AWS_ACCESS_KEY_ID" in line and "~/.aws" in line
    assert "storage_options" not in line
    assert _keys(s3_bucket) == []

    with pytest.raises(StorageError, match="no credentials were found") as err:
        prepare(X, NAMES, out_dir=s3_bucket.url(), storage_options=s3_bucket.storage_options)
    from dask_cellucid.errors import StorageAccessError

    assert isinstance(err.value, StorageAccessError)
    assert "storage_options={'key': ..., 'secret': ...}" in str(err.value)
    assert _keys(s3_bucket) == []


def test_no_credentials_for_the_input(
    tmp_path: Path, s3_bucket: S3Bucket, small_h5ad: Path, no_credentials: dict[str, str]
) -> None:
    s3_bucket.boto.upload_file(str(small_h5ad), s3_bucket.bucket, "in/data.h5ad")
    url = f"s3://{s3_bucket.bucket}/in/data.h5ad"
    opts = ["--input-storage-option", f"endpoint_url={s3_bucket.endpoint}"]
    line = _one_line_error(run("export", url, "out", *opts, cwd=tmp_path))
    assert f"no credentials were found for {url}" in line
    assert "--input-storage-option key=..." in line and "--input-storage-option anon=True" in line
    assert not (tmp_path / "out").exists()
    with pytest.raises(StorageError, match="input_storage_options="):
        prepare(url, out_dir=tmp_path / "out", input_storage_options=s3_bucket.storage_options)
    assert not (tmp_path / "out").exists()


# -- an endpoint nobody listens on --------------------------------------------------------
def test_unreachable_endpoint_fails_fast(
    tmp_path: Path, s3_bucket: S3Bucket, closed_port: str
) -> None:
    url = s3_bucket.url()
    t0 = time.perf_counter()
    with pytest.raises(StorageError, match="cannot connect to the storage endpoint") as err:
        prepare(X, NAMES, out_dir=url, storage_options={"endpoint_url": closed_port})
    seconds = time.perf_counter() - t0
    assert seconds < 5, f"the probe took {seconds:.1f} s; no retries were wanted"
    assert closed_port in str(err.value) and "storage_options={'endpoint_url': ...}" in str(
        err.value
    )

    opts = ["--storage-option", f"endpoint_url={closed_port}"]
    line = _one_line_error(run("export", "-o", url, *opts, cwd=tmp_path))
    assert f"cannot connect to the storage endpoint {closed_port} of {url}" in line
    assert "Check --storage-option endpoint_url=..." in line

    checked = _one_line_error(run("validate", url, *opts, cwd=tmp_path))
    assert f"cannot connect to the storage endpoint {closed_port} of {url}" in checked

    verbose = run("export", "-v", "-o", url, *opts, cwd=tmp_path)
    assert verbose.returncode == 2
    assert "Traceback" in verbose.stderr and "EndpointConnectionError" in verbose.stderr
    assert verbose.stderr.strip().splitlines()[-1] == line


def test_unreachable_input_endpoint_writes_nothing(
    tmp_path: Path, closed_port: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from dask_cellucid.cli import main

    url = "s3://some-bucket/data.h5ad"
    code = main(["export", url, str(tmp_path / "out"), "--input-storage-option",
                 f"endpoint_url={closed_port}"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"cannot connect to the storage endpoint {closed_port} of {url}" in err
    assert "--input-storage-option endpoint_url=..." in err
    assert not (tmp_path / "out").exists()
    with pytest.raises(StorageError, match="cannot connect"):
        verify(tmp_path, url, input_storage_options={"endpoint_url": closed_port})


# -- a bucket that does not exist, and no s3fs --------------------------------------------
def test_missing_bucket(tmp_path: Path, moto_endpoint: str) -> None:
    url = "s3://no-such-bucket-here/out"
    opts = ["--storage-option", f"endpoint_url={moto_endpoint}"]
    line = _one_line_error(run("export", "-o", url, *opts, cwd=tmp_path))
    assert "the bucket 'no-such-bucket-here' of s3://no-such-bucket-here/out does not exist" in line


def test_without_s3fs_the_message_names_the_extra(tmp_path: Path, small_h5ad: Path) -> None:
    hide = "import sys; sys.modules['s3fs'] = None  # as if s3fs were not installed"
    for args in (["export", "-o", "s3://bucket/out"], ["export", str(small_h5ad), "s3://b/out"],
                 ["export", "s3://bucket/data.h5ad", "out"]):  # fmt: skip
        line = _one_line_error(run(*args, cwd=tmp_path, prelude=hide))
        assert "s3:// URLs need the s3fs package" in line
        assert "pip install 'dask-cellucid[s3]'" in line
        assert not (tmp_path / "out").exists()


# -- inputs on object storage take their own storage options ----------------------------
def test_input_url_with_storage_options(
    tmp_path: Path, s3_bucket: S3Bucket, small_h5ad: Path
) -> None:
    s3_bucket.boto.upload_file(str(small_h5ad), s3_bucket.bucket, "in/data.h5ad")
    url = f"s3://{s3_bucket.bucket}/in/data.h5ad"
    opts: dict[str, Any] = {"endpoint_url": s3_bucket.endpoint}
    prepare(url, out_dir=tmp_path / "api", input_storage_options=opts, var_quantization=8)
    prepare(small_h5ad, out_dir=tmp_path / "local", var_quantization=8)
    assert_export_equal(tmp_path / "api", tmp_path / "local")
    assert verify(tmp_path / "api", url, input_storage_options=opts).ok

    flag = ["--input-storage-option", f"endpoint_url={s3_bucket.endpoint}"]
    proc = run("export", url, "cli", *flag, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "cli" / "points_2d.bin.gz").exists()  # obsm read through the options
    proc = run("verify", "cli", url, *flag, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    with pytest.raises(Exception, match="input_storage_options were given for the local path"):
        prepare(small_h5ad, out_dir=tmp_path / "x", input_storage_options=opts)
    with pytest.raises(Exception, match="input_storage_options apply to an input given as a URL"):
        prepare(X, NAMES, out_dir=tmp_path / "x", input_storage_options=opts)
    assert not (tmp_path / "x").exists()


# -- denied access, and a probe that is only throttled -------------------------------------
def test_access_denied_and_throttled_probe(tmp_path: Path, faulty_s3: Any) -> None:
    proxy, bucket = faulty_s3
    proxy.fail_next("HEAD", [403])  # the probe of the bucket: AccessDenied
    with pytest.raises(StorageError, match=r"access to s3://\S+ was denied") as err:
        prepare(X, NAMES, out_dir=bucket.url(), storage_options=bucket.storage_options)
    assert "may list, read and write this bucket" in str(err.value)
    assert proxy.seen["PUT"] == 0 and _keys(bucket) == []

    proxy.fail_next("HEAD", [503])  # throttled: left to the export's own retries
    result = prepare(X, NAMES, out_dir=bucket.url(), storage_options=bucket.storage_options)
    assert result.n_genes == N_GENES and proxy.injected[503] == 1
