"""``zolab db upgrade|current|downgrade``: outcomes and exit codes 0/1/2."""

from __future__ import annotations

from sqlalchemy import column, table, update
from typer.testing import CliRunner

from zolab.cli import app
from zolab.db import migrate
from zolab.db.session import dispose_engines, raw_engine

runner = CliRunner()


class _Out:
    """Exit code and output with rich's line wrapping undone (messages are checked as text)."""

    def __init__(self, exit_code: int, output: str) -> None:
        self.exit_code, self.output = exit_code, " ".join(output.split())


def _run(*args: str) -> _Out:
    result = runner.invoke(app, list(args))
    dispose_engines()
    return _Out(result.exit_code, result.output)


def test_upgrade_current_downgrade(empty_db_url):
    r = _run("db", "current", "--url", empty_db_url)
    assert r.exit_code == 0 and "empty" in r.output

    r = _run("db", "upgrade", "--url", empty_db_url)
    assert r.exit_code == 0 and migrate.head() in r.output
    assert migrate.current(empty_db_url) == migrate.head()

    r = _run("db", "current")  # ZOLAB_DB is set by the fixture
    assert r.exit_code == 0 and "up to date" in r.output

    r = _run("db", "downgrade", "base", "--url", empty_db_url)
    assert r.exit_code == 1 and "--yes" in r.output
    assert migrate.current(empty_db_url) == migrate.head()  # refused: nothing changed

    r = _run("db", "downgrade", "base", "--url", empty_db_url, "--yes")
    assert r.exit_code == 0
    assert migrate.current(empty_db_url) is None


def test_unknown_revision_is_bad_input(empty_db_url):
    r = _run("db", "upgrade", "nope", "--url", empty_db_url)
    assert r.exit_code == 1
    assert "Can't locate revision" in r.output and "Traceback" not in r.output


def test_bad_url_is_bad_input():
    r = _run("db", "current", "--url", "nosuchdialect://x")
    assert r.exit_code == 1 and "bad database URL" in r.output


def test_schema_too_new_is_exit_2(db_url):
    with raw_engine(db_url).begin() as conn:
        conn.execute(update(table("alembic_version", column("version_num"))).values(version_num="0099"))
    dispose_engines()
    r = _run("db", "upgrade", "--url", db_url)
    assert r.exit_code == 2
    assert "newer than this zolab" in r.output and "upgrade zolab" in r.output


def test_unreachable_postgres_is_exit_2():
    r = _run("db", "current", "--url", "postgresql+psycopg://postgres@127.0.0.1:1/nothing")
    assert r.exit_code == 2
    assert "cannot reach PostgreSQL at 127.0.0.1:1/nothing" in r.output
