"""``zolab run | worker | status | leaderboard | cancel | retry``: executing plans.

``run`` uploads a plan file (or takes a stored plan id), expands it into jobs with estimates,
checks the budget, enqueues idempotently and drains the queue with local worker processes or Ray.
Running the same plan again resumes it: finished jobs stay finished, nothing is duplicated.
Exit codes: 0 ok, 1 bad input / refused (over budget) / jobs failed, 2 database or internal error.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from zolab.cli.common import EXIT_BAD_INPUT, console, fail, guard

DB_OPTION = typer.Option(None, "--db", "--url", help="SQLAlchemy URL or SQLite file (default: ZOLAB_DB or ./zolab.db).")


def _gib(n: float | None) -> str:
    return "-" if n is None else f"{n / 2**30:.2f} GiB" if n >= 2**28 else f"{n / 2**20:.1f} MiB"


def _db(db: str | None) -> str:
    from zolab import config

    return config.db_url(db)


# -- plan resolution ------------------------------------------------------------------------------
def resolve_plan(ref: str, url: str) -> int:
    """A plan id from a file (uploaded first, idempotently), an id, or a stored plan's name."""
    path = Path(ref)
    if path.is_file():
        from zolab.platform.upload import upload_plan

        res = upload_plan(path, filename=str(path), url=url)
        state = "uploaded as" if res.created else "already stored as"
        console.print(f"plan {escape(res.prepared.plan.name)!s} {state} plan {res.plan_id}")
        return res.plan_id
    if ref.isdigit():
        return int(ref)
    from zolab.db.repo import plans as plans_repo
    from zolab.db.session import session_scope

    with session_scope(url) as s:
        matches = [p.id for p in plans_repo.list_plans(s) if p.name == ref]
    if len(matches) == 1:
        return matches[0]
    if matches:
        fail(f"{len(matches)} stored plans are named {ref!r}: use an id ({', '.join(map(str, matches))})")
    fail(f"{ref!r} is not a plan file, a plan id or a stored plan's name")


# -- tables ---------------------------------------------------------------------------------------
def expansion_tables(exp) -> list[Table]:
    n_final = sum(j.stage == "final" for j in exp.jobs)
    title = (f"plan {exp.plan_id} ({escape(exp.plan_name)}): {n_final} jobs "
             f"= {len(exp.variants)} variants x {len(exp.tasks)} tasks x {len(exp.seeds)} seeds")
    if len(exp.jobs) > n_final:
        title += f", plus {len(exp.jobs) - n_final} tuning trials"
    jobs = Table(title=title)
    for col in ("variant", "serves", "task", "stage", "jobs", "seeds", "est. peak memory", "est. s/step",
                "est. GPU h"):
        jobs.add_column(col, justify="right" if col.startswith("est") or col == "jobs" else "left")
    serves = {v.id: ", ".join(v.ablations) for v in exp.variants}
    groups: dict[tuple[int, str, str], list] = {}
    for j in exp.jobs:
        groups.setdefault((j.variant_id, j.task, j.stage), []).append(j)
    for (vid, task, stage), group in groups.items():
        first = group[0]
        jobs.add_row(escape(first.variant_label), escape(serves.get(vid, "")), escape(task), stage, str(len(group)),
                     ",".join(sorted({str(j.seed) for j in group})), _gib(first.estimate.memory_bytes),
                     f"{first.estimate.step_seconds:.3g}", f"{sum(j.estimate.gpu_hours for j in group):.3g}")
    tables = [jobs]
    if exp.skipped:
        skipped = Table(title="ablations with no jobs")
        for col in ("ablation", "status", "reason"):
            skipped.add_column(col)
        for s in exp.skipped:
            skipped.add_row(escape(s.name), s.status, escape(s.reason))
        tables.append(skipped)
    return tables


def print_expansion(exp) -> None:
    for t in expansion_tables(exp):
        console.print(t)
    style = "green" if exp.within_budget else "bold red"
    console.print(f"total: {len(exp.jobs)} jobs, max est. peak memory {_gib(exp.max_memory_bytes)}, "
                  f"estimates for {exp.device}")
    console.print(f"[{style}]{escape(exp.verdict())}[/]")


