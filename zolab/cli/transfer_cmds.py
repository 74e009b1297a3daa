"""``zolab export PLAN DIR`` and ``zolab import DIR_OR_FILE``: run a plan on a machine without the DB.

1. ``zolab export PLAN DIR [--with-assets]`` (PLAN: a stored plan id, or a plan file that is
   uploaded and enqueued first): one job file per queued job.
2. On the GPU box: ``zolab run-one --config DIR --out DIR/results.jsonl``.
3. Back here: ``zolab import DIR/results.jsonl`` (idempotent).
"""

from __future__ import annotations

from pathlib import Path

import typer

from zolab.cli.common import DB_OPTION, EXIT_BAD_INPUT, console, fail

ASSETS_OPTION = typer.Option(
    False, "--with-assets", help="also copy the cached model/data the jobs use into DIR/cache (for offline boxes)"
)
PLAN_ARG = typer.Argument(..., help="plan id or name, or a plan file (uploaded and enqueued first)")
FOLDER_ARG = typer.Argument(..., help="folder to write the job files into")
RESULTS_ARG = typer.Argument(..., help="a results .jsonl file, or a folder of them")
FORCE_OPTION = typer.Option(False, "--force", help="enqueue a plan file even when it is over its GPU-hour budget")


def _plan_id(plan: str, db: str | None, force: bool) -> int:
    """A stored plan (id or name), or upload + enqueue a plan file (both idempotent)."""
    if not Path(plan).is_file():
        from zolab.platform.lookup import NotFound, plan_id_of

        try:
            return plan_id_of(db, plan)
        except NotFound:
            if Path(plan).suffix or "/" in plan:
                raise NotFound(f"{plan}: neither a plan id nor a plan file (nor a stored plan's name)") from None
            raise
    from zolab.platform.scheduler import schedule
    from zolab.platform.upload import upload_plan

    up = upload_plan(Path(plan), url=db)
    report = schedule(db, up.plan_id, force=force, device="cuda")
    console.print(f"plan {up.plan_id} ({'uploaded' if up.created else 'already stored'}): "
                  f"{len(report.created)} job(s) enqueued, {report.existing} already there")
    return up.plan_id


def register(app: typer.Typer) -> None:
    from zolab.cli.common import guard  # one error policy for plan/DB errors

    @app.command("export")
    def export_cmd(
        plan: str = PLAN_ARG, folder: Path = FOLDER_ARG, with_assets: bool = ASSETS_OPTION, force: bool = FORCE_OPTION, db: str | None = DB_OPTION,
    ) -> None:
        """Write each queued job of PLAN as a job file (RunConfig + job id, plan, variant, task, seed)."""
        from zolab.platform.transfer import TransferError, export_jobs
        from zolab.runners.assets import AssetMissing

        def run():
            try:
                return export_jobs(db, _plan_id(plan, db, force), folder, with_assets=with_assets)
            except (TransferError, AssetMissing) as exc:
                fail(str(exc), EXIT_BAD_INPUT)

        report = guard(run)
        console.print(f"exported {len(report.files)} job(s) to {report.folder}"
                      + (f" ({report.skipped} not queued, left out)" if report.skipped else ""))
        if report.assets:
            state = "included under cache/" if with_assets else "not included (use --with-assets)"
            console.print(f"assets needed: {', '.join(report.assets)}: {state}")
        console.print(f"run there: zolab run-one --config {report.folder} --out {report.folder}/results.jsonl")

    @app.command("import")
    def import_cmd(
        target: Path = RESULTS_ARG,
        db: str | None = DB_OPTION,
    ) -> None:
        """Load results written by `zolab run-one` into the database (a result imported twice stays one row)."""
        from zolab.platform.transfer import TransferError, import_results

        def run():
            try:
                return import_results(db, target)
            except TransferError as exc:
                fail(str(exc), EXIT_BAD_INPUT)

        report = guard(run)
        console.print(f"imported {len(report.imported)} result(s); {len(report.already)} already in the database")
        for job_id, why in report.not_imported:
            console.print(f"[yellow]job {job_id} not imported:[/] {why}")
