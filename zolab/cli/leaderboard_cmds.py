"""``zolab leaderboard PLAN``: per task, every variant against the baseline, paired over seeds.

The numbers are :func:`zolab.platform.leaderboard.load_board`'s and the text
:mod:`zolab.platform.board_format`'s, so the terminal table, the ``--format markdown|latex|csv``
exports and the dashboard say the same thing. Exit codes: 0 ok (also "no finished results yet"
for a plan that exists), 1 unknown plan or task, 2 database error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from zolab.cli.common import DB_OPTION, console, db_url, fail, guard, resolve_plan


def board_tables(board) -> list[Table]:
    """One rich table per task, its notes as the caption."""
    from zolab.platform import board_format as bf

    out = []
    for tb, text in zip(board.tasks, bf.tables(board)):
        table = Table(title=f"leaderboard: {escape(text.title)}", caption=escape("\n".join(text.notes)),
                      caption_justify="left")
        for header, numeric in zip(text.headers, text.numeric):
            table.add_column(escape(header), justify="right" if numeric else "left",
                             no_wrap=header == "seeds", overflow="fold")
        for row, cells in zip(tb.rows, text.rows):
            label = escape(cells[0])
            if row.is_baseline:
                label = f"[bold]{label}[/]"
            elif row.diverged:
                label = f"[red]{label}[/]"
            table.add_row(label, *(escape(c) for c in cells[1:]))
        out.append(table)
    return out


def leaderboard_tables(url: str, plan_id: int, task: str | None = None) -> list[Table]:
    """The plan's leaderboard as rich tables (empty: no finished results)."""
    from zolab.platform.leaderboard import load_board

    return board_tables(load_board(url, plan_id, task=task))


def leaderboard_cmd(
    plan: str = typer.Argument(..., help="Plan id, stored plan name, or plan file."),
    task: str = typer.Option(None, "--task", help="Only this task."),
    fmt: str = typer.Option("table", "--format", "-f", help="table | markdown | latex | csv"),
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the export to this file, not stdout.")] = None,
    stage: str = typer.Option("final", "--stage", help="final (the seeds) | tune (Optuna trials)."),
    db: str | None = DB_OPTION,
) -> None:
    """Per task: each variant's mean ± 95% CI and its paired difference from the baseline (Holm-corrected)."""
    from zolab.platform import board_format as bf

    if fmt not in bf.FORMATS:
        fail(f"--format must be one of {', '.join(bf.FORMATS)}, got {fmt!r}")
    if stage not in ("final", "tune"):
        fail(f"--stage must be final or tune, got {stage!r}")
    url = db_url(db)

    def act() -> None:
        from zolab.platform.leaderboard import load_board

        plan_id = resolve_plan(plan, url)
        board = load_board(url, plan_id, task=task, stage=stage)
        if board.empty:
            console.print(f"plan {plan_id}: no finished results yet (see `zolab status {plan_id}`)")
            return
        if fmt == "table":
            for t in board_tables(board):
                console.print(t)
            return
        text = bf.render(board, fmt)
        if out is not None:
            out.write_text(text, encoding="utf-8")
            console.print(f"wrote {out} ({fmt}, {len(board.tasks)} task(s))")
        else:
            typer.echo(text, nl=False)

    guard(act)


def register(app: typer.Typer) -> None:
    app.command("leaderboard")(leaderboard_cmd)
