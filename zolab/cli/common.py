"""Shared CLI helpers: one console, one way to fail with a clear message and an exit code."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

console = Console()
err_console = Console(stderr=True)

EXIT_OK, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """Print one escaped error line (plan text may contain markup) and exit."""
    err_console.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)
