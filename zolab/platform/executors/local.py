"""Local executor: N worker processes on this machine, a live progress display while they drain.

* GPU machines: worker ``i`` is pinned to GPU ``i mod G`` with ``CUDA_VISIBLE_DEVICES``; with more
  workers than GPUs several workers share a GPU and each claims only jobs whose memory estimate fits
  90% of that GPU (free memory now, and capacity minus the estimates already running there), so
  small MeZO jobs pack and a job marked ``no_packing`` (after an OOM) runs alone.
* CPU machines: one job per worker process (``CUDA_VISIBLE_DEVICES`` empty).

Workers are plain ``python -m zolab.platform.worker`` processes: killing this orchestrator (or the
machine) loses nothing; their leases expire and a restart resumes the jobs from their checkpoints.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from zolab.db.models import JobStatus
from zolab.db.repo import jobs as repo
from zolab.db.retry import retry_on_transient
from zolab.db.session import session_scope
from zolab.platform.queue import JobQueue


def gpu_count() -> int:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def worker_env(index: int, gpus: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of worker ``index``: pinned to one GPU, or to none on CPU machines."""
    env = dict(os.environ if base is None else base)
    env["CUDA_VISIBLE_DEVICES"] = str(index % gpus) if gpus else ""
    root = str(Path(__file__).resolve().parents[3])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def worker_command(url: str | None, *, plan_id: int | None = None, follow: bool = False,
                   runner: str | None = None, lease_s: float | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "zolab.platform.worker"]
    if url:
        cmd += ["--db", url]
    if plan_id is not None:
        cmd += ["--plan", str(plan_id)]
    if follow:
        cmd.append("--follow")
    if runner:
        cmd += ["--runner", runner]
    if lease_s:
        cmd += ["--lease-seconds", str(lease_s)]
    return cmd


@dataclass
class Progress:
    """A snapshot of a plan's jobs for the display (and for tests)."""

    counts: dict[str, int]
    eta_s: float | None
    workers: int

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def n(self, status: JobStatus) -> int:
        return self.counts.get(status.value, 0)

    @property
    def finished(self) -> int:
        """Jobs in a final state: succeeded, diverged, failed or cancelled."""
        return sum(self.n(s) for s in JobStatus if s.is_finished())


def snapshot(url: str | None, plan_id: int | None, workers: int) -> Progress:
    """Counts by status and an ETA: remaining estimated step time / workers."""

    def tx():
        with session_scope(url) as s:
            return repo.status_counts(s, plan_id), repo.remaining_work(s, plan_id)

    counts, remaining = retry_on_transient(tx, what="read progress")
    secs, known = 0.0, not remaining  # nothing left: ETA 0
    for _status, step, total, step_s in remaining:
        if step_s is not None:
            known = True
            secs += max(0, (total or 0) - (step or 0)) * step_s
    return Progress(counts, secs / max(1, workers) if known else None, workers)


def _render(p: Progress, started: float):
    from rich.progress_bar import ProgressBar
    from rich.table import Table

    done = p.finished
    table = Table.grid(padding=(0, 2))
    table.add_row(ProgressBar(total=max(1, p.total), completed=done, width=40),
                  f"{done}/{p.total} jobs")
    eta = "?" if p.eta_s is None else f"{p.eta_s:,.0f} s"
    table.add_row(
        f"[green]done {p.n(JobStatus.SUCCEEDED)}[/]  [cyan]running {p.n(JobStatus.RUNNING)}[/]  "
        f"queued {p.n(JobStatus.QUEUED)}  [magenta]diverged {p.n(JobStatus.DIVERGED)}[/]  "
        f"[red]failed {p.n(JobStatus.FAILED)}[/]  "
        f"cancelled {p.n(JobStatus.CANCELLED)}",
        f"workers {p.workers}  elapsed {time.monotonic() - started:,.0f} s  ETA {eta}",
    )
    return table


def watch(
    url: str | None,
    plan_id: int | None,
    alive: Callable[[], int],
    *,
    show_progress: bool = True,
    poll_s: float = 0.5,
    console=None,
    on_tick: Callable[[Progress], None] | None = None,
    on_interrupt: Callable[[], None] | None = None,
) -> None:
    """Show the plan's progress from the database until ``alive()`` (running workers) reaches 0.

    Shared by the executors: whatever runs the workers (processes, Ray tasks), the display reads
    the queue. Ctrl-C / SIGTERM calls ``on_interrupt`` (stop the workers) and re-raises.
    """
    started = time.monotonic()
    live = None
    if show_progress:
        from rich.console import Console
        from rich.live import Live

        live = Live(console=console or Console(), refresh_per_second=4, transient=False)
        live.start()
    try:
        while True:
            running = alive()
            prog = snapshot(url, plan_id, max(1, running))
            if live is not None:
                live.update(_render(prog, started))
            if on_tick is not None:
                on_tick(prog)
            if not running:
                break
            time.sleep(poll_s)
    except BaseException:
        if on_interrupt is not None:
            on_interrupt()
        raise
    finally:
        if live is not None:
            live.stop()


def run_local(
    url: str | None,
    workers: int = 2,
    *,
    plan_id: int | None = None,
    runner: str | None = None,
    lease_s: float | None = None,
    show_progress: bool = True,
    poll_s: float = 0.5,
    console=None,
    on_tick: Callable[[Progress], None] | None = None,
) -> Progress:
    """Start ``workers`` worker processes, show progress until they exit, return the final counts.

    Ctrl-C / SIGTERM stops the workers with SIGTERM: each gives its job back to the queue with its
    checkpoint, so the next ``zolab run`` resumes it.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    JobQueue(url).requeue_expired()  # jobs of workers that died before this run
    gpus = gpu_count()
    procs = [
        subprocess.Popen(worker_command(url, plan_id=plan_id, runner=runner, lease_s=lease_s),
                         env=worker_env(i, gpus))
        for i in range(workers)
    ]

    def stop_workers() -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()

    watch(url, plan_id, lambda: sum(p.poll() is None for p in procs), show_progress=show_progress,
          poll_s=poll_s, console=console, on_tick=on_tick, on_interrupt=stop_workers)
    bad = [p.returncode for p in procs if p.returncode not in (0, None)]
    if bad:
        raise RuntimeError(f"{len(bad)} worker process(es) exited with an error (codes {bad})")
    return snapshot(url, plan_id, workers)


__all__ = ["Progress", "gpu_count", "run_local", "snapshot", "watch", "worker_command", "worker_env"]
