"""Local executor: N worker processes on this machine, a live progress display while they drain.

* GPU machines: worker ``i`` is pinned to GPU ``i mod G`` with ``CUDA_VISIBLE_DEVICES``; with more
  workers than GPUs several workers share a GPU and each claims only jobs whose memory estimate fits
  90% of that GPU (free memory now, and capacity minus the estimates already running there), so
  small MeZO jobs pack and a job marked ``no_packing`` (after an OOM) runs alone.
* CPU machines: one job per worker process (``CUDA_VISIBLE_DEVICES`` empty).

The orchestrator survives what its workers survive:

* a database outage: the progress display waits it out (it says so) and the workers keep running;
  a failed read never stops a worker. Only the final read gives up, after the workers' own
  patience (:data:`zolab.db.retry.OUTAGE_PATIENCE_S`);
* SIGTERM is handled like Ctrl-C: every worker gets SIGTERM, gives its job back to the queue with
  its checkpoint (the attempt refunded), and is waited for (killed only after ``STOP_WAIT_S``);
* a worker that dies (killed, crashed) while jobs remain is replaced, at most
  :data:`MAX_RESTARTS_PER_WORKER` times per worker slot; its job goes back to the queue at once
  (a job event names the dead worker, its exit and the restart) instead of after its lease.

Workers are plain ``python -m zolab.platform.worker`` processes: killing this orchestrator with
SIGKILL (or losing the machine) loses nothing; their leases expire and a restart resumes the jobs
from their checkpoints.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from zolab.db.errors import DatabaseError
from zolab.db.models import JobStatus
from zolab.db.repo import jobs as repo
from zolab.db.retry import outlast, retry_on_transient
from zolab.db.session import session_scope
from zolab.platform.queue import JobQueue

log = logging.getLogger(__name__)

#: a worker slot whose process dies is restarted at most this many times in one run
MAX_RESTARTS_PER_WORKER = 3
#: seconds a stopping worker gets to give its job back before it is killed
STOP_WAIT_S = 60.0
#: a worker exiting with this code gave up on the database (outage past its patience): not replaced
EXIT_DATABASE = 2
#: retries of one live progress read: the display must stay responsive (the loop waits out outages)
DISPLAY_READ_ATTEMPTS = 3
ORCHESTRATOR = "zolab run"


class Interrupted(KeyboardInterrupt):
    """SIGTERM turned into the same exception path as Ctrl-C (``signum`` says which)."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Interrupted` in the main thread, as Ctrl-C raises
    KeyboardInterrupt, so both stop the workers cleanly. A no-op outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, _frame):
        raise Interrupted(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _signals_ignored() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


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
    """A snapshot of a plan's jobs for the display (and for tests).

    ``workers`` is the number of workers this run uses (asked for), ``running`` how many are alive
    now; ``db_note`` is set while the database cannot be read (the counts are then the last known)."""

    counts: dict[str, int]
    eta_s: float | None
    workers: int
    running: int | None = None
    restarts: int = 0
    db_note: str | None = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def n(self, status: JobStatus) -> int:
        return self.counts.get(status.value, 0)

    @property
    def finished(self) -> int:
        """Jobs in a final state: succeeded, diverged, failed or cancelled."""
        return sum(self.n(s) for s in JobStatus if s.is_finished())


def snapshot(url: str | None, plan_id: int | None, workers: int, *, running: int | None = None,
             attempts: int | None = None) -> Progress:
    """Counts by status and an ETA: remaining estimated step time / running workers."""

    def tx():
        with session_scope(url) as s:
            return repo.status_counts(s, plan_id), repo.remaining_work(s, plan_id)

    counts, remaining = retry_on_transient(tx, what="read progress", **({"attempts": attempts} if attempts else {}))
    secs, known = 0.0, not remaining  # nothing left: ETA 0
    for _status, step, total, step_s in remaining:
        if step_s is not None:
            known = True
            secs += max(0, (total or 0) - (step or 0)) * step_s
    share = max(1, workers if running is None else running)
    return Progress(counts, secs / share if known else None, workers, running)


def _render(p: Progress, started: float):
    from rich.progress_bar import ProgressBar
    from rich.table import Table

    done = p.finished
    table = Table.grid(padding=(0, 2))
    table.add_row(ProgressBar(total=max(1, p.total), completed=done, width=40),
                  f"{done}/{p.total} jobs")
    eta = "?" if p.eta_s is None else f"{p.eta_s:,.0f} s"
    workers = f"workers {p.workers}"
    if p.running is not None and p.running not in (0, p.workers):
        workers += f" ({p.running} running)"
    if p.restarts:
        workers += f", {p.restarts} restarted"
    table.add_row(
        f"[green]done {p.n(JobStatus.SUCCEEDED)}[/]  [cyan]running {p.n(JobStatus.RUNNING)}[/]  "
        f"queued {p.n(JobStatus.QUEUED)}  [magenta]diverged {p.n(JobStatus.DIVERGED)}[/]  "
        f"[red]failed {p.n(JobStatus.FAILED)}[/]  "
        f"cancelled {p.n(JobStatus.CANCELLED)}",
        f"{workers}  elapsed {time.monotonic() - started:,.0f} s  ETA {eta}",
    )
    if p.db_note:
        table.add_row(f"[yellow]{p.db_note}[/]", "")
    return table


def watch(
    url: str | None,
    plan_id: int | None,
    alive: Callable[[], int],
    *,
    workers: int | None = None,
    restarts: Callable[[], int] | None = None,
    show_progress: bool = True,
    poll_s: float = 0.5,
    console=None,
    on_tick: Callable[[Progress], None] | None = None,
    on_interrupt: Callable[[], None] | None = None,
) -> Progress | None:
    """Show the plan's progress from the database until ``alive()`` (running workers) reaches 0;
    returns the last progress read (None if the database could never be read).

    Shared by the executors: whatever runs the workers (processes, Ray tasks), the display reads
    the queue. A read that fails (database outage) is shown and waited out: the workers carry on,
    nothing is stopped. Only Ctrl-C / SIGTERM (KeyboardInterrupt) calls ``on_interrupt`` (stop the
    workers) and re-raises.
    """
    started = time.monotonic()
    live = None
    if show_progress:
        from rich.console import Console
        from rich.live import Live

        live = Live(console=console or Console(), refresh_per_second=4, transient=False)
        live.start()
    last: Progress | None = None
    down_since: float | None = None
    try:
        while True:
            running = alive()
            asked = workers if workers is not None else max(running, last.workers if last else 1)
            try:
                prog = snapshot(url, plan_id, asked, running=running, attempts=DISPLAY_READ_ATTEMPTS)
                if down_since is not None:
                    log.warning("database reachable again after %.0f s", time.monotonic() - down_since)
                down_since = None
            except DatabaseError as exc:  # an outage: the workers wait it out, so does the display
                if down_since is None:
                    down_since = time.monotonic()
                    log.error("progress read failed: %s; %s keeps waiting for its workers", exc, ORCHESTRATOR)
                prog = Progress(dict(last.counts) if last else {}, None, asked, running,
                                db_note=f"database unreachable for {time.monotonic() - down_since:,.0f} s: "
                                        "waiting (workers keep their jobs)")
            prog.restarts = restarts() if restarts is not None else 0
            last = prog if prog.db_note is None else (last or prog)
            if live is not None:
                live.update(_render(prog, started))
            if on_tick is not None:
                on_tick(prog)
            if not running:
                break
            time.sleep(poll_s)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM under sigterm_as_interrupt()
        if on_interrupt is not None:
            on_interrupt()
        raise
    finally:
        if live is not None:
            live.stop()
    return last


@dataclass
class _Slot:
    index: int
    proc: subprocess.Popen
    restarts: int = 0
    exits: list[int] = field(default_factory=list)   # return codes of the processes that died
    done: bool = False                                # died and was not replaced


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class WorkerPool:
    """The worker processes of one ``zolab run``: started, watched, replaced when they die, stopped.

    A slot whose process exits 0 is done (the queue was drained). When a process dies any other way
    its jobs go back to the queue at once, each with an event naming the death and what was decided;
    it is restarted while jobs remain, at most ``max_restarts`` times per slot. Exit code 2 (the
    worker gave up on the database after its patience) is not restarted: the outage outlasted it."""

    def __init__(self, url: str | None, workers: int, *, plan_id: int | None = None, runner: str | None = None,
                 lease_s: float | None = None, max_restarts: int = MAX_RESTARTS_PER_WORKER,
                 console=None) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.url, self.workers, self.plan_id = url, workers, plan_id
        self.runner, self.lease_s, self.max_restarts = runner, lease_s, max_restarts
        self.console = console
        self.gpus = gpu_count()
        self.host = socket.gethostname()
        self.slots: list[_Slot] = []
        self.restarted = 0
        self.queue = JobQueue(url)

    def _spawn(self, index: int) -> subprocess.Popen:
        return subprocess.Popen(worker_command(self.url, plan_id=self.plan_id, runner=self.runner,
                                               lease_s=self.lease_s), env=worker_env(index, self.gpus))

    def start(self) -> None:
        self.slots = [_Slot(i, self._spawn(i)) for i in range(self.workers)]

    def _jobs_remain(self) -> bool:
        try:
            return not self.queue.drained(self.plan_id)
        except DatabaseError:  # cannot tell: a replacement that finds nothing simply exits
            return True

    def _say(self, text: str) -> None:
        log.warning("%s", text)
        if self.console is not None:
            from rich.markup import escape

            self.console.print(f"[yellow]{escape(text)}[/]")

    def _reclaim(self, pid: int, why: str) -> list[int]:
        """The dead worker's jobs back to the queue now (one event each), not after its lease."""
        try:
            return self.queue.reclaim_process(self.host, pid, why)
        except DatabaseError as exc:  # its lease will expire instead
            log.warning("could not give back the jobs of dead worker %s now: %s", pid, exc)
            return []

    def _on_death(self, slot: _Slot, code: int) -> None:
        """A worker died: give its jobs back, then replace it while jobs remain and the bound allows."""
        slot.exits.append(code)
        pid, how = slot.proc.pid, _describe_exit(code)
        restart = slot.restarts + 1
        if code == EXIT_DATABASE:
            decision = "not restarted: it gave up on the database"
        elif restart > self.max_restarts:
            decision = f"not restarted: {self.max_restarts} restarts used"
        elif not self._jobs_remain():
            decision = "not restarted: no jobs left"
        else:
            decision = f"worker restarted ({restart} of at most {self.max_restarts})"
        moved = self._reclaim(pid, f"worker process {pid} of {ORCHESTRATOR} died ({how}); requeued, {decision}")
        held = f" holding job {', '.join(map(str, moved))} (requeued)" if moved else ""
        if decision.startswith("worker restarted"):
            slot.proc = self._spawn(slot.index)
            slot.restarts = restart
            self.restarted += 1
            self._say(f"worker {slot.index} (pid {pid}) died ({how}){held}; restarted as pid {slot.proc.pid} "
                      f"({restart} of at most {self.max_restarts})")
        else:
            slot.done = True
            self._say(f"worker {slot.index} (pid {pid}) died ({how}){held}; {decision}")

    def poll(self) -> int:
        """Handle workers that died since the last call (see :meth:`_on_death`); how many are alive."""
        for slot in self.slots:
            code = slot.proc.poll()
            if code is None or code == 0 or slot.done:
                continue
            self._on_death(slot, code)
        return sum(s.proc.poll() is None for s in self.slots)

    def stop(self, wait_s: float = STOP_WAIT_S) -> None:
        """SIGTERM every live worker (each gives its job back, attempt refunded) and wait for them.
        A second Ctrl-C / SIGTERM meanwhile is ignored: it would cut the workers' hand-back short."""
        with _signals_ignored():
            self._stop(wait_s)

    def _stop(self, wait_s: float) -> None:
        live = [s.proc for s in self.slots if s.proc.poll() is None]
        if live:
            self._say(f"stopping {len(live)} worker(s): each gives its job back to the queue "
                      f"(waiting up to {wait_s:.0f} s)")
        for p in live:
            try:
                p.send_signal(signal.SIGTERM)
            except ProcessLookupError:  # pragma: no cover - exited in between
                pass
        deadline = time.monotonic() + wait_s
        for p in live:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker %s did not stop within %.0f s: killed (its lease will expire)", p.pid, wait_s)
                p.kill()
                p.wait()

    def failed_exits(self) -> list[int]:
        """Return codes of workers that ended badly and were not replaced."""
        return [s.proc.returncode for s in self.slots if s.proc.returncode not in (0, None)]



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
    max_restarts: int = MAX_RESTARTS_PER_WORKER,
) -> Progress:
    """Start ``workers`` worker processes, show progress until they exit, return the final counts.

    Ctrl-C / SIGTERM stops the workers with SIGTERM and waits for them: each gives its job back to
    the queue with its checkpoint (attempt refunded), so the next ``zolab run`` resumes it; then
    :class:`Interrupted` (a KeyboardInterrupt) propagates.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    # jobs of workers that died before this run
    outlast(lambda: JobQueue(url).requeue_expired(), "requeue expired leases", who=ORCHESTRATOR)
    pool = WorkerPool(url, workers, plan_id=plan_id, runner=runner, lease_s=lease_s, max_restarts=max_restarts,
                      console=console if show_progress else None)
    with sigterm_as_interrupt():
        pool.start()
        try:
            watch(url, plan_id, pool.poll, workers=workers, restarts=lambda: pool.restarted,
                  show_progress=show_progress, poll_s=poll_s, console=console, on_tick=on_tick,
                  on_interrupt=pool.stop)
        except KeyboardInterrupt:
            raise
        except BaseException:  # a bug in the display: the workers carry on alone, not signalled
            log.error("%s stopped watching; its %d worker(s) keep draining the queue", ORCHESTRATOR, workers)
            raise
    bad = pool.failed_exits()
    if bad:
        raise RuntimeError(f"{len(bad)} worker process(es) exited with an error (codes {bad}) after "
                           f"{pool.restarted} restart(s)")
    final = outlast(lambda: snapshot(url, plan_id, workers, running=0), "read the final progress", who=ORCHESTRATOR)
    final.restarts = pool.restarted
    return final


__all__ = [
    "MAX_RESTARTS_PER_WORKER",
    "Interrupted",
    "Progress",
    "WorkerPool",
    "gpu_count",
    "run_local",
    "sigterm_as_interrupt",
    "snapshot",
    "watch",
    "worker_command",
    "worker_env",
]
