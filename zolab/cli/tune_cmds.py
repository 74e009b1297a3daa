"""``zolab tune-status PLAN``: where each Optuna study of a tuned plan stands (reads only).

One row per variant x task: trials asked / planned, how they ended (complete, pruned, failed,
running), the best dev accuracy and params, and whether the final jobs were enqueued with them.
``--advance`` also reconciles the studies with their jobs (what a worker does after each trial),
for a run that stopped between a trial and the next.
"""

from __future__ import annotations

import json

import typer
from rich.markup import escape
from rich.table import Table

from zolab.cli.common import DB_OPTION, console, guard, resolve_plan
from zolab.cli.common import db_url as _db


def _fmt(params: dict) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()) or "-"


def tune_status_cmd(
    plan: str = typer.Argument(..., help="Plan id, stored plan name, or plan file."),
    advance: bool = typer.Option(False, "--advance", help="Tell finished trials and enqueue what is due first."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    db: str | None = DB_OPTION,
) -> None:
    """Show the Optuna studies of a plan with a tuning block."""
    url = _db(db)

    def act() -> None:
        from zolab.platform import tuning

        plan_id = resolve_plan(plan, url)
        if advance:
            created = tuning.advance(url, plan_id).created
            console.print(f"enqueued {len(created)} jobs")
        states = tuning.status(url, plan_id)
        if not states:
            console.print(f"plan {plan_id} has no tuning block")
            return
        if as_json:
            rows = [{**{k: getattr(s, k) for k in ("name", "variant_id", "variant_label", "task", "trials", "asked",
                                                  "complete", "pruned", "failed", "running", "best_value",
                                                  "best_params", "finished")}} for s in states]
            typer.echo(json.dumps(rows, indent=2))
            return
        table = Table(title=f"plan {plan_id}: Optuna studies")
        for col in ("study", "variant", "task", "trials", "complete", "pruned", "failed", "running",
                    "best dev acc (%)", "best params", "state"):
            table.add_column(col)
        for s in states:
            table.add_row(escape(s.name), escape(s.variant_label), escape(s.task), f"{s.asked}/{s.trials}",
                          str(s.complete), str(s.pruned), str(s.failed), str(s.running),
                          "-" if s.best_value is None else f"{100 * s.best_value:.1f}", escape(_fmt(s.best_params)),
                          "done" if s.finished else "tuning")
        console.print(table)

    guard(act)


def register(app: typer.Typer) -> None:
    app.command("tune-status")(tune_status_cmd)
