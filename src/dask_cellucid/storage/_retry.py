"""Retries of object writes that failed for a reason worth another try."""

from __future__ import annotations

import errno
import logging
import random
import re
import time
from typing import TYPE_CHECKING, Any

from dask_cellucid.errors import StorageError

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger("dask_cellucid.storage")

#: Attempts of one object write before giving up (on top of the client library's own).
ATTEMPTS = 6
_BACKOFF = 0.25  # seconds before the first retry; doubles each time, with jitter
_BACKOFF_MAX = 8.0
_TRANSIENT_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "EBUSY",
        "EAGAIN",
        "EIO",
        "ETIMEDOUT",
        "ECONNRESET",
        "ECONNABORTED",
        "EPIPE",
        "EREMOTEIO",
        "ENETUNREACH",
        "EHOSTUNREACH",
    )
    if hasattr(errno, name)
)
# Client-library exceptions (botocore, aiohttp, fsspec) that mean "try again".
_TRANSIENT_TYPES = frozenset(
    {
        "EndpointConnectionError",
        "ConnectionClosedError",
        "ReadTimeoutError",
        "ConnectTimeoutError",
        "HTTPClientError",
        "ServerDisconnectedError",
        "ClientPayloadError",
        "ClientConnectionError",
        "ClientOSError",
        "IncompleteRead",
        "ResponseStreamingError",
        "FSTimeoutError",
    }
)
_TRANSIENT_WORDS = re.compile(
    r"SlowDown|Throttl|TooManyRequests|RequestLimitExceeded|ServiceUnavailable|InternalError"
    r"|RequestTimeout|\b5\d\d\b"
)


def write_with_retries(
    put: Callable[[dict[str, bytes]], list[Any]], pending: dict[str, bytes], *, where: str
) -> None:
    for attempt in range(1, ATTEMPTS + 1):
        outcome = put(pending)
        failed = {
            p: err
            for p, err in zip(pending, outcome, strict=True)
            if isinstance(err, BaseException)
        }
        if not failed:
            return
        fatal = next((e for e in failed.values() if not is_transient(e)), None)
        first = next(iter(failed.values()))
        if fatal is not None or attempt == ATTEMPTS:
            err = fatal or first
            why = (
                "a permanent error"
                if fatal is not None
                else f"a transient error that persisted through {ATTEMPTS} attempts"
            )
            msg = (
                f"writing {len(failed)} of {len(pending)} objects to {where} failed with {why}: "
                f"{type(err).__name__}: {err}. No manifest names them. Check access to the "
                "bucket and its endpoint, then re-run the same export: it resumes, skipping "
                "what is already written."
            )
            raise StorageError(msg) from err
        delay = min(_BACKOFF_MAX, _BACKOFF * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
        log.warning(
            "writing %d of %d objects to %s failed (%s); retry %d of %d in %.2f s",
            len(failed),
            len(pending),
            where,
            _describe(first),
            attempt,
            ATTEMPTS - 1,
            delay,
        )
        time.sleep(delay)
        pending = {p: pending[p] for p in failed}


def is_transient(err: BaseException) -> bool:
    """Whether a storage error is worth retrying (throttling, 5xx, network)."""
    if isinstance(
        err,
        (
            FileNotFoundError,
            PermissionError,
            FileExistsError,
            IsADirectoryError,
            NotADirectoryError,
        ),
    ):
        return False
    if isinstance(err, (TimeoutError, ConnectionError)):
        return True
    if any(t.__name__ in _TRANSIENT_TYPES for t in type(err).__mro__):
        return True
    if isinstance(err, OSError):
        if err.errno in _TRANSIENT_ERRNOS:
            return True
        return err.errno is None and bool(_TRANSIENT_WORDS.search(str(err)))
    return False


def _describe(err: BaseException) -> str:
    text = str(err).splitlines()[0] if str(err) else ""
    return f"{type(err).__name__}: {text[:200]}"
