"""Shared fixtures for every zolab test (owned by the DB layer; keep this API stable).

Database fixtures (each gives a *fresh, migrated* database and sets ``ZOLAB_DB`` to it, so code
that calls ``get_engine()`` / ``session_scope()`` without a URL uses it too):

* ``db_url``   -- parametrized over ``sqlite`` and ``postgres``: a test that takes it runs on both.
  ``postgres`` runs only when ``ZOLAB_TEST_PG_URL`` is set and carries the ``postgres`` marker;
  without the variable every PostgreSQL test is deselected and the reason is printed ONCE at the
  end of the run (not one "skipped" line per test); if the variable is set but the server cannot
  be reached the test FAILS (never a silent skip).
* ``sqlite_url`` -- SQLite only: a copy of a migrated template file in ``tmp_path``.
* ``pg_url``     -- PostgreSQL only (same rules as above): a database ``zolab_t_<hex>`` that no
  other test uses at the same time, cloned from a migrated template database made once per test
  process (so parallel worker processes never share one). At teardown its other connections are
  terminated; if its schema is unchanged its rows are deleted and it is reused by a later test
  (ids restart at 1), otherwise it is dropped ``WITH (FORCE)``. All are dropped at session end.
* ``empty_db_url`` -- parametrized like ``db_url`` but NOT migrated (for migration tests).
* ``db_session`` -- an ORM ``Session`` on ``db_url`` (``expire_on_commit=False``), closed at teardown.

Every test ends with ``zolab.db.session.dispose_engines()`` (autouse) so no engine, pooled
connection or SQLite file handle leaks into the next test.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_ENV = "ZOLAB_TEST_PG_URL"


# ---------------------------------------------------------------- PostgreSQL: deselected, said once
_PG_REASON = f"PostgreSQL tests need {PG_ENV} (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)"
_PG_FIXTURES = {"pg_url", "_pg_admin", "_pg_template"}


def _needs_postgres(item: pytest.Item) -> bool:
    return item.get_closest_marker("postgres") is not None or bool(_PG_FIXTURES & set(getattr(item, "fixturenames", ())))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without ``ZOLAB_TEST_PG_URL``, PostgreSQL tests are deselected (counted, reason said once)."""
    if os.environ.get(PG_ENV):
        return
    keep, dropped = [], []
    for item in items:
        (dropped if _needs_postgres(item) else keep).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
        config.stash[_PG_DESELECTED] = len(dropped)


_PG_DESELECTED = pytest.StashKey[int]()


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    n = config.stash.get(_PG_DESELECTED, 0)
    if n:
        terminalreporter.write_line(f"{n} PostgreSQL test(s) deselected: {_PG_REASON}", yellow=True)


# ---------------------------------------------------------------- engine hygiene
@pytest.fixture(autouse=True)
def _dispose_db_engines() -> Iterator[None]:
    yield
    from zolab.db.session import dispose_engines

    dispose_engines()


