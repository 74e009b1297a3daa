"""The worker loop: claim a job from the DB queue, run it, write its result, repeat.

One worker runs one job at a time (GPU packing = several workers pinned to one GPU, see
``executors.local``). The runner is ``zolab.runners.train:run`` unless ``ZOLAB_RUNNER`` /
``runner=`` names another ``module:function`` with the same signature
``run(config, reporter, resume) -> Result`` (tests use a trivial one to drain thousands of jobs).

Outcomes, all recorded in the DB by :class:`~zolab.platform.queue.JobQueue`:

* success -> result row + remaining curve points + ``succeeded``, one transaction; a result the runner
  marked ``diverged`` (loss blew up: :mod:`zolab.runners.divergence`) ends ``diverged`` the same way;
* ``NonFiniteLossError`` -> ``failed`` with the step and reason, never retried (it would diverge again);
* a plan path outside ``ZOLAB_DATA_ROOTS`` (``PathNotAllowed``) -> ``failed``, never retried (it is refused again);
* CUDA out of memory -> requeued with ``no_packing`` (runs alone next time), the error names the
  estimate and the memory that was free; a second OOM alone fails it;
* any other exception -> ``failed`` with the traceback, requeued while attempts < max_attempts;
* cancelled / lease lost (seen at a heartbeat) -> the run stops, nothing is written;
* SIGTERM / Ctrl-C -> the job goes back to the queue with its checkpoint (attempt refunded);
* SIGKILL -> nothing can run: the lease expires and another worker resumes from the checkpoint.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from zolab.db import retry as db_retry
from zolab.db.errors import DatabaseError, TransientDatabaseError
from zolab.db.models import JobStatus
from zolab.platform.queue import DEFAULT_LEASE_S, Claim, JobQueue, LeaseLost
from zolab.platform.tuning import TrialPruned, on_job_finished, trial_reporter
from zolab.runners.config import RunConfig
from zolab.runners.confine import PathNotAllowed
from zolab.runners.reporter import Checkpoint, JobCancelled, Reporter, Result

log = logging.getLogger(__name__)

DEFAULT_RUNNER = "zolab.runners.train:run"
RUNNER_ENV = "ZOLAB_RUNNER"
LEASE_ENV = "ZOLAB_LEASE_SECONDS"
HEARTBEAT_ENV = "ZOLAB_HEARTBEAT_SECONDS"
RunFn = Callable[[RunConfig, Reporter, "Checkpoint | None"], Result]
#: a database outage longer than the queue's own retries: the worker waits (pauses doubling up to
#: DB_WAIT_MAX_S, one error line each) for up to DB_PATIENCE_S, then gives up with a clear error
DB_PATIENCE_S = db_retry.OUTAGE_PATIENCE_S
DB_WAIT_MAX_S = db_retry.OUTAGE_MAX_WAIT_S


def resolve_runner(spec: str | RunFn | None = None) -> RunFn:
    """A run function from ``module:function`` (default: env ``ZOLAB_RUNNER`` or the real runner)."""
    if callable(spec):
        return spec
    spec = spec or os.environ.get(RUNNER_ENV) or DEFAULT_RUNNER
    module, _, attr = spec.partition(":")
    if not attr:
        raise ValueError(f"runner {spec!r} must look like 'module:function'")
    return getattr(importlib.import_module(module), attr)


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


def _nonfinite_error() -> type[BaseException]:
    try:
        from zolab.runners.errors import NonFiniteLossError
    except ImportError:  # runner not built in this checkout: nothing raises it
        class NonFiniteLossError(Exception):  # type: ignore[no-redef]
            pass
    return NonFiniteLossError


def _is_cuda_oom(exc: BaseException) -> bool:
    torch = sys.modules.get("torch")
    oom = getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None) if torch else None
    return oom is not None and isinstance(exc, oom)


def _gib(n: int | None) -> str:
    return "unknown" if n is None else f"{n / 2**30:.2f} GiB"


@dataclass
class DeviceInfo:
    """Where this worker runs: ``cpu`` or ``cuda:N`` (N = physical index, for packing across workers)."""

    name: str = "cpu"
    total_memory: int | None = None

    @property
    def is_gpu(self) -> bool:
        return self.name.startswith("cuda")

    def free_memory(self) -> int | None:
        if not self.is_gpu:
            return None
        import torch

        free, _total = torch.cuda.mem_get_info(0)
        return int(free)


def detect_device() -> DeviceInfo:
    """The GPU this process sees first (the executor pins one with CUDA_VISIBLE_DEVICES), else CPU.

    ``CUDA_VISIBLE_DEVICES=""`` (CPU workers of the local executor) answers without importing torch,
    which keeps worker start-up short when jobs do not need it."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return DeviceInfo()
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return DeviceInfo()
    if not torch.cuda.is_available():
        return DeviceInfo()
    physical = (os.environ.get("CUDA_VISIBLE_DEVICES") or "0").split(",")[0].strip() or "0"
    _free, total = torch.cuda.mem_get_info(0)
    return DeviceInfo(name=f"cuda:{physical}", total_memory=int(total))


