"""Alembic environment for zolab: runs on the connection that ``zolab.db.migrate`` hands over in
``config.attributes["connection"]`` (already in a transaction holding the writer lock)."""

from __future__ import annotations

from alembic import context

from zolab.db.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite ALTERs need table copies
        compare_type=True,
    )


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    # plain `alembic -x` use without zolab.db.migrate: connect to sqlalchemy.url ourselves
    from zolab.db.session import raw_engine

    with raw_engine(config.get_main_option("sqlalchemy.url")).begin() as conn:
        _configure(conn)
        with context.begin_transaction():
            context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
