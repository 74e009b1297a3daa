"""Shared CLI helpers: one console, one way to fail with a clear message and an exit code."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import NoReturn, TypeVar

import typer
from rich.console import Console, ConsoleDimensions
from rich.markup import escape


class EnvConsole(Console):
    """A Console that honours ``COLUMNS`` at print time, not only when the module was imported.

    Rich reads ``COLUMNS`` once, in ``__init__``; a wrapper script (or a test runner) that sets it
    later would otherwise get tables wrapped at the import-time width, depending on import order.
    """

    @property
    def size(self) -> ConsoleDimensions:
        dims = super().size
        cols = os.environ.get("COLUMNS", "")
        return ConsoleDimensions(int(cols), dims.height) if cols.isdigit() and int(cols) > 0 else dims

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]


console = EnvConsole()
err_console = EnvConsole(stderr=True)

EXIT_OK, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2

#: the one database option of every command that reads or writes the database
DB_OPTION = typer.Option(None, "--db", "--url", help="Database: SQLAlchemy URL or SQLite file "
                         "(default: ZOLAB_DB or ./zolab.db).")


def db_url(db: str | None) -> str:
    """The URL a command works on: ``--db``/``--url``, else ``ZOLAB_DB``, else ./zolab.db."""
    from zolab import config

    return config.db_url(db)


def resolve_plan(ref: str, url: str, *, allow_unresolved: bool = False) -> int:
    """A plan id from a plan file (uploaded first, idempotently), a stored plan's id or its name.

    An unknown id or name raises ``NotFound`` (exit 1 under :func:`guard`); a file with unresolved
    ablations is refused unless ``allow_unresolved`` (they are stored, never run)."""
    from pathlib import Path

    path = Path(ref)
    if path.is_file():
        from zolab.platform.upload import upload_plan

        res = upload_plan(path, filename=str(path), url=url, allow_unresolved=allow_unresolved)
        state = "uploaded as" if res.created else "already stored as"
        console.print(f"plan {escape(res.prepared.plan.name)} {state} plan {res.plan_id}")
        return res.plan_id
    from zolab.platform.lookup import NotFound, plan_id_of

    try:
        return plan_id_of(url, ref)
    except NotFound:
        if path.suffix or "/" in ref:  # looks like a file the user mistyped
            raise NotFound(f"{ref}: no such plan file, and no stored plan has that name") from None
        raise


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """Print one escaped error line (plan text may contain markup) and exit."""
    err_console.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


T = TypeVar("T")


def guard(action: Callable[[], T]) -> T:
    """Run ``action`` under the CLI's one error policy: refusals (bad plan, bad URL, unknown plan /
    task / job, scheduler/queue refusals) exit 1, database and internal errors exit 2, never a traceback (``ZOLAB_DEBUG=1`` shows it)."""
    from zolab.db.errors import BadDatabaseURLError, DatabaseError
    from zolab.platform.errors import PlanError
    from zolab.platform.lookup import NotFound
    from zolab.platform.queue import QueueError
    from zolab.platform.scheduler import SchedulerError

    try:
        return action()
    except typer.Exit:
        raise
    except PlanError as exc:
        n = len(exc.issues)
        fail(f"{n} problem{'s' if n != 1 else ''} in the plan:\n" + str(exc), EXIT_BAD_INPUT)
    except (BadDatabaseURLError, SchedulerError, QueueError, NotFound) as exc:
        fail(str(exc), EXIT_BAD_INPUT)
    except DatabaseError as exc:
        fail(str(exc), EXIT_INTERNAL)
    except Exception as exc:
        if os.environ.get("ZOLAB_DEBUG"):
            raise
        fail(f"internal error: {type(exc).__name__}: {exc}", EXIT_INTERNAL)
