"""Retry a unit of database work on transient failures, with exponential backoff and jitter.

Transient means "the same work may succeed if tried again": SQLite's ``database is locked`` /
``busy`` (another process held the single write lock longer than the busy timeout), PostgreSQL
serialization failures and deadlocks, and lost connections (server restarted, connection cut).
Wrap a *whole transaction* (a function that opens its own ``session_scope``), never a single
statement inside one, so a retry starts from a clean state::

    from zolab.db.retry import retry_on_transient, transient_retry

    job = retry_on_transient(lambda: claim_next(worker_id), attempts=8)

    @transient_retry(attempts=8)
    def heartbeat(job_id: int) -> None:
        with session_scope() as s: ...

Each retry logs one warning; after the last attempt a :class:`TransientDatabaseError` (a
:class:`DatabaseError`) with a clear message is raised, so "database is locked" never reaches a
user while attempts remain.

:func:`outlast` is the layer above for long-running processes (workers, ``zolab run``): an outage
longer than one call's retries is waited out (pauses doubling up to ``OUTAGE_MAX_WAIT_S``, one error
line a round) for up to ``OUTAGE_PATIENCE_S`` before the last error is raised. Workers and the
orchestrator share it, so ``zolab run`` never gives up before its workers do.
"""

from __future__ import annotations

import functools
import logging
import random
import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import exc as sa_exc

from zolab.db.errors import DatabaseError, TransientDatabaseError

try:  # psycopg is a dependency, but db/ must still import where only SQLite is used
    import psycopg
    import psycopg.errors as pg_errors

    _PG_TRANSIENT: tuple[type[BaseException], ...] = (
        psycopg.OperationalError,  # lost connection, admin shutdown, lock timeout, cannot connect
        pg_errors.SerializationFailure,
        pg_errors.DeadlockDetected,
    )
except ImportError:  # pragma: no cover - psycopg missing
    _PG_TRANSIENT = ()

log = logging.getLogger(__name__)
T = TypeVar("T")

_SQLITE_TRANSIENT_WORDS = ("database is locked", "database table is locked", "database is busy")

DEFAULT_ATTEMPTS = 8
DEFAULT_BASE_DELAY = 0.05
DEFAULT_MAX_DELAY = 5.0
#: how long a long-running process waits out a database outage before giving up (15 min)
OUTAGE_PATIENCE_S = 900.0
#: the longest pause between two rounds of an outage
OUTAGE_MAX_WAIT_S = 30.0


def is_transient(exc: BaseException) -> bool:
    """True for errors that retrying the same transaction may cure (see module docstring)."""
    if isinstance(exc, TransientDatabaseError):
        return True
    if isinstance(exc, DatabaseError):  # already classified as permanent
        return False
    if isinstance(exc, sa_exc.DisconnectionError):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig if exc.orig is not None else exc
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        return any(word in text for word in _SQLITE_TRANSIENT_WORDS)
    return bool(_PG_TRANSIENT) and isinstance(exc, _PG_TRANSIENT)


def backoff_delay(attempt: int, base_delay: float, max_delay: float) -> float:
    """Delay before retry number ``attempt`` (1-based): exponential, capped, half of it jittered
    so that workers that collided do not collide again in lockstep."""
    cap = min(max_delay, base_delay * (2 ** (attempt - 1)))
    return cap / 2 + random.uniform(0, cap / 2)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None:
        exc = exc.orig  # the driver's words, without SQLAlchemy's "(sqlite3.OperationalError)" prefix
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def retry_on_transient(
    fn: Callable[[], T],
    *,
    attempts: int = DEFAULT_ATTEMPTS,
    base_delay: float = DEFAULT_BASE_DELAY,
    max_delay: float = DEFAULT_MAX_DELAY,
    what: str | None = None,
) -> T:
    """Call ``fn()``; on a transient database error wait (backoff + jitter) and call it again.

    Permanent errors propagate at once. After ``attempts`` transient failures, raise
    :class:`TransientDatabaseError` naming the work, the attempt count and the last cause.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    label = what or getattr(fn, "__name__", "database operation")
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:
            if not is_transient(exc):
                raise
            if attempt == attempts:
                raise TransientDatabaseError(
                    f"{label} failed after {attempts} attempts; last error: {_one_line(exc)}"
                ) from exc
            delay = backoff_delay(attempt, base_delay, max_delay)
            log.warning(
                "database busy or unreachable during %s (attempt %d/%d): %s; retrying in %.2f s",
                label, attempt, attempts, _one_line(exc), delay,
            )
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def transient_retry(
    attempts: int = DEFAULT_ATTEMPTS,
    base_delay: float = DEFAULT_BASE_DELAY,
    max_delay: float = DEFAULT_MAX_DELAY,
) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Decorator form of :func:`retry_on_transient` for functions that own their transaction."""

    def wrap(func: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(func)
        def inner(*args, **kwargs) -> T:
            return retry_on_transient(
                lambda: func(*args, **kwargs),
                attempts=attempts, base_delay=base_delay, max_delay=max_delay, what=func.__qualname__,
            )

        return inner

    return wrap


def outlast(
    fn: Callable[[], T],
    what: str,
    *,
    who: str = "",
    patience_s: float | None = None,
    max_wait_s: float | None = None,
    sleep: Callable[[float], None] | None = None,
) -> T:
    """``fn()`` (itself retried, e.g. a :class:`~zolab.platform.queue.JobQueue` method), called
    again while it keeps failing with :class:`TransientDatabaseError`: an outage must not kill a
    worker or the orchestrator, nor throw away a finished job's result. One error line a round
    (``who`` names the process); gives up (re-raises the last error) after ``patience_s``
    (default :data:`OUTAGE_PATIENCE_S`). Permanent errors propagate at once."""
    patience = OUTAGE_PATIENCE_S if patience_s is None else patience_s
    cap = OUTAGE_MAX_WAIT_S if max_wait_s is None else max_wait_s
    pause = sleep or time.sleep
    deadline = time.monotonic() + patience
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except TransientDatabaseError as exc:
            if time.monotonic() >= deadline:
                raise
            delay = backoff_delay(attempt, 1.0, cap)
            log.error("database unreachable during %s: %s; %s waits %.1f s and tries again",
                      what, exc, who or "zolab", delay)
            pause(delay)


__all__ = ["OUTAGE_MAX_WAIT_S", "OUTAGE_PATIENCE_S", "backoff_delay", "is_transient", "outlast",
           "retry_on_transient", "transient_retry"]