class DbReporter:
    """The runner's Reporter, backed by the queue through a background writer: the training loop
    only records (progress, loss, checkpoints, curve points) in memory; one writer thread per job
    sends them to the database, so a slow, locked or unreachable database never stalls a step.

    Back-pressure policy (what happens while writes wait):

    * progress / loss / heartbeats coalesce: only the latest is written;
    * checkpoints coalesce too (the newest holds the whole trajectory) and go out at once; a
      checkpoint is always written together with every curve point reported before it, so a job
      resumed from it never misses a point;
    * metric points are never dropped: they wait in memory, up to ``max_pending_points``; only past
      that bound (hours of outage) does :meth:`metric` block until the writer makes room;
    * the final flush is never dropped: :meth:`take_points` stops the writer and hands every point
      not yet written to the caller, which writes them with the job's outcome (``finish``/``stop``).

    Cancellation and lease loss still reach the runner: the writer (or the keep-alive thread) sets
    :attr:`lost` and the next reporter call raises :class:`JobCancelled`.
    """

    def __init__(self, queue: JobQueue, job_id: int, worker_id: str, *, heartbeat_s: float = 3.0,
                 max_buffer: int = 1000, max_pending_points: int = 200_000,
                 clock: Callable[[], float] = time.monotonic, start: bool = True) -> None:
        self.queue, self.job_id, self.worker_id = queue, job_id, worker_id
        self.heartbeat_s, self.max_buffer, self.clock = heartbeat_s, max_buffer, clock
        self.max_pending_points = max(max_buffer, max_pending_points)
        self.step: int | None = None
        self.total: int | None = None
        self.loss: float | None = None
        self.points: list[tuple[int, str, float]] = []    # reported, not yet written
        self._ckpt: dict[str, Any] | None = None
        self._dirty = False                              # progress not yet written
        self._busy = False                               # a write is in flight
        self._last = clock()
        self._cond = threading.Condition()
        self._closed = False
        self.flushes = 0
        self.lost: str | None = None  # set by the writer / keep-alive thread when the lease is gone
        # the writer's rounds: few retries each (so it notices close() soon), any number of rounds
        self.flush_attempts = 3
        self._writer = threading.Thread(target=self._write_loop, name=f"reporter-{job_id}", daemon=True)
        if start:
            self._writer.start()

    # -- the runner's side: record and return --------------------------------------------------------
    def progress(self, step: int, total: int, loss: float | None = None) -> None:
        self._check()
        with self._cond:
            self.step, self.total = step, total
            if loss is not None:
                self.loss = float(loss)
            self._dirty = True
            if self.clock() - self._last >= self.heartbeat_s:
                self._cond.notify()

    def metric(self, step: int, name: str, value: float) -> None:
        self._check()
        with self._cond:
            while len(self.points) >= self.max_pending_points and not self._closed and self.lost is None:
                self._cond.wait(0.5)  # back-pressure: points are kept, so at the bound the loop waits
            self.points.append((int(step), name, float(value)))
            if len(self.points) >= self.max_buffer:
                self._cond.notify()
        self._check()

    def heartbeat(self) -> None:
        self._check()
        with self._cond:
            self._cond.notify()

    def checkpoint(self, ckpt: Checkpoint) -> None:
        self._check()
        with self._cond:
            self._ckpt = ckpt.to_dict()
            self._cond.notify()

    def _check(self) -> None:
        if self.lost is not None:
            raise JobCancelled(self.lost)

    # -- the worker's side ---------------------------------------------------------------------------
    def take_points(self) -> list[tuple[int, str, float]]:
        """Stop the writer (after its write in flight) and return every point not yet written: the
        caller writes them with the job's outcome, in the same transaction."""
        self.close()
        with self._cond:
            out, self.points = self.points, []
        return out

    def close(self, *, flush: bool = False) -> None:
        """Stop the writer thread. With ``flush``, write what is still pending once more here (a
        worker giving its job back keeps the newest checkpoint); a failure is logged, not raised."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._writer.is_alive() and self._writer is not threading.current_thread():
            self._writer.join()
        if flush and self.lost is None:
            batch = self._take()
            if batch is not None:
                try:
                    self._send(batch, attempts=None)
                except (LeaseLost, DatabaseError) as exc:
                    log.warning("last heartbeat of job %s not written: %s", self.job_id, exc)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """True once nothing is pending nor in flight (tests; a worker never needs to wait)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._cond.notify()
            while self._busy or self._due(force=True):
                left = deadline - time.monotonic()
                if left <= 0 or self.lost is not None or not self._writer.is_alive():
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    # -- the writer thread ---------------------------------------------------------------------------
    def _due(self, force: bool = False) -> bool:
        """Something to write now (caller holds the lock)."""
        pending = self._dirty or bool(self.points) or self._ckpt is not None
        if not pending:
            return False
        return (force or self._ckpt is not None or len(self.points) >= self.max_buffer
                or self.clock() - self._last >= self.heartbeat_s)

    def _take(self) -> dict[str, Any] | None:
        """The pending state as one write (progress coalesced, checkpoint with the points before it)."""
        with self._cond:
            if not (self._dirty or self.points or self._ckpt is not None):
                return None
            batch = {"step": self.step, "total": self.total, "loss": self.loss, "checkpoint": self._ckpt,
                     "points": self.points}
            self.points, self._ckpt, self._dirty = [], None, False
            return batch

    def _give_back(self, batch: dict[str, Any]) -> None:
        """A write that failed: its points go back in front, its checkpoint unless a newer one came."""
        with self._cond:
            self.points = batch["points"] + self.points
            if self._ckpt is None:
                self._ckpt = batch["checkpoint"]
            self._dirty = True

    def _send(self, batch: dict[str, Any], attempts: int | None) -> None:
        self.queue.heartbeat(self.job_id, self.worker_id, step=batch["step"], total=batch["total"],
                             loss=batch["loss"], checkpoint=batch["checkpoint"], points=batch["points"],
                             attempts=attempts)
        with self._cond:
            self._last = self.clock()
            self.flushes += 1

    def _write_loop(self) -> None:
        failures = 0
        while True:
            with self._cond:
                while not self._closed and not self._due():
                    left = self.heartbeat_s - (self.clock() - self._last)
                    self._cond.wait(min(max(left, 0.01), max(self.heartbeat_s, 0.01)))
                if self._closed:
                    return
                self._busy = True
            batch = self._take()
            try:
                if batch is not None:
                    self._send(batch, self.flush_attempts)
                failures = 0
            except LeaseLost as exc:
                self.lost = str(exc)
                return
            except DatabaseError as exc:  # locked / unreachable: keep everything, try again soon
                failures += 1
                self._give_back(batch)
                log.warning("heartbeat of job %s failed, will retry: %s", self.job_id, exc)
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
                    self._cond.wait(db_retry.backoff_delay(failures, 0.5, min(5.0, max(0.5, self.heartbeat_s))))
                continue
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()


