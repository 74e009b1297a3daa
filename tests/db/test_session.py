"""Engine and session behaviour on SQLite and PostgreSQL: pragmas, transactions, error mapping,
single-writer claims (BEGIN IMMEDIATE) and recovery after a cut connection (pre-ping)."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from zolab.db.errors import BadDatabaseURLError, DatabaseError, IntegrityConflictError, TransientDatabaseError
from zolab.db.models import Ablation, Plan, Worker
from zolab.db.session import dialect_name, dispose_engines, get_engine, session_scope


def _plan(n: int = 0, content_hash: str | None = None) -> Plan:
    return Plan(name=f"p{n}", format="yaml", source_text="x", content_hash=content_hash or f"h{n}", plan_json={})


def _count(url: str, model) -> int:
    with session_scope(url) as s:
        return s.scalar(select(func.count()).select_from(model))


def test_engine_is_cached_per_url_and_disposable(db_url):
    engine = get_engine(db_url)
    assert get_engine(db_url) is engine and get_engine() is engine  # ZOLAB_DB = db_url
    assert dialect_name(engine) in ("sqlite", "postgresql")
    with session_scope(db_url) as s:
        assert dialect_name(s) == dialect_name(engine)
    dispose_engines()
    assert get_engine(db_url) is not engine


def test_sqlite_pragmas(sqlite_url):
    with get_engine(sqlite_url).connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_postgres_url_without_driver_uses_psycopg(pg_url):
    bare = make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False)
    assert get_engine(bare).dialect.driver == "psycopg"


def test_bad_url_is_a_clear_error():
    with pytest.raises(BadDatabaseURLError, match="bad database URL 'nosuch://x'"):
        get_engine("nosuch://x")


def test_commit_on_success(db_url):
    with session_scope(db_url) as s:
        s.add_all([_plan(1), _plan(2)])
    assert _count(db_url, Plan) == 2


def test_rollback_on_error_leaves_no_rows(db_url):
    with pytest.raises(RuntimeError, match="boom"), session_scope(db_url) as s:
        s.add(_plan(1))
        s.flush()  # the row reached the database inside the transaction
        assert s.scalar(select(func.count()).select_from(Plan)) == 1
        raise RuntimeError("boom")
    assert _count(db_url, Plan) == 0


def test_constraint_violation_rolls_back_whole_transaction(db_url):
    with pytest.raises(IntegrityConflictError) as err, session_scope(db_url) as s:
        s.add(_plan(1, content_hash="same"))
        s.flush()
        s.add(_plan(2, content_hash="same"))
    assert "refused the write" in str(err.value) and "\n" not in str(err.value)
    assert isinstance(err.value.__cause__, sa_exc.IntegrityError)
    assert _count(db_url, Plan) == 0


def test_foreign_keys_are_enforced(db_url):
    orphan = Ablation(plan_id=12345, position=0, name="a", ablated_part="x", action="REMOVE", status="resolved")
    with pytest.raises(IntegrityConflictError), session_scope(db_url) as s:
        s.add(orphan)
    assert _count(db_url, Ablation) == 0


def test_driver_error_becomes_database_error_with_one_line(db_url):
    with pytest.raises(DatabaseError) as err, session_scope(db_url) as s:
        s.execute(text("SELECT no_such_column FROM plans"))
    msg = str(err.value)
    assert "\n" not in msg and "no_such_column" in msg
    assert ("SQLite at" in msg) or ("PostgreSQL at" in msg)
    assert not isinstance(err.value, TransientDatabaseError)
    assert isinstance(err.value.__cause__, sa_exc.SQLAlchemyError)


def _increment(url: str, immediate: bool, n: int, errors: list[BaseException]) -> None:
    for _ in range(n):
        try:
            with session_scope(url, immediate=immediate) as s:
                w = s.get(Worker, "counter")
                seen = w.pid
                time.sleep(0.002)  # widen the read-modify-write window
                w.pid = seen + 1
        except BaseException as exc:  # noqa: BLE001 - collected and asserted on
            errors.append(exc)


def _run_writers(url: str, immediate: bool, threads: int = 3, n: int = 15) -> tuple[int, list[BaseException]]:
    with session_scope(url) as s:
        s.add(Worker(id="counter", host="h", pid=0))
    errors: list[BaseException] = []
    ts = [threading.Thread(target=_increment, args=(url, immediate, n, errors)) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    with session_scope(url) as s:
        return s.get(Worker, "counter").pid, errors


def test_begin_immediate_serialises_sqlite_writers(sqlite_url):
    total, errors = _run_writers(sqlite_url, immediate=True)
    assert errors == []
    assert total == 3 * 15  # no lost update, no "database is locked"


def test_deferred_begin_is_what_immediate_prevents(sqlite_url):
    """Contrast (shows the test above can fail): the same read-then-write with a plain BEGIN
    either loses updates or hits SQLite's busy-snapshot error."""
    total, errors = _run_writers(sqlite_url, immediate=False)
    assert total < 3 * 15 or errors
    assert all(isinstance(e, TransientDatabaseError) and "locked" in str(e) for e in errors)


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _terminate(url: str, pid: int) -> None:
    import psycopg

    with psycopg.connect(_libpq(url), autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0] is True


def test_postgres_connection_cut_mid_transaction_then_recovers(pg_url):
    with pytest.raises(DatabaseError) as err, session_scope(pg_url) as s:
        s.add(_plan(1))
        s.flush()
        pid = s.scalar(select(func.pg_backend_pid()))
        _terminate(pg_url, pid)
        s.scalar(select(func.count()).select_from(Plan))
    msg = str(err.value)
    assert isinstance(err.value, TransientDatabaseError)
    assert msg.startswith("lost the connection to PostgreSQL at 127.0.0.1") and "\n" not in msg
    # the next scope gets a fresh connection; the half-done transaction left nothing behind
    with session_scope(pg_url) as s:
        assert s.scalar(select(func.pg_backend_pid())) != pid
        assert s.scalar(select(func.count()).select_from(Plan)) == 0


def test_postgres_idle_pooled_connection_cut_is_replaced_by_pre_ping(pg_url):
    with session_scope(pg_url) as s:
        pid = s.scalar(select(func.pg_backend_pid()))
    _terminate(pg_url, pid)  # the pooled connection is now dead
    with session_scope(pg_url) as s:  # pre-ping notices and reconnects: no error at all
        s.add(_plan(1))
    assert _count(pg_url, Plan) == 1


def test_forked_child_gets_its_own_connections(db_url):
    """A worker forked from a process that already used the database must not share its pooled
    connection (SQLite file handle / PostgreSQL socket) with the parent."""
    import multiprocessing

    with session_scope(db_url) as s:
        s.add(_plan(1))
    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(target=_child_adds_plan, args=(db_url,))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    with session_scope(db_url) as s:  # the parent's pool still works
        assert s.scalar(select(func.count()).select_from(Plan)) == 2


def _child_adds_plan(url: str) -> None:
    with session_scope(url) as s:
        s.add(_plan(2))
