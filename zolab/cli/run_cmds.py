"""``zolab run | worker | status | cancel | retry``: executing plans (``leaderboard``: leaderboard_cmds,
``demo``: demo_cmds).

``run`` uploads a plan file (or takes a stored plan id), expands it into jobs with estimates,
checks the budget, enqueues idempotently and drains the queue with local worker processes or Ray.
Running the same plan again resumes it: finished jobs stay finished, nothing is duplicated.
Exit codes: 0 ok, 1 bad input / refused (over budget) / jobs failed, 2 database or internal error,
130 / 143 stopped by Ctrl-C / SIGTERM (workers stopped and waited for, their jobs queued again).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from zolab.cli.common import DB_OPTION, EXIT_BAD_INPUT, console, fail, guard, resolve_plan
from zolab.cli.common import db_url as _db
from zolab.cli.plan_cmds import LEGACY_ALLOW, MAX_JOBS_OPTION, STRICT_OPTION

SET_COMPONENT_OPTION = typer.Option(
    None, "--set-component", help="NAME=COMPONENT: pick the reading of an unresolved or ambiguous ablation "
                                  "(its name or number; see `zolab plan validate`), repeatable.")


def _gib(n: float | None) -> str:
    return "-" if n is None else f"{n / 2**30:.2f} GiB" if n >= 2**28 else f"{n / 2**20:.1f} MiB"


# -- tables ---------------------------------------------------------------------------------------
def expansion_tables(exp) -> list[Table]:
    n_final = sum(j.stage == "final" for j in exp.jobs)
    title = (f"plan {exp.plan_id} ({escape(exp.plan_name)}): {n_final} jobs "
             f"= {len(exp.variants)} variants x {len(exp.tasks)} tasks x {len(exp.seeds)} seeds")
    if len(exp.jobs) > n_final:
        title += f", plus {len(exp.jobs) - n_final} tuning trials"
    from zolab.platform.estimates import step_work
    from zolab.runners.config import RunConfig

    jobs = Table(title=title)
    labels = exp.hours_by_label()
    hours_col = f"est. {next(iter(labels))}" if len(labels) == 1 else "est. hours (unit: see below)"
    for col in ("variant", "serves", "task", "stage", "jobs", "seeds", "fwd/step", "est. peak memory", "est. s/step",
                hours_col):
        jobs.add_column(col, justify="right" if col.startswith(("est", "fwd")) or col == "jobs" else "left")
    serves = {v.id: ", ".join(v.ablations) for v in exp.variants}
    groups: dict[tuple[int, str, str], list] = {}
    for j in exp.jobs:
        groups.setdefault((j.variant_id, j.task, j.stage), []).append(j)
    for (vid, task, stage), group in groups.items():
        first = group[0]
        fwd = step_work(RunConfig.from_dict(first.config)).forwards
        hours = f"{sum(j.estimate.hours for j in group):.3g}" + ("" if len(labels) == 1 else f" {first.estimate.label}")
        jobs.add_row(escape(first.variant_label), escape(serves.get(vid, "")), escape(task), stage, str(len(group)),
                     ",".join(sorted({str(j.seed) for j in group})), f"{fwd:g}", _gib(first.estimate.memory_bytes),
                     f"{first.estimate.step_seconds:.3g}" if first.config.get("steps") else "- (eval only)", hours)
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
                  f"estimates in {escape(exp.estimate_label)}")
    console.print(f"estimates rest on: {escape(exp.estimate_note)}")
    console.print(f"[{style}]{escape(exp.verdict())}[/]")


#: the colour of each job status in the tables and the live progress line
STATUS_STYLE = {"succeeded": "green", "running": "cyan", "failed": "red", "cancelled": "yellow", "diverged": "magenta"}


def _diverged_reasons(session, jobs) -> dict[int, str]:
    """job id -> why it diverged (the result's ``extra``), for the status table's note column."""
    from zolab.db.repo import jobs as repo

    out = {}
    for j in jobs:
        if j.status == "diverged":
            res = repo.result_of(session, j.id)
            out[j.id] = str(((res.extra or {}) if res else {}).get("diverged_reason") or "diverged")
    return out


def counts_line(counts: dict[str, int]) -> str:
    """``jobs: diverged 1, succeeded 2 (finished 3 of 3)``: diverged jobs count as finished."""
    from zolab.db.models import JobStatus

    if not counts:
        return "jobs: none"
    done = sum(n for k, n in counts.items() if JobStatus(k).is_finished())
    return ("jobs: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
            + f" (finished {done} of {sum(counts.values())})")


def status_table(url: str, plan_id: int | None) -> tuple[Table, dict[str, int]]:
    from zolab.db.repo import jobs as repo
    from zolab.db.session import session_scope

    with session_scope(url) as s:
        jobs = repo.jobs_of_plan(s, plan_id)
        labels = repo.variant_labels(s, [j.variant_id for j in jobs])
        counts = repo.status_counts(s, plan_id)
        diverged = _diverged_reasons(s, jobs)
    table = Table(title="jobs" + (f" of plan {plan_id}" if plan_id is not None else ""))
    for col in ("id", "variant", "task", "seed", "stage", "status", "attempts", "progress", "loss", "worker / error"):
        table.add_column(col)
    for j in jobs:
        note = j.lease_owner or diverged.get(j.id) or ((j.error or "").strip().splitlines() or [""])[-1][:80]
        table.add_row(str(j.id), escape(labels.get(j.variant_id, "?")), escape(j.task), str(j.seed), j.stage,
                      f"[{STATUS_STYLE.get(j.status, 'white')}]{j.status}[/]", f"{j.attempts}/{j.max_attempts}",
                      f"{j.progress_step}/{j.progress_total}",
                      "-" if j.last_loss is None else f"{j.last_loss:.4g}", escape(note))
    return table, counts


# -- commands -------------------------------------------------------------------------------------
def run_cmd(
    plan: str = typer.Argument(..., help="Plan file (uploaded first) or stored plan id/name."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the jobs, totals and budget verdict; run nothing."),
    force: bool = typer.Option(False, "--force", help="Run even when the estimate exceeds the plan's budget, "
                               "or is above 10 GPU-hours with no budget set."),
    executor: str = typer.Option("local", "--executor", help="local | ray"),
    workers: int = typer.Option(2, "--workers", "-w", min=1, help="Worker processes (local) or Ray tasks."),
    estimate_for: str = typer.Option(None, "--estimate-for", help="cpu | gpu: device the estimates assume "
                                     "for jobs with device auto (default: this machine's GPU; without one, "
                                     "GPU for hub models, CPU for tiny test models)."),
    card: str = typer.Option(None, "--card", help="GPU the estimates assume: H100, H200, A100, L40S, L4, V100 "
                             "(default: this machine's, else H100)."),
    lease_seconds: float = typer.Option(None, "--lease-seconds", help="Job lease (default 60 s or ZOLAB_LEASE_SECONDS)."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No live display (logs, CI)."),
    set_component: list[str] | None = SET_COMPONENT_OPTION,
    strict: bool = STRICT_OPTION,
    allow_unresolved: bool = LEGACY_ALLOW,
    max_jobs: int = MAX_JOBS_OPTION,
    db: str | None = DB_OPTION,
) -> None:
    """Expand a plan into jobs, check the budget, and run them (resumes a plan run before)."""
    if executor not in ("local", "ray"):
        fail(f"--executor must be local or ray, got {executor!r}")
    if estimate_for not in (None, "cpu", "gpu"):
        fail(f"--estimate-for must be cpu or gpu, got {estimate_for!r}")
    if card is not None:
        from zolab.platform.estimates import card_named

        try:
            card_named(card)
        except ValueError as exc:
            fail(f"--card: {exc}")
    url = _db(db)

    def act() -> None:
        from zolab.cli.plan_cmds import _overrides
        from zolab.platform.scheduler import expand, schedule

        picks = _overrides(set_component)
        plan_id = guard(lambda: resolve_plan(plan, url, strict=strict, overrides=picks, max_jobs=max_jobs))
        exp = expand(url, plan_id, device=estimate_for, card=card, max_jobs=max_jobs)
        print_expansion(exp)
        if dry_run:
            return
        refusal = exp.refusal()
        if refusal is not None and not force:
            raise refusal
        report = schedule(url, plan_id, force=True, device=estimate_for, card=card, max_jobs=max_jobs)
        console.print(f"enqueued {len(report.created)} new jobs ({report.existing} already known)")
        _execute(url, plan_id, executor, workers, lease_seconds, not no_progress)
        _summary(url, plan_id)

    guard(act)


def _execute(url: str, plan_id: int, executor: str, workers: int, lease_s: float | None, progress: bool) -> None:
    """Drain the plan's queue. Ctrl-C and SIGTERM both stop the workers, which give their jobs back
    (attempt refunded); the command then exits 130 / 143 with one line saying so."""
    from zolab.platform.executors.local import Interrupted

    try:
        if executor == "ray":
            from zolab.platform.executors.ray import run_ray

            run_ray(url, workers, plan_id=plan_id, lease_s=lease_s, show_progress=progress, console=console)
        else:
            from zolab.platform.executors.local import run_local

            run_local(url, workers, plan_id=plan_id, lease_s=lease_s, show_progress=progress, console=console)
    except KeyboardInterrupt as exc:
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        name = signal.Signals(signum).name
        fail(f"stopped by {name}: the workers gave their jobs back to the queue; "
             f"`zolab run {plan_id}` resumes them", 128 + int(signum))


def _summary(url: str, plan_id: int) -> None:
    from zolab.cli.leaderboard_cmds import leaderboard_tables
    from zolab.db.retry import outlast
    from zolab.platform.queue import JobQueue

    for t in outlast(lambda: leaderboard_tables(url, plan_id), "read the leaderboard", who="zolab run"):
        console.print(t)
    counts = outlast(lambda: JobQueue(url).counts(plan_id), "count jobs", who="zolab run")
    console.print(counts_line(counts))
    if counts.get("diverged"):
        console.print(f"[magenta]{counts['diverged']} job(s) diverged[/] (their loss blew up; results kept, "
                      f"marked diverged): see `zolab status {plan_id}`")
    if counts.get("failed"):
        fail(f"{counts['failed']} job(s) failed: see `zolab status {plan_id}`", EXIT_BAD_INPUT)


def worker_cmd(
    follow: bool = typer.Option(False, "--follow", help="Keep waiting for new jobs instead of exiting when drained."),
    plan: str = typer.Option(None, "--plan", help="Only jobs of this plan (id or name)."),
    lease_seconds: float = typer.Option(None, "--lease-seconds", help="Job lease (default 60 s)."),
    db: str | None = DB_OPTION,
) -> None:
    """Claim and run jobs from the queue until it is drained (or forever with --follow)."""
    from zolab.platform.worker import Worker

    def act() -> None:
        from zolab.platform.lookup import plan_id_of

        url = _db(db)
        w = Worker(url, follow=follow, lease_s=lease_seconds, plan_id=plan_id_of(url, plan) if plan else None)
        console.print(f"worker {w.id} on {w.device.name}")
        st = w.run()
        console.print(f"worker done: {st.succeeded} succeeded, {st.failed} failed, {st.requeued} requeued, "
                      f"{st.stopped} stopped, {st.diverged} diverged")

    guard(act)


def status_cmd(plan: str = typer.Argument(None, help="Plan id or name (default: all jobs)."), db: str | None = DB_OPTION) -> None:
    """Print the job table: status, attempts, progress, loss, worker or error."""
    url = _db(db)

    def act() -> None:
        plan_id = resolve_plan(plan, url) if plan else None
        table, counts = status_table(url, plan_id)
        console.print(table)
        console.print(counts_line(counts))

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
    app.command("cancel")(cancel_cmd)
    app.command("retry")(retry_cmd)