def status_table(url: str, plan_id: int | None) -> tuple[Table, dict[str, int]]:
    from zolab.db.repo import jobs as repo
    from zolab.db.session import session_scope

    with session_scope(url) as s:
        jobs = repo.jobs_of_plan(s, plan_id)
        labels = repo.variant_labels(s, [j.variant_id for j in jobs])
        counts = repo.status_counts(s, plan_id)
    table = Table(title="jobs" + (f" of plan {plan_id}" if plan_id is not None else ""))
    for col in ("id", "variant", "task", "seed", "stage", "status", "attempts", "progress", "loss", "worker / error"):
        table.add_column(col)
    style = {"succeeded": "green", "running": "cyan", "failed": "red", "cancelled": "yellow"}
    for j in jobs:
        note = j.lease_owner or ((j.error or "").strip().splitlines() or [""])[-1][:80]
        table.add_row(str(j.id), escape(labels.get(j.variant_id, "?")), escape(j.task), str(j.seed), j.stage,
                      f"[{style.get(j.status, 'white')}]{j.status}[/]", f"{j.attempts}/{j.max_attempts}",
                      f"{j.progress_step}/{j.progress_total}",
                      "-" if j.last_loss is None else f"{j.last_loss:.4g}", escape(note))
    return table, counts


def leaderboard_tables(url: str, plan_id: int, task: str | None = None) -> list[Table]:
    from zolab.db.repo.leaderboard import leaderboard
    from zolab.db.session import session_scope

    with session_scope(url) as s:
        rows = leaderboard(s, plan_id, task)
    tables: dict[str, Table] = {}
    for r in rows:
        t = tables.get(r.task)
        if t is None:
            t = tables[r.task] = Table(title=f"leaderboard: plan {plan_id}, task {escape(r.task)} (mean ± 95% CI over seeds)")
            for col in ("variant", "seeds", "accuracy", "macro-F1", "peak memory", "GPU hours", "wall s", "Δ acc"):
                t.add_column(col, justify="left" if col == "variant" else "right")

        def ci(mean: float, half: float | None) -> str:
            return f"{mean:.3f}" + ("" if half is None else f" ± {half:.3f}")

        t.add_row(("[bold]" if r.is_baseline else "") + escape(r.label) + ("[/]" if r.is_baseline else ""), str(r.n),
                  ci(r.accuracy_mean, r.accuracy_ci), ci(r.f1_mean, r.f1_ci), _gib(r.peak_memory),
                  ci(r.gpu_hours_mean, r.gpu_hours_ci), f"{r.wall_time_mean:.1f}",
                  "" if r.delta_accuracy is None or r.is_baseline else f"{r.delta_accuracy:+.3f}")
    return list(tables.values())


