from __future__ import annotations

import contextlib
import http.client
import logging
import os
import shlex
import shutil
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

# Fake credentials for the loopback S3 server, set before anything (moto, boto3,
# s3fs, the LocalCluster's worker processes) starts: no test ever reaches a real
# account, and the workers inherit the same environment.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
)
os.environ.pop("AWS_PROFILE", None)


@pytest.fixture(autouse=True)
def _quiet_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="dask_cellucid")


# -- a real S3 API server on loopback ---------------------------------------------------
@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's server mode on a free port (fixed ports deadlock under xdist)."""
    server_mod = pytest.importorskip("moto.moto_server.threaded_moto_server")
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@dataclass
class S3Bucket:
    """A fresh bucket on the loopback server and how to reach it."""

    endpoint: str
    bucket: str
    boto: Any = field(repr=False)

    @property
    def storage_options(self) -> dict[str, Any]:
        return {"endpoint_url": self.endpoint}

    def url(self, prefix: str = "out") -> str:
        return f"s3://{self.bucket}/{prefix}"

    def objects(self, prefix: str = "out") -> dict[str, bytes]:
        """Every object under ``prefix`` (journal excluded), by path relative to it."""
        out = {}
        pages = self.boto.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix + "/"
        )
        for page in pages:
            for obj in page.get("Contents", []):
                rel = obj["Key"][len(prefix) + 1 :]
                if not rel.startswith(".dask-cellucid"):
                    body = self.boto.get_object(Bucket=self.bucket, Key=obj["Key"])["Body"]
                    out[rel] = body.read()
        return out


def _make_bucket(endpoint: str) -> S3Bucket:
    boto3 = pytest.importorskip("boto3")
    # boto3, not s3fs.mkdir: moto refuses a bucket made by s3fs's mkdir.
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    name = f"t-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return S3Bucket(endpoint, name, client)


@pytest.fixture
def s3_bucket(moto_endpoint: str) -> S3Bucket:
    """A fresh bucket per test on the session's moto server."""
    return _make_bucket(moto_endpoint)


# -- faults: a loopback proxy in front of moto ------------------------------------------
_ERROR_BODIES = {
    503: ("SlowDown", "Please reduce your request rate."),
    500: ("InternalError", "We encountered an internal error. Please try again."),
    403: ("AccessDenied", "Access Denied"),
}
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection"}


@dataclass
class FaultyProxy:
    """An HTTP proxy that answers some requests with S3 errors instead of forwarding.

    ``fail_next(method, statuses)`` queues error statuses (503 SlowDown, 500
    InternalError, 403 AccessDenied; None forwards one) for the next requests of
    that method;
    ``fail_after`` fails every request after the next ``n``; everything else is
    forwarded to moto unchanged. ``seen`` counts forwarded requests by method
    and ``paths`` lists the keys of forwarded PUTs; ``injected`` counts errors.
    """

    upstream: str
    endpoint: str = ""
    seen: Counter[str] = field(default_factory=Counter)
    injected: Counter[int] = field(default_factory=Counter)
    put_paths: list[str] = field(default_factory=list)
    _queue: dict[str, list[int | None]] = field(default_factory=dict)
    _after: dict[str, list[int]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, method: str, statuses: list[int | None]) -> None:
        with self._lock:
            self._queue.setdefault(method, []).extend(statuses)

    def fail_after(self, method: str, n: int, status: int) -> None:
        """Forward the next ``n`` requests of ``method``, then fail every one after."""
        with self._lock:
            self._after[method] = [n, status]

    def heal(self) -> None:
        """Forward everything from now on."""
        with self._lock:
            self._queue.clear()
            self._after.clear()

    def take(self, method: str) -> int | None:
        with self._lock:
            queue = self._queue.get(method)
            status = None
            if queue:
                status = queue.pop(0)
            elif method in self._after:
                if self._after[method][0] > 0:
                    self._after[method][0] -= 1
                else:
                    status = self._after[method][1]
            if status is not None:
                self.injected[status] += 1
            return status

    def record(self, method: str, path: str) -> None:
        with self._lock:
            self.seen[method] += 1
            if method == "PUT":
                self.put_paths.append(path)


def _handler_for(proxy: FaultyProxy) -> type[BaseHTTPRequestHandler]:
    host, port = proxy.upstream.removeprefix("http://").split(":")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status = proxy.take(self.command)
            if status is not None:
                code, message = _ERROR_BODIES[status]
                err = (
                    '<?xml version="1.0" encoding="UTF-8"?>\n'
                    f"<Error><Code>{code}</Code><Message>{message}</Message>"
                    "<RequestId>proxy</RequestId></Error>"
                ).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(err)))
                self.end_headers()
                self.wfile.write(err)
                return
            proxy.record(self.command, self.path.split("?", 1)[0])
            conn = http.client.HTTPConnection(host, int(port), timeout=60)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            finally:
                conn.close()
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length":
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

    return Handler


