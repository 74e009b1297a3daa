"""Shared CLI helpers: one console, one way to fail with a clear message and an exit code."""

from __future__ import annotations

import os
from typing import NoReturn

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


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """Print one escaped error line (plan text may contain markup) and exit."""
    err_console.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)
