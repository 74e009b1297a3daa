"""``zolab demo``: ``ablations/quickstart.yaml`` end to end on CPU, the way a new user first meets zolab.

Upload, expand, a small Optuna stage (lr x eps per variant, pruned trials stopped early), the final
seeds with each variant's best values, then the leaderboard and where each study ended. A fresh
SQLite file ``./zolab-demo.db`` unless ``--db`` / ``ZOLAB_DB`` name another database.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import typer
from rich.markup import escape

from zolab.cli.common import console, fail
from zolab.cli.common import db_url as _db
from zolab.cli.run_cmds import run_cmd
from zolab.cli.tune_cmds import tune_status_cmd

DEMO_PLAN = "quickstart.yaml"
DEMO_DB = "zolab-demo.db"


def fresh_demo_db() -> str:
    """``./zolab-demo.db`` emptied (with its WAL files and Optuna journal), so each demo starts clean."""
    path = Path(DEMO_DB).resolve()
    for suffix in ("", "-wal", "-shm", ".optuna.log"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return str(path)


def demo_cmd(
    workers: int = typer.Option(2, "--workers", "-w", min=1),
    db: str | None = typer.Option(None, "--db", "--url", help=f"Database (default: ZOLAB_DB or a fresh ./{DEMO_DB})."),
) -> None:
    """Run ablations/quickstart.yaml end to end on CPU (tiny model, Optuna tuning, 3 seeds), then the leaderboard."""
    from zolab import config

    plan_file = config.ABLATIONS_DIR / DEMO_PLAN
    if not plan_file.is_file():
        fail(f"demo plan not found: {plan_file}")
    if db is None and not os.environ.get("ZOLAB_DB"):
        db = fresh_demo_db()
    url = _db(db)
    start = time.monotonic()
    console.print(f"[bold]zolab demo[/]: {plan_file.name} on {escape(url)} with {workers} CPU workers")
    run_cmd(plan=str(plan_file), dry_run=False, force=False, executor="local", workers=workers,
            estimate_for="cpu", card=None, lease_seconds=None, no_progress=False, set_component=None,
            strict=False, allow_unresolved=False, max_jobs=10_000, db=url)
    tune_status_cmd(plan=str(plan_file), advance=False, as_json=False, db=url)
    console.print(f"demo finished in {time.monotonic() - start:.0f} s. Explore the results: "
                  f"[bold]zolab ui --db {escape(url)}[/]")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_cmd)
