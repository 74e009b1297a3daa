"""zolab's own database errors: what callers catch instead of driver exceptions.

:func:`zolab.db.session.session_scope` turns SQLAlchemy/driver errors into these (the original stays
in ``__cause__``), so the CLI, workers and UI can show one clear line and decide whether to retry
without knowing which backend (SQLite or PostgreSQL) is underneath.
"""

from __future__ import annotations


class DatabaseError(Exception):
    """A database operation failed; ``str(err)`` is one human line naming what and why."""


class TransientDatabaseError(DatabaseError):
    """May succeed if tried again: SQLite "database is locked", a PostgreSQL serialization
    failure or deadlock, or a lost connection. :mod:`zolab.db.retry` retries these."""


class IntegrityConflictError(DatabaseError):
    """A unique/foreign-key constraint refused the write (e.g. the same job key twice)."""


class BadDatabaseURLError(DatabaseError):
    """The configured URL is malformed or names a driver that is not installed (bad input)."""


class SchemaTooNewError(DatabaseError):
    """The database was migrated by a newer zolab: refuse to touch it rather than corrupt it."""

    def __init__(self, db_revision: str, code_head: str) -> None:
        self.db_revision = db_revision
        self.code_head = code_head
        super().__init__(
            f"database schema {db_revision} is newer than this zolab (knows up to {code_head}): upgrade zolab"
        )


class MigrationError(DatabaseError):
    """Alembic could not bring the schema to the requested revision."""


__all__ = [
    "BadDatabaseURLError",
    "DatabaseError",
    "IntegrityConflictError",
    "MigrationError",
    "SchemaTooNewError",
    "TransientDatabaseError",
]