# -- commands -------------------------------------------------------------------------------------
def run_cmd(
    plan: str = typer.Argument(..., help="Plan file (uploaded first) or stored plan id/name."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the jobs, totals and budget verdict; run nothing."),
    force: bool = typer.Option(False, "--force", help="Run even when the estimate exceeds the plan's budget."),
    executor: str = typer.Option("local", "--executor", help="local | ray"),
    workers: int = typer.Option(2, "--workers", "-w", min=1, help="Worker processes (local) or Ray tasks."),
    estimate_for: str = typer.Option(None, "--estimate-for", help="cpu | gpu: device the estimates assume "
                                     "for jobs with device auto (default: this machine)."),
    lease_seconds: float = typer.Option(None, "--lease-seconds", help="Job lease (default 60 s or ZOLAB_LEASE_SECONDS)."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No live display (logs, CI)."),
    db: str | None = DB_OPTION,
) -> None:
    """Expand a plan into jobs, check the budget, and run them (resumes a plan run before)."""
    if executor not in ("local", "ray"):
        fail(f"--executor must be local or ray, got {executor!r}")
    if estimate_for not in (None, "cpu", "gpu"):
        fail(f"--estimate-for must be cpu or gpu, got {estimate_for!r}")
    url = _db(db)

    def act() -> None:
        from zolab.platform.scheduler import BudgetExceeded, expand, schedule

        plan_id = guard(lambda: resolve_plan(plan, url))
        exp = expand(url, plan_id, device=estimate_for)
        print_expansion(exp)
        if dry_run:
            return
        if not exp.within_budget and not force:
            raise BudgetExceeded(exp.total_gpu_hours, exp.budget_gpu_hours or 0.0)
        report = schedule(url, plan_id, force=True, device=estimate_for)
        console.print(f"enqueued {len(report.created)} new jobs ({report.existing} already known)")
        _execute(url, plan_id, executor, workers, lease_seconds, not no_progress)
        _summary(url, plan_id)

    guard(act)


def _execute(url: str, plan_id: int, executor: str, workers: int, lease_s: float | None, progress: bool) -> None:
    if executor == "ray":
        from zolab.platform.executors.ray import run_ray

        run_ray(url, workers, plan_id=plan_id, lease_s=lease_s, show_progress=progress, console=console)
    else:
        from zolab.platform.executors.local import run_local

        run_local(url, workers, plan_id=plan_id, lease_s=lease_s, show_progress=progress, console=console)


def _summary(url: str, plan_id: int) -> None:
    from zolab.platform.queue import JobQueue

    for t in leaderboard_tables(url, plan_id):
        console.print(t)
    counts = JobQueue(url).counts(plan_id)
    console.print("jobs: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if counts.get("failed"):
        fail(f"{counts['failed']} job(s) failed: see `zolab status {plan_id}`", EXIT_BAD_INPUT)


def worker_cmd(
    follow: bool = typer.Option(False, "--follow", help="Keep waiting for new jobs instead of exiting when drained."),
    plan: int = typer.Option(None, "--plan", help="Only jobs of this plan id."),
    lease_seconds: float = typer.Option(None, "--lease-seconds", help="Job lease (default 60 s)."),
    db: str | None = DB_OPTION,
) -> None:
    """Claim and run jobs from the queue until it is drained (or forever with --follow)."""
    from zolab.platform.worker import Worker

    def act() -> None:
        w = Worker(_db(db), follow=follow, lease_s=lease_seconds, plan_id=plan)
        console.print(f"worker {w.id} on {w.device.name}")
        st = w.run()
        console.print(f"worker done: {st.succeeded} succeeded, {st.failed} failed, {st.requeued} requeued, "
                      f"{st.stopped} stopped")

    guard(act)


def status_cmd(plan: str = typer.Argument(None, help="Plan id or name (default: all jobs)."), db: str | None = DB_OPTION) -> None:
    """Print the job table: status, attempts, progress, loss, worker or error."""
    url = _db(db)

    def act() -> None:
        plan_id = resolve_plan(plan, url) if plan else None
        table, counts = status_table(url, plan_id)
        console.print(table)
        console.print("jobs: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"))

    guard(act)


def leaderboard_cmd(
    plan: str = typer.Argument(..., help="Plan id or name."),
    task: str = typer.Option(None, "--task", help="Only this task."),
    db: str | None = DB_OPTION,
) -> None:
    """Per variant: mean and 95% CI over seeds of accuracy, F1, peak memory and GPU hours."""
    url = _db(db)

    def act() -> None:
        tables = leaderboard_tables(url, resolve_plan(plan, url), task)
        if not tables:
            console.print("no finished results yet")
        for t in tables:
            console.print(t)

    guard(act)


def cancel_cmd(job: int = typer.Argument(..., help="Job id."), db: str | None = DB_OPTION) -> None:
    """Cancel a queued or running job (a running one stops at its next heartbeat)."""
    from zolab.platform.queue import JobQueue

    guard(lambda: JobQueue(_db(db)).cancel(job, by="cli"))
    console.print(f"job {job} cancelled")


def retry_cmd(job: int = typer.Argument(..., help="Job id."), db: str | None = DB_OPTION) -> None:
    """Requeue a failed or cancelled job (resumes from its checkpoint when it has one)."""
    from zolab.platform.queue import JobQueue

    guard(lambda: JobQueue(_db(db)).retry(job, by="cli"))
    console.print(f"job {job} queued again")


def register(app: typer.Typer) -> None:
    app.command("run")(run_cmd)
    app.command("worker")(worker_cmd)
    app.command("status")(status_cmd)
    app.command("leaderboard")(leaderboard_cmd)
    app.command("cancel")(cancel_cmd)
    app.command("retry")(retry_cmd)