class KeepAlive(threading.Thread):
    """Extends the lease every ``interval`` seconds while a job runs, whatever the runner is doing
    (loading a model, a long evaluation), so only a dead process loses its lease. When the lease is
    gone (cancelled, taken over) it tells the reporter, which stops the run at its next call."""

    def __init__(self, queue: JobQueue, job_id: int, worker_id: str, reporter: DbReporter, interval: float) -> None:
        super().__init__(name=f"keepalive-{job_id}", daemon=True)
        self.queue, self.job_id, self.worker_id = queue, job_id, worker_id
        self.reporter, self.interval = reporter, interval
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            try:
                self.queue.heartbeat(self.job_id, self.worker_id)
            except LeaseLost as exc:
                self.reporter.lost = str(exc)
                return
            except DatabaseError as exc:  # keep trying: the lease is long compared to the interval
                log.warning("keep-alive of job %s failed: %s", self.job_id, exc)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)


@dataclass
class WorkerStats:
    succeeded: int = 0
    diverged: int = 0
    failed: int = 0
    requeued: int = 0
    stopped: int = 0
    pruned: int = 0
    job_ids: list[int] = field(default_factory=list)


class _Stop(BaseException):
    """SIGTERM turned into an exception so the running job is released cleanly."""


class Worker:
    """Claims and runs jobs until the queue is drained (or forever with ``follow``)."""

    def __init__(
        self,
        url: str | None = None,
        *,
        runner: str | RunFn | None = None,
        follow: bool = False,
        lease_s: float | None = None,
        heartbeat_s: float | None = None,
        poll_s: float = 1.0,
        max_jobs: int | None = None,
        plan_id: int | None = None,
        device: DeviceInfo | None = None,
        memory_fraction: float = 0.9,
    ) -> None:
        self.url = url
        self.run_fn = resolve_runner(runner)
        self.follow = follow
        self.lease_s = lease_s or _env_float(LEASE_ENV, DEFAULT_LEASE_S)
        self.heartbeat_s = heartbeat_s or _env_float(HEARTBEAT_ENV, max(0.2, min(5.0, self.lease_s / 4)))
        self.poll_s, self.max_jobs, self.plan_id = poll_s, max_jobs, plan_id
        self.device = device or detect_device()
        self.memory_fraction = memory_fraction
        self.host = socket.gethostname()
        self.id = f"{self.host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.queue = JobQueue(url, lease_s=self.lease_s)
        self.stats = WorkerStats()

    # -- loop --------------------------------------------------------------------------------------
    def run(self) -> WorkerStats:
        self._outlast(lambda: self.queue.register_worker(self.id, self.host, os.getpid(), self.device.name),
                      "register the worker")
        try:
            while self.max_jobs is None or len(self.stats.job_ids) < self.max_jobs:
                claim = self._outlast(self._claim, "claim a job")  # expired leases are reclaimed first
                if claim is None:
                    if not self.follow and self._outlast(lambda: self.queue.drained(self.plan_id), "count jobs"):
                        break
                    self._outlast(lambda: self.queue.touch_worker(self.id), "update the worker")
                    time.sleep(self.poll_s)
                    continue
                self.run_claim(claim)
                if claim.stage == "tune":
                    self._advance_tuning(claim)
        finally:
            try:
                self.queue.touch_worker(self.id, stopped=True)
            except DatabaseError as exc:  # pragma: no cover - DB gone while stopping
                log.warning("could not mark worker %s stopped: %s", self.id, exc)
        return self.stats

    def _outlast(self, fn: Callable[[], Any], what: str) -> Any:
        """``fn()``, waited out through a database outage (:func:`zolab.db.retry.outlast`): an outage
        must not kill the worker nor throw away a finished job's result."""
        return db_retry.outlast(fn, what, who=f"worker {self.id}", patience_s=DB_PATIENCE_S,
                                max_wait_s=DB_WAIT_MAX_S)

    def _claim(self) -> Claim | None:
        if not self.device.is_gpu:
            return self.queue.claim(self.id, plan_id=self.plan_id)
        free = self.device.free_memory()
        cap = int(self.device.total_memory * self.memory_fraction) if self.device.total_memory else None
        return self.queue.claim(
            self.id, int(free * self.memory_fraction) if free is not None else None,
            host=self.host, device=self.device.name, device_capacity=cap, plan_id=self.plan_id,
        )

    # -- one job -----------------------------------------------------------------------------------
    def run_claim(self, claim: Claim) -> str:
        """Run one claimed job to an outcome: succeeded | diverged | failed | requeued | stopped | pruned."""
        self.stats.job_ids.append(claim.job_id)
        reporter = DbReporter(self.queue, claim.job_id, self.id, heartbeat_s=self.heartbeat_s)
        free_at_start = self.device.free_memory()
        keepalive = KeepAlive(self.queue, claim.job_id, self.id, reporter, self.heartbeat_s)
        keepalive.start()
        try:
            return self._run_claim(claim, reporter, free_at_start)
        finally:
            keepalive.stop()
            reporter.close()

    def _run_claim(self, claim: Claim, reporter: DbReporter, free_at_start: int | None) -> str:
        try:
            config = RunConfig.from_dict(claim.config)
            resume = Checkpoint.from_dict(claim.checkpoint) if claim.checkpoint else None
            run_reporter = trial_reporter(self.url, claim, reporter) if claim.stage == "tune" else reporter
            result = self.run_fn(config, run_reporter, resume)
        except TrialPruned as exc:  # the study's pruner stopped this trial: cancelled, never retried
            log.info("job %s: %s", claim.job_id, exc)
            try:
                self.queue.stop(claim.job_id, self.id, str(exc), reporter.take_points())
            except LeaseLost as lost:
                log.warning("job %s pruned after its lease was lost: %s", claim.job_id, lost)
            self.stats.pruned += 1
            return "pruned"
        except JobCancelled as exc:
            log.info("job %s stopped: %s", claim.job_id, exc)
            self.queue.release(claim.job_id, self.id)  # no-op when cancelled / taken over
            self.stats.stopped += 1
            return "stopped"
        except (_Stop, KeyboardInterrupt):
            reporter.close(flush=True)  # the newest checkpoint first: the next worker resumes from it
            self.queue.release(claim.job_id, self.id)
            self.stats.stopped += 1
            raise
        except Exception as exc:  # noqa: BLE001 - every other outcome is recorded in the DB
            return self._record_failure(claim, exc, free_at_start)
        points = reporter.take_points()
        try:
            status = self._outlast(lambda: self.queue.finish(claim.job_id, self.id, result.to_dict(), points),
                                   f"finish of job {claim.job_id}")
        except LeaseLost as exc:  # lease expired while finishing: the other worker's result counts
            log.warning("result of job %s dropped: %s", claim.job_id, exc)
            self.stats.stopped += 1
            return "stopped"
        if status is JobStatus.DIVERGED:
            log.warning("job %s diverged: %s", claim.job_id, result.extra.get("diverged_reason"))
            self.stats.diverged += 1
            return "diverged"
        self.stats.succeeded += 1
        return "succeeded"

    def _advance_tuning(self, claim: Claim) -> None:
        """Tell the study how the trial ended and enqueue the next trial or the final jobs. A failure
        here is logged, not fatal: the next tune job or ``zolab run`` again repairs it."""
        try:
            on_job_finished(self.url, claim.job_id)
        except Exception as exc:  # noqa: BLE001 - the worker must keep draining the queue
            log.warning("tuning could not advance after job %s: %s", claim.job_id, exc)

    def _record_failure(self, claim: Claim, exc: Exception, free_at_start: int | None) -> str:
        try:
            if isinstance(exc, _nonfinite_error()):
                step = getattr(exc, "step", None)
                reason = f"non-finite loss at step {step}: {exc}" if step is not None else f"non-finite loss: {exc}"
                self.queue.fail(claim.job_id, self.id, reason, retry=False)
                self.stats.failed += 1
                return "failed"
            if isinstance(exc, PathNotAllowed):  # deterministic: a retry is refused the same way
                self.queue.fail(claim.job_id, self.id, f"refused: {exc}", retry=False)
                self.stats.failed += 1
                return "failed"
            if _is_cuda_oom(exc):
                reason = (
                    f"CUDA out of memory on {self.device.name}: estimated peak {_gib(claim.est_memory_bytes)}, "
                    f"{_gib(free_at_start)} free when the job started"
                )
                if claim.no_packing:  # it had the GPU to itself: it does not fit
                    self.queue.fail(claim.job_id, self.id, reason + "; it ran alone, so it does not fit", retry=False)
                    self.stats.failed += 1
                    return "failed"
                status = self.queue.requeue(claim.job_id, self.id, reason + "; requeued to run alone (no packing)",
                                            no_packing=True)
                self.stats.requeued += status.value == "queued"
                self.stats.failed += status.value == "failed"
                return status.value if status.value == "failed" else "requeued"
            reason = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-8000:]
            status = self.queue.fail(claim.job_id, self.id, reason, retry=True)
        except LeaseLost as lost:
            log.warning("job %s failed after its lease was lost: %s", claim.job_id, lost)
            self.stats.stopped += 1
            return "stopped"
        if status.value == "queued":
            self.stats.requeued += 1
            return "requeued"
        self.stats.failed += 1
        return "failed"


