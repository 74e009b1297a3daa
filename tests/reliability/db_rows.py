"""Row counts for "nothing was written" assertions (test-side SQL; zolab's own code keeps SQL in zolab/db)."""

from __future__ import annotations

from sqlalchemy import MetaData, func, select

from zolab.db.models import Base
from zolab.db.retry import retry_on_transient
from zolab.db.session import get_engine, session_scope

_reflected: dict[str, MetaData] = {}


def count_rows(url: str) -> dict[str, int]:
    """Rows in every table of the database (reflected once per URL, so tables zolab's models do not
    know count too), except Alembic's bookkeeping."""
    engine = get_engine(url)
    if url not in _reflected:
        _reflected[url] = meta = MetaData()
        meta.reflect(bind=engine)
    with engine.connect() as conn:
        return {
            name: conn.execute(select(func.count()).select_from(table)).scalar_one()
            for name, table in _reflected[url].tables.items()
            if name != "alembic_version"
        }


def clear_rows(url: str) -> None:
    """Empty every zolab table (children first), so the next example starts from a fresh database."""
    with get_engine(url).begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())


def read(url: str, fn):
    """``fn(session)`` in a test-side read that itself survives the faults it is watching."""
    def once():
        with session_scope(url) as s:
            return fn(s)

    return retry_on_transient(once, attempts=20, what="test read")
