"""Turn the ``scheduler=`` argument into something to compute with.

Local schedulers are names for :func:`dask.compute`; anything distributed
becomes a :class:`distributed.Client` (the current one, one connected to an
address, or a ``LocalCluster`` we start and close ourselves).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from .errors import InvalidOptionError

log = logging.getLogger(__name__)

LOCAL = {"threads": "threads", "threading": "threads", "synchronous": "synchronous",
         "sync": "synchronous", "single-threaded": "synchronous", "processes": "processes",
         "multiprocessing": "processes"}


def _is_client(obj: Any) -> bool:
    return type(obj).__name__ == "Client" and type(obj).__module__.startswith("distributed")


@contextlib.contextmanager
def resolve(scheduler: Any, num_workers: int | None = None) -> Iterator[tuple[str | None, Any]]:
    """Yield ``(local_scheduler_name, client)``; exactly one of them is not None."""
    if scheduler is None:
        client = _current_client()
        if client is not None:
            yield None, client
            return
        yield "threads", None
        return
    if _is_client(scheduler):
        yield None, scheduler
        return
    if not isinstance(scheduler, str):
        msg = (
            f"scheduler={scheduler!r} is not understood: pass 'threads', 'processes', "
            "'synchronous', 'distributed', a scheduler address, or a distributed.Client."
        )
        raise InvalidOptionError(msg)
    if scheduler in LOCAL:
        yield LOCAL[scheduler], None
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError as err:
        msg = f"scheduler={scheduler!r} needs the 'distributed' package: pip install distributed"
        raise InvalidOptionError(msg) from err
    if scheduler == "distributed":
        client = _current_client()
        if client is not None:
            yield None, client
            return
        log.info("no distributed Client is running; starting a LocalCluster")
        kw = {"n_workers": num_workers} if num_workers else {}
        with LocalCluster(processes=True, threads_per_worker=1, **kw) as cluster, Client(cluster) as client:
            log.info("LocalCluster dashboard: %s", client.dashboard_link)
            yield None, client
        return
    if "://" in scheduler or ":" in scheduler:
        with Client(scheduler) as client:
            yield None, client
        return
    msg = (
        f"scheduler={scheduler!r} is not one of 'threads', 'processes', 'synchronous', "
        "'distributed', or an address like 'tcp://10.0.0.1:8786'."
    )
    raise InvalidOptionError(msg)


def _current_client() -> Any:
    try:
        from distributed import default_client
    except ImportError:
        return None
    try:
        return default_client()
    except ValueError:
        return None