# ---------------------------------------------------------------- SQLite
@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, built once per test process and copied per test (fast)."""
    from zolab.db import migrate
    from zolab.db.session import dispose_engines

    path = tmp_path_factory.mktemp("zolab-sqlite-template") / "template.db"
    migrate.upgrade(f"sqlite:///{path}")
    dispose_engines()  # last connection closed: WAL checkpointed into the main file
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0
    return path


@pytest.fixture
def sqlite_url(_sqlite_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    path = tmp_path / "zolab.db"
    shutil.copyfile(_sqlite_template, path)
    url = f"sqlite:///{path}"
    monkeypatch.setenv("ZOLAB_DB", url)
    return url


# ---------------------------------------------------------------- PostgreSQL
def _pg_server_url() -> str:
    raw = os.environ.get(PG_ENV)
    if not raw:
        pytest.skip(_PG_REASON)
    return raw


def _libpq(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _with_database(url: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)


_FINGERPRINT_QUERIES = (
    (
        "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns"
        " WHERE table_schema = 'public' ORDER BY 1, 2"
    ),
    "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1",
    (
        "SELECT c.conname FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace"
        " WHERE n.nspname = 'public' ORDER BY 1"
    ),
    "SELECT sequence_name FROM information_schema.sequences WHERE sequence_schema = 'public' ORDER BY 1",
    "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1",
    "SELECT version_num FROM alembic_version",
)


class _PgAdmin:
    """Test databases on the server of ``ZOLAB_TEST_PG_URL``.

    ``CREATE DATABASE`` costs 0.1-2 s (checkpoint I/O; worse under load), so a database a test
    gave back is reused when its schema is still exactly the template's (same catalog
    fingerprint): its rows are deleted and its id sequences restarted (a few ms). A database whose
    schema a test changed (downgrade, extra tables, dropped index) is dropped instead. Identifiers
    are composed with ``psycopg.sql``, never string formatting.
    """

    def __init__(self, url: str) -> None:
        import psycopg

        self.url = url
        try:
            self.conn = psycopg.connect(_libpq(url), autocommit=True, connect_timeout=5)
        except psycopg.OperationalError as exc:
            pytest.fail(f"{PG_ENV} is set but PostgreSQL is unreachable ({url}): {exc}", pytrace=False)
        self.template: str | None = None
        self.template_fingerprint: tuple | None = None
        self.clean: list[str] = []     # reusable databases, rows deleted
        self.owned: set[str] = set()   # every database this process created

    def create(self, name: str, template: str = "template0") -> str:
        from psycopg import sql

        self.conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template))
        )
        self.owned.add(name)
        return _with_database(self.url, name)

    def drop(self, name: str) -> None:
        from psycopg import sql

        self.conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        self.owned.discard(name)

    def fingerprint(self, name: str) -> tuple:
        import psycopg

        with psycopg.connect(_libpq(_with_database(self.url, name)), autocommit=True) as conn:
            return tuple(tuple(conn.execute(q).fetchall()) for q in _FINGERPRINT_QUERIES)

    def checkout(self) -> str:
        """A clean migrated database: a reused one, else a fresh clone of the template."""
        assert self.template is not None
        name = self.clean.pop() if self.clean else f"zolab_t_{uuid.uuid4().hex[:12]}"
        if name not in self.owned:
            self.create(name, template=self.template)
        return name

    def checkin(self, name: str) -> None:
        """Reset a database a test is done with for reuse, or drop it if its schema changed."""
        import psycopg

        self.conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        try:
            reusable = self.fingerprint(name) == self.template_fingerprint
            if reusable:
                self._reset_rows(name)
        except psycopg.Error:
            reusable = False
        if reusable:
            self.clean.append(name)
        else:
            self.drop(name)

    def _reset_rows(self, name: str) -> None:
        from sqlalchemy import Integer, create_engine, delete, func, select
        from sqlalchemy.pool import NullPool

        from zolab.db.models import Base

        engine = create_engine(_with_database(self.url, name), poolclass=NullPool)
        try:
            with engine.begin() as conn:
                for tbl in reversed(Base.metadata.sorted_tables):
                    conn.execute(delete(tbl))
                    pk = list(tbl.primary_key.columns)
                    if len(pk) == 1 and isinstance(pk[0].type, Integer):
                        seq = func.pg_get_serial_sequence(tbl.name, pk[0].name)
                        conn.execute(select(func.setval(seq, 1, False)))
        finally:
            engine.dispose()

    def close(self) -> None:
        for name in list(self.owned):
            self.drop(name)
        self.conn.close()


@pytest.fixture(scope="session")
def _pg_admin() -> Iterator[_PgAdmin]:
    admin = _PgAdmin(_pg_server_url())
    yield admin
    admin.close()


@pytest.fixture(scope="session")
def _pg_template(_pg_admin: _PgAdmin) -> str:
    """A migrated template database for this test process (no connections left open on it)."""
    from zolab.db import migrate
    from zolab.db.session import dispose_engines

    name = f"zolab_tpl_{uuid.uuid4().hex[:12]}"
    url = _pg_admin.create(name)
    try:
        migrate.upgrade(url)
    finally:
        dispose_engines()
    _pg_admin.template = name
    _pg_admin.template_fingerprint = _pg_admin.fingerprint(name)
    return name


@pytest.fixture
def pg_url(_pg_admin: _PgAdmin, _pg_template: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from zolab.db.session import dispose_engines

    name = _pg_admin.checkout()
    url = _with_database(_pg_admin.url, name)
    monkeypatch.setenv("ZOLAB_DB", url)
    yield url
    dispose_engines()
    _pg_admin.checkin(name)


# ---------------------------------------------------------------- both backends
_BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=_BACKENDS)
def db_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


@pytest.fixture(params=_BACKENDS)
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A database with no tables at all (not migrated)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'empty.db'}"
        monkeypatch.setenv("ZOLAB_DB", url)
        yield url
        return
    from zolab.db.session import dispose_engines

    admin: _PgAdmin = request.getfixturevalue("_pg_admin")
    name = f"zolab_t_{uuid.uuid4().hex[:12]}"
    url = admin.create(name)
    monkeypatch.setenv("ZOLAB_DB", url)
    yield url
    dispose_engines()
    admin.drop(name)


@pytest.fixture
def db_session(db_url: str):
    from sqlalchemy.orm import Session

    from zolab.db.session import get_engine

    session = Session(bind=get_engine(db_url), expire_on_commit=False)
    yield session
    session.close()
