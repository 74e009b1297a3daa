"""The queries the rest of zolab uses: all SQL lives under ``zolab/db`` (no SQL elsewhere).

One module per area, each taking a ``Session`` (opened with :func:`zolab.db.session.session_scope`):
``plans`` (upload/list/show), ``jobs`` (queue: enqueue, claim, heartbeat, finish), ``leaderboard``
(aggregates over results). Wrap whole transactions in :func:`zolab.db.retry.retry_on_transient`.
"""

from zolab.db.errors import DatabaseError, IntegrityConflictError, SchemaTooNewError, TransientDatabaseError
from zolab.db.retry import retry_on_transient, transient_retry
from zolab.db.session import dialect_name, get_engine, session_scope

__all__ = [
    "DatabaseError",
    "IntegrityConflictError",
    "SchemaTooNewError",
    "TransientDatabaseError",
    "dialect_name",
    "get_engine",
    "retry_on_transient",
    "session_scope",
    "transient_retry",
]