def _on_sigterm(_signum, _frame) -> None:
    # one stop is enough: Ctrl-C reaches the whole process group and ``zolab run`` then sends SIGTERM
    # too; a second signal must not cut short the hand-back of the job (release, refund) it started
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise _Stop()


def main(argv: list[str] | None = None) -> int:
    """``python -m zolab.platform.worker``: the process the executors start (``zolab worker`` too)."""
    parser = argparse.ArgumentParser(prog="zolab-worker", description="claim and run jobs from the zolab queue")
    parser.add_argument("--db", default=None, help="database URL or SQLite path (default ZOLAB_DB)")
    parser.add_argument("--follow", action="store_true", help="keep waiting for new jobs")
    parser.add_argument("--plan", type=int, default=None, help="only jobs of this plan id")
    parser.add_argument("--runner", default=None, help="module:function (default ZOLAB_RUNNER or the MeZO runner)")
    parser.add_argument("--lease-seconds", type=float, default=None)
    parser.add_argument("--poll-seconds", type=float, default=1.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("ZOLAB_LOG", "WARNING"), format="%(asctime)s %(name)s %(message)s")
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, _on_sigterm)
    worker = Worker(args.db, runner=args.runner, follow=args.follow, lease_s=args.lease_seconds,
                    poll_s=args.poll_seconds, plan_id=args.plan)
    try:
        worker.run()
    except (_Stop, KeyboardInterrupt):
        return 143
    except DatabaseError as exc:  # one clear line, no traceback (exit 2 like the CLI)
        print(f"zolab worker: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