@pytest.fixture
def faulty_s3(moto_endpoint: str) -> Iterator[tuple[FaultyProxy, S3Bucket]]:
    """A fresh bucket reached through a :class:`FaultyProxy` (its ``endpoint``)."""
    proxy = FaultyProxy(upstream=moto_endpoint)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(proxy))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    proxy.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    bucket = _make_bucket(moto_endpoint)
    yield proxy, S3Bucket(proxy.endpoint, bucket.bucket, bucket.boto)
    server.shutdown()
    server.server_close()


# -- a real cluster -----------------------------------------------------------------------
@pytest.fixture(scope="session")
def dask_client() -> Iterator[Any]:
    """A LocalCluster of 2 worker processes (1 thread each) and a Client to it.

    Not set as the default client, so that other tests' ``scheduler=None`` stays
    local; tests pass it explicitly (or enter ``client.as_current()``).
    """
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            host="127.0.0.1",
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        yield client


# -- reference writers (oracles), each in a venv of its own -----------------------------
ROOT = Path(__file__).resolve().parents[1]


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes (xdist workers, two pytest runs)."""
    try:
        import fcntl
    except ImportError:  # no flock: runs that overlap may both build
        yield
        return
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _build_venv(venv: Path, requirement: str, imports: str, timeout: float) -> str | None:
    """Build ``venv`` with ``requirement`` unless a finished build is there; None or why not.

    A build is finished when its marker file names the requirement, written last: an
    interrupted build, or one for another requirement, is started again from scratch.
    """
    marker = venv / ".dask-cellucid-oracle"
    if marker.is_file() and marker.read_text() == requirement:
        return None
    shutil.rmtree(venv, ignore_errors=True)
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(_venv_python(venv)), "-m", "pip", "install", "-q", requirement],
        [str(_venv_python(venv)), "-c", f"import {imports}"],
    ]
    for cmd in steps:
        try:
            done = subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"{shlex.join(cmd)}: {e}"
        if done.returncode:
            lines = (done.stdout + done.stderr).strip().splitlines()
            tail = "\n".join([x for x in lines if not x.startswith("WARNING:")][-8:])
            return f"{shlex.join(cmd)} exited {done.returncode}:\n{tail}"
    marker.write_text(requirement)
    return None


def oracle_python(
    name: str, requirement: str, imports: str = "cellucid", *, timeout: float = 540
) -> Path:
    """The python of the venv ``ROOT/name`` holding ``requirement``, built on first use.

    For a reference writer that conflicts with what the suite installs: ``python -m
    venv``, then ``pip install requirement`` and ``import imports`` as a check, each step
    within ``timeout`` seconds, once; later calls and later runs reuse it (a file lock
    makes concurrent runs wait for one build). If it cannot be built (no network, say)
    the calling test skips, or fails when the environment variable CI is set. Call it
    from a session-scoped fixture.
    """
    venv = ROOT / name
    try:
        with _file_lock(ROOT / f"{name}.lock"):
            why = _build_venv(venv, requirement, imports, timeout)
    except OSError as e:  # a read-only checkout, say
        why = str(e)
    if why is not None:
        msg = f"cannot build the {requirement} oracle venv {venv}: {why}"
        if os.environ.get("CI"):
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    return _venv_python(venv)


@pytest.fixture(scope="session")
def oracle_venv() -> Callable[..., Path]:
    """:func:`oracle_python`, for test modules (which cannot import conftest)."""
    return oracle_python


@pytest.fixture(scope="session")
def oracle_009() -> Path:
    """The python of a venv with cellucid 0.0.9, the ``key`` layout's reference writer.

    cellucid 0.0.9 conflicts with the cellucid 0.9.2 the suite installs, so it gets
    ``.venv-oracle-009`` at the repository root (about a minute to build, the first time).
    """
    return oracle_python(".venv-oracle-009", "cellucid==0.0.9")


# -- AnnData files on disk ----------------------------------------------------------------
def write_anndata(a: Any, path: Path) -> Path:
    """Write ``a`` as ``.zarr`` or ``.h5ad`` by ``path``'s suffix (anndata's own writers,
    their warnings silenced); return ``path``."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if path.suffix == ".zarr":
            a.write_zarr(path)
        else:
            a.write_h5ad(path)
    return path
