"""Alembic migrations on SQLite and PostgreSQL: up/down/up, models agree, auto-migration of a
fresh database, refusal of a newer schema, and safe concurrent first use."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
from sqlalchemy import column, func, inspect, select, table, update

from zolab.db import migrate
from zolab.db.errors import SchemaTooNewError
from zolab.db.models import Base, Plan
from zolab.db.session import _create, dispose_engines, ensure_migrated, get_engine, raw_engine, session_scope

MODEL_TABLES = set(Base.metadata.tables)
VERSION = table("alembic_version", column("version_num"))


def _tables(url: str) -> set[str]:
    return set(inspect(raw_engine(url)).get_table_names()) - {"alembic_version"}


def _plan(n: int = 0) -> Plan:
    return Plan(name=f"p{n}", format="yaml", source_text="x", content_hash=f"h{n}", plan_json={"n": n})


def test_upgrade_downgrade_upgrade(empty_db_url):
    assert migrate.current(empty_db_url) is None
    assert _tables(empty_db_url) == set()

    assert migrate.upgrade(empty_db_url) == migrate.head() == "0004"
    assert _tables(empty_db_url) == MODEL_TABLES

    assert migrate.downgrade(empty_db_url, "base") is None
    assert _tables(empty_db_url) == set()

    assert migrate.upgrade(empty_db_url) == migrate.head()
    assert _tables(empty_db_url) == MODEL_TABLES
    assert migrate.check_models_match(empty_db_url) == []


def test_models_and_migrations_agree(db_url):
    assert migrate.check_models_match(db_url) == []


def test_check_models_match_sees_a_drift(db_url):
    """The check can fail: drop an index behind Alembic's back and it must report it."""
    from sqlalchemy import Index

    ix = next(i for i in Base.metadata.tables["jobs"].indexes if i.name == "ix_jobs_status_priority")
    with raw_engine(db_url).begin() as conn:
        Index(ix.name, *ix.columns).drop(conn)
    diff = migrate.check_models_match(db_url)
    assert [d[0] for d in diff] == ["add_index"] and diff[0][1].name == "ix_jobs_status_priority"


def test_fresh_database_is_migrated_on_first_use(empty_db_url):
    get_engine(empty_db_url)
    assert migrate.current(empty_db_url) == migrate.head()
    with session_scope(empty_db_url) as s:
        s.add(_plan())
    with session_scope() as s:  # ZOLAB_DB points at the same database
        assert s.scalar(select(func.count()).select_from(Plan)) == 1


def test_schema_newer_than_code_is_refused_and_nothing_written(db_url):
    with session_scope(db_url) as s:
        s.add(_plan(1))
    with raw_engine(db_url).begin() as conn:
        conn.execute(update(VERSION).values(version_num="9999_future"))
    dispose_engines()  # as a new process would: nothing known about this URL

    with pytest.raises(SchemaTooNewError) as err:
        get_engine(db_url)
    assert str(err.value) == (
        "database schema 9999_future is newer than this zolab (knows up to 0004): upgrade zolab"
    )
    with pytest.raises(SchemaTooNewError), session_scope(db_url) as s:
        s.add(_plan(2))  # never reached
    with pytest.raises(SchemaTooNewError):
        migrate.upgrade(db_url)
    with pytest.raises(SchemaTooNewError):
        migrate.downgrade(db_url, "base")

    with raw_engine(db_url).connect() as conn:
        assert conn.scalar(select(VERSION.c.version_num)) == "9999_future"
        assert conn.scalar(select(func.count()).select_from(Plan.__table__)) == 1
    assert _tables(db_url) == MODEL_TABLES


_MIGRATE_CHILD = """
import sys
from zolab.db import migrate, session
session.get_engine(sys.argv[1])
print(migrate.current(sys.argv[1]))
"""


def test_concurrent_first_use_migrates_once_threads(empty_db_url):
    """Three engines (three connections, as three processes would have) migrate a fresh database
    at once: the writer lock makes one migrate and the others find it at head."""
    engines = [_create(empty_db_url) for _ in range(3)]
    errors: list[BaseException] = []
    start = threading.Barrier(3)

    def first_use(engine) -> None:
        start.wait()
        try:
            ensure_migrated(engine)
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    threads = [threading.Thread(target=first_use, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for e in engines:
        e.dispose()
    assert errors == []
    assert migrate.current(empty_db_url) == migrate.head()
    assert _tables(empty_db_url) == MODEL_TABLES


@pytest.mark.slow
def test_concurrent_first_use_migrates_once_processes(empty_db_url):
    """Four processes open a fresh database at once (no 'table already exists', no 'database is
    locked')."""
    procs = [
        subprocess.Popen([sys.executable, "-c", _MIGRATE_CHILD, empty_db_url], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert out.strip() == migrate.head()
    assert _tables(empty_db_url) == MODEL_TABLES


def test_0002_removes_duplicate_curve_points_and_makes_them_unique(db_url):
    """Points stored twice under 0001 (a retried heartbeat) are deduplicated, keeping the first row."""
    from sqlalchemy import exc as sa_exc
    from sqlalchemy import insert

    from tests.platform._factories import make_jobs
    from zolab.db.models import MetricPoint

    _, (job_id,) = make_jobs(db_url, 1)
    migrate.downgrade(db_url, "0001")
    rows = [(1, "train_loss", 0.7), (1, "train_loss", 0.7), (2, "train_loss", 0.6), (1, "train_loss", 0.9),
            (1, "dev_accuracy", 0.5)]
    with raw_engine(db_url).begin() as conn:
        for step, name, value in rows:
            conn.execute(insert(MetricPoint.__table__).values(job_id=job_id, step=step, name=name, value=value))
    assert migrate.upgrade(db_url) == migrate.head()
    points = table("metric_points", column("id"), column("job_id"), column("step"), column("name"), column("value"))
    with raw_engine(db_url).connect() as conn:
        left = conn.execute(select(points.c.step, points.c.name, points.c.value).order_by(points.c.id)).all()
    assert [tuple(r) for r in left] == [(1, "train_loss", 0.7), (2, "train_loss", 0.6), (1, "dev_accuracy", 0.5)]
    with pytest.raises(sa_exc.IntegrityError), raw_engine(db_url).begin() as conn:
        conn.execute(insert(MetricPoint.__table__).values(job_id=job_id, step=2, name="train_loss", value=0.1))
    assert migrate.check_models_match(db_url) == []
