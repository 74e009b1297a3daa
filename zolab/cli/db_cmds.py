"""``zolab db upgrade|current|downgrade``: schema migrations from the command line.

Exit codes: 0 done, 1 refused (bad revision, downgrade without ``--yes``), 2 database/environment
error (unreachable server, schema newer than this zolab, migration failure).
"""

from __future__ import annotations

import typer

from zolab.cli.common import DB_OPTION as URL_OPTION
from zolab.cli.common import EXIT_BAD_INPUT, EXIT_INTERNAL, console, fail

db_app = typer.Typer(help="Database schema: upgrade, current, downgrade.", no_args_is_help=True)


def _run(action):
    """Run a migrate call, turning zolab's DB errors into one line and an exit code."""
    from zolab.db.errors import BadDatabaseURLError, DatabaseError, MigrationError

    try:
        return action()
    except BadDatabaseURLError as exc:
        fail(str(exc), EXIT_BAD_INPUT)
    except MigrationError as exc:
        text = str(exc)
        code = EXIT_BAD_INPUT if "Can't locate revision" in text or "not present" in text else EXIT_INTERNAL
        fail(text, code)
    except DatabaseError as exc:
        fail(str(exc), EXIT_INTERNAL)


def _where(url: str | None) -> str:
    from zolab import config
    from zolab.db.session import safe_url

    try:
        return safe_url(config.db_url(url))
    except Exception:  # noqa: BLE001 - only for display; the real error comes from migrate
        return str(url)


@db_app.command("upgrade")
def upgrade_cmd(rev: str = typer.Argument("head", help="Target revision."), url: str | None = URL_OPTION) -> None:
    """Migrate the database to REV (default: the newest this zolab knows)."""
    from zolab.db import migrate

    now = _run(lambda: migrate.upgrade(url, rev))
    console.print(f"{_where(url)}: schema at revision [bold]{now}[/] (head {migrate.head()})")


@db_app.command("current")
def current_cmd(url: str | None = URL_OPTION) -> None:
    """Show the database's schema revision and the newest this zolab knows."""
    from zolab.db import migrate

    now = _run(lambda: migrate.current(url))
    head = migrate.head()
    state = "up to date" if now == head else ("empty" if now is None else "behind: run `zolab db upgrade`")
    console.print(f"{_where(url)}: revision [bold]{now or '-'}[/] (head {head}, {state})")


@db_app.command("downgrade")
def downgrade_cmd(
    rev: str = typer.Argument(..., help="Target revision ('base' drops every zolab table)."),
    url: str | None = URL_OPTION,
    yes: bool = typer.Option(False, "--yes", "-y", help="Confirm: a downgrade can delete data."),
) -> None:
    """Migrate the database down to REV (destructive: needs --yes)."""
    from zolab.db import migrate

    if not yes:
        fail(f"downgrading {_where(url)} to {rev} can delete data; repeat with --yes to confirm", EXIT_BAD_INPUT)
    now = _run(lambda: migrate.downgrade(url, rev))
    console.print(f"{_where(url)}: schema at revision [bold]{now or 'base (empty)'}[/]")


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
