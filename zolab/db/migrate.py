"""Alembic migrations, driven from Python (no alembic.ini): upgrade, downgrade, current, head,
and an autogenerate check that the models and the migrations agree.

The scripts live in ``zolab/db/migrations`` (found via ``__file__``, as Optuna ships its own), so
an installed zolab migrates its database without a checkout. ``get_engine`` calls
:func:`upgrade_engine` on first use; ``zolab db upgrade`` calls :func:`upgrade`.

Concurrent first use is safe: the upgrade runs in ONE transaction that first takes the writer
lock (SQLite ``BEGIN IMMEDIATE``; PostgreSQL ``pg_advisory_xact_lock``), then reads the version,
so a second process waits and then finds the schema at head. A database whose revision this code
does not know was migrated by a newer zolab: :class:`SchemaTooNewError`, nothing written.

Adding a revision (another helper changing ``zolab/db/models.py``):

1. change the models (additive where possible: new nullable columns, new tables);
2. ``.venv/bin/python -c "from zolab.db.migrate import make_revision; make_revision('add foo to jobs')"``
   (autogenerates ``versions/<NNNN>_add_foo_to_jobs.py`` chained on the current head, numbering
   ``0002``, ``0003``, ... against a scratch SQLite DB migrated to head);
3. review it: keep SQLite-safe batch operations (``with op.batch_alter_table(...)``), give server
   defaults to new NOT NULL columns, write ``downgrade()``;
4. ``pytest tests/db`` (up/down/up on SQLite and PostgreSQL; ``check_models_match`` finds no diff).
Never edit a released revision; chain a new one on ``head``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Engine, func, select
from sqlalchemy import exc as sa_exc

from zolab.db.errors import DatabaseError, MigrationError, SchemaTooNewError
from zolab.db.models import Base

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
#: PostgreSQL advisory lock key held while migrating (any fixed 64-bit number: "zolabmig")
PG_MIGRATION_LOCK = 0x7A6F6C61626D6967


def alembic_config() -> Config:
    """A programmatic Alembic config pointing at the shipped scripts."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    return cfg


def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    """The newest revision this code knows."""
    rev = _script().get_current_head()
    if rev is None:  # pragma: no cover - the package ships revisions
        raise MigrationError(f"no migration scripts found in {MIGRATIONS_DIR}")
    return rev


def _known_revisions() -> set[str]:
    return {sc.revision for sc in _script().walk_revisions()}


def _db_heads(conn) -> tuple[str, ...]:
    return tuple(MigrationContext.configure(conn).get_current_heads())


def _refuse_unknown(heads: tuple[str, ...]) -> None:
    unknown = [h for h in heads if h not in _known_revisions()]
    if unknown:
        raise SchemaTooNewError(", ".join(unknown), head())


def _engine(url_or_engine: str | Engine | None) -> Engine:
    if isinstance(url_or_engine, Engine):
        return url_or_engine
    from zolab.db.session import raw_engine

    return raw_engine(url_or_engine)


def _run_locked(engine: Engine, fn) -> Any:
    """Run ``fn(connection)`` in one transaction holding the writer lock (see module docstring)."""
    from zolab.db.session import _IMMEDIATE, translate_error

    try:
        with engine.execution_options(**{_IMMEDIATE: True}).begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(select(func.pg_advisory_xact_lock(PG_MIGRATION_LOCK)))
            return fn(conn)
    except DatabaseError:
        raise
    except CommandError as exc:
        raise MigrationError(f"migration failed: {exc}") from exc
    except sa_exc.SQLAlchemyError as exc:
        raise translate_error(exc, engine) from exc


def upgrade_engine(engine: Engine, rev: str = "head", *, only_if_behind: bool = False) -> None:
    """Upgrade the database behind ``engine`` to ``rev``.

    ``only_if_behind``: first look without locking and return at once when already at head (the
    cheap path taken by every ``get_engine``)."""
    if only_if_behind:
        from zolab.db.session import translate_error

        try:
            with engine.connect() as conn:
                heads = _db_heads(conn)
        except sa_exc.SQLAlchemyError as exc:
            raise translate_error(exc, engine) from exc
        _refuse_unknown(heads)
        if heads == (head(),):
            return

    def _do(conn) -> None:
        _refuse_unknown(_db_heads(conn))
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, rev)

    _run_locked(engine, _do)


def upgrade(url: str | Engine | None = None, rev: str = "head") -> str | None:
    """Upgrade to ``rev`` (default head); returns the revision now current."""
    engine = _engine(url)
    upgrade_engine(engine, rev)
    return current(engine)


def downgrade(url: str | Engine | None, rev: str) -> str | None:
    """Downgrade to ``rev`` (``"base"`` drops every zolab table); returns the revision now current."""
    engine = _engine(url)

    def _do(conn) -> None:
        _refuse_unknown(_db_heads(conn))
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, rev)

    _run_locked(engine, _do)
    return current(engine)


def current(url: str | Engine | None = None) -> str | None:
    """The database's revision (``None`` for an empty database)."""
    engine = _engine(url)
    from zolab.db.session import translate_error

    try:
        with engine.connect() as conn:
            heads = _db_heads(conn)
    except sa_exc.SQLAlchemyError as exc:
        raise translate_error(exc, engine) from exc
    return ", ".join(heads) if heads else None


def check_models_match(url: str | Engine | None = None) -> list[Any]:
    """Autogenerate diff between ``models.py`` and the database (migrated to head first).

    An empty list means the migrations create exactly the models' schema."""
    engine = _engine(url)
    upgrade_engine(engine, "head", only_if_behind=True)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": False})
        return list(compare_metadata(ctx, Base.metadata))


def make_revision(message: str, *, rev_id: str | None = None, autogenerate: bool = True) -> Path:
    """Write a new revision chained on head (developer tool; see module docstring)."""
    from zolab.db.session import _create

    rev_id = rev_id or _next_rev_id()
    with tempfile.TemporaryDirectory() as tmp:
        engine = _create(f"sqlite:///{Path(tmp) / 'scratch.db'}")
        try:
            upgrade_engine(engine, "head")
            with engine.begin() as conn:
                cfg = alembic_config()
                cfg.attributes["connection"] = conn
                script = command.revision(cfg, message=message, autogenerate=autogenerate, rev_id=rev_id)
        finally:
            engine.dispose()
    return Path(script.path)  # type: ignore[union-attr]


def _next_rev_id() -> str:
    try:
        return f"{int(head()) + 1:04d}"
    except (ValueError, MigrationError):
        return "0001"


__all__ = [
    "MIGRATIONS_DIR",
    "alembic_config",
    "check_models_match",
    "current",
    "downgrade",
    "head",
    "make_revision",
    "upgrade",
    "upgrade_engine",
]
