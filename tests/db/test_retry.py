"""Transient-error retry: backoff with jitter on "database is locked", serialization failures and
lost connections; a clear error after the last attempt; permanent errors never retried."""

from __future__ import annotations

import logging
import sqlite3
import threading

import psycopg
import psycopg.errors
import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import func, select

from zolab.db import retry as retry_mod
from zolab.db import session as session_mod
from zolab.db.errors import DatabaseError, IntegrityConflictError, TransientDatabaseError
from zolab.db.models import Plan
from zolab.db.retry import backoff_delay, is_transient, retry_on_transient, transient_retry
from zolab.db.session import session_scope


def _locked() -> sa_exc.OperationalError:
    return sa_exc.OperationalError("INSERT ...", {}, sqlite3.OperationalError("database is locked"))


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    recorded: list[float] = []
    monkeypatch.setattr(retry_mod.time, "sleep", recorded.append)
    return recorded


def test_retries_locked_then_succeeds(sleeps, caplog):
    calls = []

    def work() -> int:
        calls.append(1)
        if len(calls) < 3:
            raise _locked()
        return 42

    with caplog.at_level(logging.WARNING, logger="zolab.db.retry"):
        assert retry_on_transient(work, attempts=5, base_delay=0.1, max_delay=1.0) == 42
    assert len(calls) == 3 and len(sleeps) == 2
    assert 0.05 <= sleeps[0] <= 0.1 and 0.1 <= sleeps[1] <= 0.2  # exponential, half jittered
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2
    assert "during work (attempt 1/5): database is locked; retrying in" in warnings[0]


def test_gives_up_with_a_clear_error(sleeps):
    calls = []

    def work() -> None:
        calls.append(1)
        raise _locked()

    with pytest.raises(TransientDatabaseError) as err:
        retry_on_transient(work, attempts=3, base_delay=0.01, what="claim job")
    assert len(calls) == 3 and len(sleeps) == 2
    assert str(err.value) == "claim job failed after 3 attempts; last error: database is locked"
    assert isinstance(err.value, DatabaseError)


def test_permanent_errors_are_not_retried(sleeps):
    calls = []

    def work() -> None:
        calls.append(1)
        raise IntegrityConflictError("duplicate key")

    with pytest.raises(IntegrityConflictError):
        retry_on_transient(work, attempts=5)
    assert len(calls) == 1 and sleeps == []


def test_decorator_form(sleeps):
    state = {"n": 0}

    @transient_retry(attempts=4, base_delay=0.01)
    def flaky(x: int) -> int:
        state["n"] += 1
        if state["n"] == 1:
            raise TransientDatabaseError("lost the connection")
        return x * 2

    assert flaky(21) == 42 and state["n"] == 2 and flaky.__name__ == "flaky"


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (_locked(), True),
        (sqlite3.OperationalError("database is locked"), True),
        (sqlite3.OperationalError("no such table: plans"), False),
        (psycopg.errors.SerializationFailure("could not serialize access"), True),
        (psycopg.errors.DeadlockDetected("deadlock detected"), True),
        (psycopg.OperationalError("server closed the connection unexpectedly"), True),
        (sa_exc.OperationalError("SELECT 1", {}, psycopg.errors.AdminShutdown("terminating connection")), True),
        (sa_exc.IntegrityError("INSERT", {}, psycopg.errors.UniqueViolation("duplicate key")), False),
        (psycopg.errors.UndefinedTable("relation does not exist"), False),
        (ValueError("not a database error"), False),
    ],
)
def test_is_transient(exc, transient):
    assert is_transient(exc) is transient


def test_backoff_is_capped():
    assert all(1.0 <= backoff_delay(20, 0.1, 2.0) <= 2.0 for _ in range(50))


def test_real_sqlite_lock_is_retried_until_released(sqlite_url, monkeypatch, caplog):
    """A second process-like writer holds the SQLite write lock longer than the busy timeout:
    the insert is retried (warnings, no error) and lands once the lock is released."""
    monkeypatch.setattr(session_mod, "SQLITE_BUSY_TIMEOUT_S", 0.1)
    path = sqlite_url.removeprefix("sqlite:///")
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    timer = threading.Timer(0.6, holder.execute, args=("COMMIT",))
    timer.start()

    def insert() -> None:
        with session_scope(sqlite_url, immediate=True) as s:
            s.add(Plan(name="p", format="yaml", source_text="x", content_hash="h", plan_json={}))

    try:
        with caplog.at_level(logging.WARNING, logger="zolab.db.retry"):
            retry_on_transient(insert, attempts=30, base_delay=0.05, max_delay=0.2)
    finally:
        timer.join()
        holder.close()
    assert any("database is locked" in r.getMessage() for r in caplog.records)
    with session_scope(sqlite_url) as s:
        assert s.scalar(select(func.count()).select_from(Plan)) == 1


def test_real_sqlite_lock_held_forever_gives_up_clearly(sqlite_url, monkeypatch):
    monkeypatch.setattr(session_mod, "SQLITE_BUSY_TIMEOUT_S", 0.05)
    path = sqlite_url.removeprefix("sqlite:///")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")

    def insert() -> None:
        with session_scope(sqlite_url, immediate=True) as s:
            s.add(Plan(name="p", format="yaml", source_text="x", content_hash="h", plan_json={}))

    try:
        with pytest.raises(TransientDatabaseError) as err:
            retry_on_transient(insert, attempts=3, base_delay=0.01, what="upload plan")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert str(err.value).startswith("upload plan failed after 3 attempts; last error: SQLite at ")
    assert "is busy (database is locked)" in str(err.value)
