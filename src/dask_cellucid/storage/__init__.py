"""Storage: a URL and its options, durable local writes, retries. It names no format.

``Target`` is the whole interface writers and readers use; how bytes reach a
local disk (:mod:`._local`) and when a failed object write is tried again
(:mod:`._retry`) stay behind it.
"""

from __future__ import annotations

from ._local import await_flushes
from ._retry import ATTEMPTS, is_transient
from .target import CONTENT_TYPE, DEFAULT_POOL, JSON_CONTENT_TYPE, Target, read_fingerprint

__all__ = [
    "ATTEMPTS",
    "CONTENT_TYPE",
    "DEFAULT_POOL",
    "JSON_CONTENT_TYPE",
    "Target",
    "await_flushes",
    "is_transient",
    "read_fingerprint",
]
