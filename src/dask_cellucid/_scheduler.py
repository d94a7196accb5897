"""Turn the ``scheduler=`` argument into something to compute with.

Local schedulers are names for :func:`dask.compute`; anything distributed
becomes a :class:`distributed.Client`: the current one, one connected to an
address or a cluster object, or one to a ``LocalCluster`` that we start and
close ourselves.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import multiprocessing
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import InvalidOptionError

if TYPE_CHECKING:
    from collections.abc import Iterator

log = logging.getLogger(__name__)

LOCAL = {
    "threads": "threads",
    "threading": "threads",
    "synchronous": "synchronous",
    "sync": "synchronous",
    "single-threaded": "synchronous",
    "processes": "processes",
    "multiprocessing": "processes",
}


@dataclass(frozen=True)
class Compute:
    """Where block tasks run, decided once per call: a local scheduler or a Client.

    Exactly one of ``local`` (a :func:`dask.compute` scheduler name) and
    ``client`` (a :class:`distributed.Client`) is set.
    """

    local: str | None
    client: Any = None
    num_workers: int | None = None

    @property
    def n_threads(self) -> int:
        """Threads the block tasks run on (all workers' threads on a cluster)."""
        if self.client is not None:
            try:
                return max(1, sum(self.client.nthreads().values()))
            except Exception:
                return os.cpu_count() or 1
        if self.local == "synchronous":
            return 1
        return self.num_workers or os.cpu_count() or 1


def planned_threads(scheduler: Any, num_workers: int | None) -> int:
    """Threads the tasks will run on, known before the scheduler is started (for sizing)."""
    if hasattr(scheduler, "nthreads"):  # a Client already running
        return Compute(None, scheduler).n_threads
    return num_workers or os.cpu_count() or 1


def _client_class() -> Any:
    # A Client can only exist if distributed was imported: don't pay its import
    # (about a second) for a local export.
    if "distributed" not in sys.modules:
        return None
    from distributed import Client

    return Client


def check(scheduler: Any, num_workers: Any = None) -> None:
    """Refuse ``scheduler=`` or ``num_workers=`` values :func:`resolve` would not understand.

    Cheap and side-effect free (it connects to nothing), so an export can call
    it before it writes anything.

    Raises
    ------
    InvalidOptionError
        Not a known name, address, Client or cluster; or ``distributed`` is
        needed but not installed.
    """
    if num_workers is not None and not (type(num_workers) is int and num_workers > 0):
        msg = (
            f"num_workers={num_workers!r} must be a positive whole number (threads or "
            "processes; workers of a LocalCluster), or None for one per core."
        )
        raise InvalidOptionError(msg)
    _kind(scheduler)


def _kind(scheduler: Any) -> str:
    if scheduler is None:
        return "default"
    if isinstance(scheduler, str) and scheduler in LOCAL:
        return "local"
    client_cls = _client_class()
    if client_cls is not None and isinstance(scheduler, client_cls):
        return "client"
    is_cluster = hasattr(scheduler, "scheduler_address")
    if not (isinstance(scheduler, str) or is_cluster):
        msg = (
            f"scheduler={scheduler!r} is not understood: pass 'threads', 'processes', "
            "'synchronous', 'distributed', a scheduler address, a distributed.Client or a "
            "cluster object."
        )
        raise InvalidOptionError(msg)
    if isinstance(scheduler, str) and scheduler != "distributed" and ":" not in scheduler:
        msg = (
            f"scheduler={scheduler!r} is not one of 'threads', 'processes', 'synchronous', "
            "'distributed', or an address like 'tcp://10.0.0.1:8786'."
        )
        raise InvalidOptionError(msg)
    if importlib.util.find_spec("distributed") is None:
        msg = f"scheduler={scheduler!r} needs the 'distributed' package: pip install distributed"
        raise InvalidOptionError(msg)
    return "distributed" if scheduler == "distributed" else "connect"


@contextlib.contextmanager
def resolve(scheduler: Any, num_workers: int | None = None) -> Iterator[Compute]:
    """Yield a :class:`Compute`: a local scheduler's name, or a Client.

    ``None`` means the current distributed Client if there is one, else
    threads. A Client, a cluster object (anything with ``scheduler_address``)
    or an address like ``"tcp://10.0.0.1:8786"`` is used as given;
    ``"distributed"`` uses the current Client or starts a ``LocalCluster`` of
    ``num_workers`` single-threaded worker processes, closed on exit.
    """
    kind = _kind(scheduler)
    if kind == "local":
        yield Compute(LOCAL[scheduler], None, num_workers)
        return
    if kind == "client":
        yield Compute(None, scheduler, num_workers)
        return
    if kind in ("default", "distributed"):
        client = _current_client()
        if client is not None:
            yield Compute(None, client, num_workers)
        elif kind == "default":
            yield Compute("threads", None, num_workers)
        else:
            with _local_cluster(num_workers) as client:
                yield Compute(None, client, num_workers)
        return
    # an address or a cluster object: connect, and close only our connection
    from distributed import Client

    with Client(scheduler, set_as_default=False) as client:
        yield Compute(None, client, num_workers)


@contextlib.contextmanager
def _local_cluster(num_workers: int | None) -> Iterator[Any]:
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        # We are a freshly spawned process re-running the user's script.
        msg = (
            "scheduler='distributed' started a LocalCluster whose worker processes re-import "
            "your script and would start clusters of their own. Put the script's top level "
            "under `if __name__ == '__main__':`."
        )
        raise RuntimeError(msg)
    from distributed import Client, LocalCluster

    kw: dict[str, Any] = {"n_workers": num_workers} if num_workers else {}
    log.info("no distributed Client is running; starting a LocalCluster")
    try:
        cluster = LocalCluster(processes=True, threads_per_worker=1, dashboard_address=":0", **kw)
    except RuntimeError as err:
        msg = (
            f"scheduler='distributed' could not start a LocalCluster ({err}). If this runs "
            "from a script, its top level must be under `if __name__ == '__main__':` (worker "
            "processes re-import it); or start a distributed.Client yourself and pass it as "
            "scheduler=."
        )
        raise RuntimeError(msg) from err
    with cluster, Client(cluster, set_as_default=False) as client:
        log.info(
            "LocalCluster with %d workers; dashboard at %s",
            len(cluster.workers),
            client.dashboard_link,
        )
        yield client
    log.info("LocalCluster closed")


def _current_client() -> Any:
    if "distributed" not in sys.modules:
        return None
    from distributed import default_client

    try:
        return default_client()
    except ValueError:
        return None
