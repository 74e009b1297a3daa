"""Database fault injection for the reliability tests: real server-side faults, no mocks.

* :class:`PgFaults` -- an admin connection (autocommit, psycopg) to the per-test PostgreSQL database
  that cuts connections (``pg_terminate_backend``) once, in a storm, or mid-statement, and can take
  the database away (``ALTER DATABASE .. ALLOW_CONNECTIONS false``) and give it back.
* :class:`CutBeforeStatement` -- a SQLAlchemy ``before_cursor_execute`` hook that terminates the
  backend of the connection about to run a matching statement, so the cut lands *inside* the
  transaction at a chosen point (claim, heartbeat, result insert) instead of by chance.
* :func:`hold_sqlite_write_lock` -- a second process holding SQLite's write lock (``BEGIN IMMEDIATE``).
* :func:`hold_pg_row_lock` -- another PostgreSQL connection holding ``SELECT .. FOR UPDATE`` on rows,
  so every write to them blocks (a blocked connection, not an error).
* :func:`skewed_host_clock` -- zolab's view of the host's wall clock shifted by N seconds.

Identifiers are composed with ``psycopg.sql``; values are bound parameters.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg
from psycopg import sql
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url

#: seconds pg_terminate_backend waits for the backend to be gone (PostgreSQL >= 14)
_TERMINATE_WAIT_MS = 5000


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class PgFaults:
    """Faults on the PostgreSQL database of ``url`` (use only the per-test ``pg_url`` database)."""

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        self.dbname = parsed.database
        # the admin connection lives in the server's maintenance database, so it survives both the
        # cuts and ALLOW_CONNECTIONS false on the test database
        self.conn = psycopg.connect(_libpq(parsed.set(database="postgres").render_as_string(hide_password=False)),
                                    autocommit=True, connect_timeout=5)
        self._lock = threading.Lock()
        self.killed = 0

    def close(self) -> None:
        self.conn.close()

    def backends(self) -> int:
        with self._lock:
            row = self.conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (self.dbname,))
            return int(row.fetchone()[0])

    def cut_all(self) -> int:
        """Terminate every backend connected to the test database; returns how many."""
        with self._lock:
            row = self.conn.execute(
                "SELECT count(pg_terminate_backend(pid, %s)) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (_TERMINATE_WAIT_MS, self.dbname),
            ).fetchone()
        n = int(row[0])
        self.killed += n
        return n

    def cut(self, pid: int) -> bool:
        """Terminate one backend and wait until it is gone."""
        with self._lock:
            ok = bool(self.conn.execute("SELECT pg_terminate_backend(%s, %s)", (pid, _TERMINATE_WAIT_MS)).fetchone()[0])
        self.killed += ok
        return ok

    @contextmanager
    def storm(self, seconds: float, every_s: float = 0.02) -> Iterator[StormStats]:
        """Cut every backend of the database every ``every_s`` for ``seconds`` (in a thread)."""
        stats = StormStats()
        stop = threading.Event()

        def loop() -> None:
            end = time.monotonic() + seconds
            while not stop.is_set() and time.monotonic() < end:
                stats.rounds += 1
                stats.killed += self.cut_all()
                stop.wait(every_s)

        thread = threading.Thread(target=loop, name="pg-storm", daemon=True)
        thread.start()
        try:
            yield stats
        finally:
            stop.set()
            thread.join()

    def block(self) -> None:
        """Take the database away: no new connections, every existing one cut."""
        with self._lock:
            self.conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(self.dbname)))
        self.cut_all()

    def unblock(self) -> None:
        with self._lock:
            self.conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(sql.Identifier(self.dbname)))


@dataclass
class StormStats:
    rounds: int = 0
    killed: int = 0


@dataclass
class CutBeforeStatement:
    """Cut the connection right before the first ``n`` statements containing each marker run.

    ``plan`` maps a statement marker (e.g. ``"INSERT INTO results"``) to how many times to cut on it.
    The cut happens inside the caller's transaction: the statement then fails on a dead connection.
    """

    engine: Engine
    faults: PgFaults
    plan: dict[str, int]
    hits: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.left = dict(self.plan)
        event.listen(self.engine, "before_cursor_execute", self._before)

    def remove(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._before)

    def _before(self, conn, _cursor, statement, _params, _context, _many) -> None:
        for marker, left in self.left.items():
            if left > 0 and marker in statement:
                self.left[marker] = left - 1
                self.hits.append(marker)
                self.faults.cut(conn.connection.dbapi_connection.info.backend_pid)
                return


_LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("BEGIN IMMEDIATE")
conn.execute("UPDATE workers SET last_seen = last_seen")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
print("released", flush=True)
"""


@contextmanager
def hold_pg_row_lock(url: str, table: str, ids: list[int], seconds: float) -> Iterator[threading.Event]:
    """Another connection (in its own thread) locks rows ``ids`` of ``table`` ``FOR UPDATE`` and
    releases them after ``seconds``, whatever the caller is doing; yields the 'released' event."""
    locked, released = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def hold() -> None:
        try:
            with psycopg.connect(_libpq(url), connect_timeout=5) as conn:
                conn.execute(sql.SQL("SELECT id FROM {} WHERE id = ANY(%s) FOR UPDATE").format(sql.Identifier(table)),
                             (ids,)).fetchall()
                locked.set()
                time.sleep(seconds)
                conn.rollback()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            errors.append(exc)
        finally:
            locked.set()
            released.set()

    thread = threading.Thread(target=hold, name="pg-row-lock", daemon=True)
    thread.start()
    locked.wait(30)
    if errors:
        raise errors[0]
    try:
        yield released
    finally:
        thread.join(seconds + 30)


@contextmanager
def skewed_host_clock(seconds: float) -> Iterator[None]:
    """zolab's host wall clock runs ``seconds`` ahead (negative: behind): every ``utcnow`` and
    ``datetime.now`` that zolab's modules read is shifted. The database server's clock is not."""
    import datetime as dt

    from zolab.db import models

    real_utcnow = models.utcnow
    shift = dt.timedelta(seconds=seconds)

    class SkewedDatetime(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return dt.datetime.now(tz) + shift

        @classmethod
        def utcnow(cls):  # pragma: no cover - zolab uses now(timezone.utc)
            return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) + shift

    def skewed_utcnow() -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) + shift

    patched: list[tuple[object, str, object]] = []
    for name, module in list(sys.modules.items()):
        if not name.startswith("zolab") or module is None:
            continue
        for attr in ("utcnow", "datetime"):
            value = getattr(module, attr, None)
            if attr == "utcnow" and value is real_utcnow:
                patched.append((module, attr, value))
                setattr(module, attr, skewed_utcnow)
            elif attr == "datetime" and value is dt.datetime:
                patched.append((module, attr, value))
                setattr(module, attr, SkewedDatetime)
    try:
        yield
    finally:
        for module, attr, value in patched:
            setattr(module, attr, value)


@contextmanager
def hold_sqlite_write_lock(path: str, seconds: float) -> Iterator[subprocess.Popen]:
    """A second process takes SQLite's write lock and keeps it ``seconds``; yields once it holds it."""
    proc = subprocess.Popen([sys.executable, "-c", _LOCKER, path, str(seconds)], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()
        assert line == "locked", f"lock holder did not start: {line!r}"
        yield proc
    finally:
        proc.wait(timeout=seconds + 30)
