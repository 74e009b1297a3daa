"""The job queue on the database: legal state transitions, atomic claims, leases, results.

States and transitions (anything else raises :class:`IllegalTransition`)::

    queued    -> running (claim) | cancelled
    running   -> succeeded (finish) | diverged (finish of a result marked diverged) | failed (fail) | cancelled
                 | queued (lease expired, OOM, worker stopped)
    failed    -> queued (retry: automatic while attempts < max_attempts, or ``zolab retry``)
    cancelled -> queued (``zolab retry``)
    succeeded -> (final)
    diverged  -> (final: the run finished, its result is stored with results.diverged, ranked last)

Rules every function keeps:

* one transaction per operation; every state change also writes a ``job_events`` row;
* a worker may only heartbeat/finish/fail a job it holds (status running, ``lease_owner`` = it):
  a late write from a worker whose lease expired is refused with :class:`LeaseLost`, so a job's
  result is written exactly once (``results.job_id`` is unique as a second guard);
* claims are atomic: PostgreSQL ``SELECT ... FOR UPDATE SKIP LOCKED``; SQLite ``BEGIN IMMEDIATE``;
  a claim first returns expired leases to the queue (same transaction), so a dead worker's job is
  taken before newer queued jobs instead of only once nothing else is claimable;
* leases are measured with the DATABASE's clock (:func:`zolab.db.repo.jobs.db_now`), never the
  worker's: a worker whose clock is minutes off neither requeues a healthy job nor gets a lease
  that has already run out;
* enqueue is insert-or-ignore on the job key (``ON CONFLICT DO NOTHING``): two ``zolab run`` of the
  same plan at once both succeed and the jobs exist once;
* transient DB errors (SQLite busy, lost PostgreSQL connection) are retried with backoff
  (:mod:`zolab.db.retry`), so "database is locked" does not reach the user.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from zolab.db.models import Job, JobStatus
from zolab.db.repo import jobs as repo
from zolab.db.retry import is_transient, retry_on_transient
from zolab.db.session import session_scope, translate_error

Q, R, S, F, C = JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED
D = JobStatus.DIVERGED

#: the legal transitions, the single source of truth
TRANSITIONS: Mapping[JobStatus, frozenset[JobStatus]] = {
    Q: frozenset({R, C}),
    R: frozenset({S, D, F, C, Q}),
    F: frozenset({Q}),
    C: frozenset({Q}),
    S: frozenset(),
    D: frozenset(),   # a result is stored; a rerun of the same config replays the same trajectory
}

DEFAULT_LEASE_S = 60.0


class QueueError(Exception):
    """Base class of queue refusals (one human line)."""


class IllegalTransition(QueueError):
    def __init__(self, job_id: int | None, src: JobStatus, dst: JobStatus) -> None:
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[src])) or "nothing (final state)"
        super().__init__(f"job {job_id}: cannot go from {src.value} to {dst.value} (allowed: {allowed})")
        self.src, self.dst = src, dst


class LeaseLost(QueueError):
    """The worker no longer holds the job (lease expired and requeued, or job cancelled)."""

    def __init__(self, job_id: int, worker_id: str, status: str, owner: str | None) -> None:
        super().__init__(f"job {job_id} is no longer held by {worker_id} (status {status}, owner {owner})")
        self.status = JobStatus(status)


class NoSuchJob(QueueError):
    pass


class RowRefused(QueueError):
    """The database refused one item of a batch write; the message names the item (file and line)."""


@dataclass
class ImportItem:
    """A result computed elsewhere (``zolab import``): written as if a worker had run the job."""

    job_id: int
    where: str                               # "results.jsonl: line 3": named in any refusal
    result: Mapping[str, Any]
    points: list[tuple[int, str, float]]


@dataclass
class ImportOutcome:
    imported: list[int]
    already: list[int]                       # had a result: skipped
    skipped: list[tuple[int, str]]           # not queued (running, failed, ...): reason


def json_safe(value: Any) -> Any:
    """NaN/inf -> None inside JSON values (PostgreSQL's JSON type refuses NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def check_transition(src: JobStatus | str, dst: JobStatus | str, job_id: int | None = None) -> None:
    src, dst = JobStatus(src), JobStatus(dst)
    if dst not in TRANSITIONS[src]:
        raise IllegalTransition(job_id, src, dst)


def _move(session, job: Job, dst: JobStatus, *, worker: str | None = None, message: str = "") -> None:
    check_transition(job.status, dst, job.id)
    repo.record_transition(session, job, dst, worker=worker, message=message)


def _clear_lease(job: Job) -> None:
    job.lease_owner = None
    job.lease_expires_at = None


def _now(session) -> datetime:
    """Job times (leases above all) come from the database's clock, one clock for every worker."""
    return repo.db_now(session)


def _reclaim(session, job: Job, now: datetime, why: str) -> None:
    """A running job whose worker is gone (lease expired, process dead) goes back to the queue with
    its checkpoint, or fails when it has used all its attempts."""
    _clear_lease(job)
    if job.attempts >= job.max_attempts:
        job.error = f"{why}; all {job.max_attempts} attempts used"
        job.finished_at = now
        _move(session, job, F, message=job.error)
    else:
        step = (job.checkpoint or {}).get("step")
        _move(session, job, Q, message=why + (f"; will resume at step {step}" if step is not None else ""))


def _reclaim_expired(session, now: datetime | None = None) -> list[int]:
    """Reclaim every lease that ended before ``now`` (default: the database's clock)."""
    moved = []
    jobs = repo.expired_leases(session, now)
    stamp = now or (_now(session) if jobs else None)
    for job in jobs:
        _reclaim(session, job, stamp, f"lease of {job.lease_owner} expired")
        moved.append(job.id)
    return moved


def _start(session, job: Job, worker_id: str, lease_s: float, now: datetime) -> None:
    """queued -> running for ``worker_id``: attempt counted, lease from the database clock."""
    resumed = job.checkpoint is not None
    _move(session, job, R, worker=worker_id, message=f"claimed (attempt {job.attempts + 1}"
          + (f", resuming at step {job.checkpoint.get('step')})" if resumed else ")"))
    job.attempts += 1
    job.lease_owner = worker_id
    job.lease_expires_at = now + timedelta(seconds=lease_s)
    job.heartbeat_at = now
    job.started_at = job.started_at or now
    job.error = None
    # curve points past the resume point will be reported again
    repo.delete_points_after(session, job.id, int(job.checkpoint.get("step", 0)) if resumed else -1)


def _complete(session, job: Job, worker_id: str, result: Mapping[str, Any], points: list, now: datetime
              ) -> JobStatus:
    """running -> succeeded, or -> diverged when the result says so (``result["diverged"]``): curve
    points, the result row and the state in the caller's transaction. Returns the final state."""
    dst = D if result.get("diverged") else S
    reason = (result.get("extra") or {}).get("diverged_reason") if dst is D else None
    repo.add_points(session, job.id, points)
    values = dict(result)
    values["extra"] = json_safe(values.get("extra") or {})
    repo.add_result(session, job, values)
    job.finished_at = now
    job.progress_step = max(job.progress_step, int(result.get("steps", 0)))
    if result.get("final_loss") is not None and math.isfinite(result["final_loss"]):
        job.last_loss = result["final_loss"]
    _clear_lease(job)
    _move(session, job, dst, worker=worker_id,
          message=f"finished, diverged: {reason}"[:500] if dst is D else "finished")
    return dst


def _held(session, job_id: int, worker_id: str) -> Job:
    job = repo.get_job(session, job_id, lock=True)
    if job is None:
        raise NoSuchJob(f"no job {job_id}")
    if job.status != R.value or job.lease_owner != worker_id:
        raise LeaseLost(job_id, worker_id, job.status, job.lease_owner)
    return job


@dataclass
class Claim:
    """What a worker needs to run a claimed job (detached from the session)."""

    job_id: int
    config: dict[str, Any]
    checkpoint: dict[str, Any] | None
    attempts: int
    max_attempts: int
    est_memory_bytes: int | None
    no_packing: bool
    key: str
    stage: str = "final"                 # final | tune (a tune job's reporter reports to its trial)
    study_name: str | None = None
    trial_number: int | None = None


class JobQueue:
    """Queue operations on one database URL. Each public method is one retried transaction."""

    def __init__(self, url: str | None = None, *, lease_s: float = DEFAULT_LEASE_S, attempts: int = 10) -> None:
        self.url = url
        self.lease_s = lease_s
        self._attempts = attempts

    def _tx(self, fn, what: str, *, immediate: bool = True, attempts: int | None = None):
        """Run ``fn(session)`` in one transaction, retried on transient errors. SQLite writes take
        the write lock up front (BEGIN IMMEDIATE): a deferred read-then-write would fail on upgrade."""
        def once():
            with session_scope(self.url, immediate=immediate) as s:
                return fn(s)

        return retry_on_transient(once, attempts=attempts or self._attempts, what=what)

    # -- producer side ---------------------------------------------------------------------------
    def enqueue(self, jobs: Iterable[Job]) -> tuple[list[int], int]:
        """Insert jobs whose key is new; returns (new job ids, number skipped as existing).

        Insert-or-ignore on the key in one statement per batch: safe against a concurrent enqueue of
        the same jobs (another ``zolab run`` of the plan), which then simply finds them existing."""
        jobs = list(jobs)
        for j in jobs:
            j.status = Q.value

        def tx(s):
            inserted = repo.insert_new_jobs(s, jobs)
            for j in jobs:
                j.id = inserted.get(j.key, j.id)
            return [inserted[j.key] for j in jobs if j.key in inserted], len(jobs) - len(inserted)

        return self._tx(tx, "enqueue jobs")

    # -- worker side -----------------------------------------------------------------------------
    def claim(
        self,
        worker_id: str,
        device_free_memory: int | None = None,
        *,
        host: str | None = None,
        device: str | None = None,
        device_capacity: int | None = None,
        plan_id: int | None = None,
        job_id: int | None = None,
    ) -> Claim | None:
        """Atomically take the next queued job that fits, or None.

        ``device_free_memory``: bytes free now on the worker's GPU; only jobs whose memory estimate
        fits are taken. With ``host``/``device`` (GPU packing) the jobs already running on that
        device count too: nothing is claimed next to a ``no_packing`` job, a ``no_packing`` job is
        claimed only on an idle device, and ``device_capacity`` minus the running estimates bounds
        the fit (estimates are in the DB at once; measured free memory lags behind allocation).
        """

        def tx(s):
            now = _now(s)
            _reclaim_expired(s, now)  # a dead worker's job goes back first: it is older than what is queued
            max_mem = device_free_memory
            allow_exclusive = True
            if host is not None and device is not None:
                running = repo.running_on_device(s, host, device)
                if any(j.no_packing for j in running):
                    return None
                if running:
                    allow_exclusive = False
                    if device_capacity is not None:
                        left = device_capacity - sum(j.est_memory_bytes or 0 for j in running)
                        max_mem = left if max_mem is None else min(max_mem, left)
            job = repo.next_claimable(
                s, max_memory=max_mem, allow_no_packing=allow_exclusive, plan_id=plan_id, job_id=job_id
            )
            if job is None:
                return None
            _start(s, job, worker_id, self.lease_s, now)
            return Claim(job.id, dict(job.config), job.checkpoint, job.attempts, job.max_attempts,
                         job.est_memory_bytes, job.no_packing, job.key, job.stage, job.study_name,
                         job.trial_number)

        return self._tx(tx, "claim a job", immediate=True)

    def heartbeat(
        self,
        job_id: int,
        worker_id: str,
        *,
        step: int | None = None,
        total: int | None = None,
        loss: float | None = None,
        checkpoint: dict[str, Any] | None = None,
        points: Iterable[tuple[int, str, float]] = (),
        attempts: int | None = None,
    ) -> None:
        """Extend the lease and store progress, loss, checkpoint and buffered curve points.

        ``attempts`` caps the retries (the runner's in-loop flushes use few: a DB outage must not
        stall training, the keep-alive thread protects the lease meanwhile).
        Raises :class:`LeaseLost` when the job was cancelled or its lease was taken over.
        """
        points = list(points)

        def tx(s):
            job = _held(s, job_id, worker_id)
            now = _now(s)
            job.heartbeat_at = now
            job.lease_expires_at = now + timedelta(seconds=self.lease_s)
            if step is not None:
                job.progress_step = step
            if total is not None:
                job.progress_total = total
            if loss is not None and math.isfinite(loss):
                job.last_loss = loss
            if checkpoint is not None:
                job.checkpoint = json_safe(checkpoint)
            repo.add_points(s, job_id, points)

        self._tx(tx, "heartbeat", attempts=attempts)

    def finish(
        self, job_id: int, worker_id: str, result: Mapping[str, Any], points: Iterable[tuple[int, str, float]] = ()
    ) -> JobStatus:
        """Write the result row, the remaining curve points and the final status in ONE transaction:
        'diverged' when the result says so (``result["diverged"]``), else 'succeeded'. Returns it."""
        points = list(points)

        def tx(s):
            return _complete(s, _held(s, job_id, worker_id), worker_id, result, points, _now(s))

        return self._tx(tx, "finish a job")

    def fail(
        self, job_id: int, worker_id: str, reason: str, retry: bool, *, no_packing: bool | None = None
    ) -> JobStatus:
        """Mark a held job failed; with ``retry`` and attempts left, requeue it at once (failed ->
        queued, both events written). Returns the job's new status."""

        def tx(s):
            job = _held(s, job_id, worker_id)
            job.error = reason
            _clear_lease(job)
            if no_packing is not None:
                job.no_packing = no_packing
            _move(s, job, F, worker=worker_id, message=reason.splitlines()[0][:500] if reason else "failed")
            if retry and job.attempts < job.max_attempts:
                _move(s, job, Q, worker=worker_id, message=f"automatic retry ({job.attempts}/{job.max_attempts} attempts used)")
            else:
                job.finished_at = _now(s)
            return JobStatus(job.status)

        return self._tx(tx, "fail a job")

    def requeue(self, job_id: int, worker_id: str, reason: str, *, no_packing: bool | None = None,
                count_attempt: bool = True) -> JobStatus:
        """Give a held job back to the queue, keeping its checkpoint (OOM, worker stopping).

        ``count_attempt=False`` (a clean stop) refunds the attempt. When no attempts are left the
        job fails instead."""

        def tx(s):
            job = _held(s, job_id, worker_id)
            _clear_lease(job)
            job.error = reason
            if no_packing is not None:
                job.no_packing = no_packing
            if not count_attempt:
                job.attempts = max(0, job.attempts - 1)
            if job.attempts >= job.max_attempts:
                _move(s, job, F, worker=worker_id, message=f"{reason}; no attempts left")
                job.finished_at = _now(s)
            else:
                _move(s, job, Q, worker=worker_id, message=reason)
            return JobStatus(job.status)

        return self._tx(tx, "requeue a job")

    def stop(self, job_id: int, worker_id: str, reason: str,
             points: Iterable[tuple[int, str, float]] = ()) -> None:
        """A held job ends ``cancelled`` by the worker itself (an Optuna trial pruned): the reason is
        its error and event message, its curve so far is kept, and it is not retried."""
        points = list(points)

        def tx(s):
            job = _held(s, job_id, worker_id)
            repo.add_points(s, job_id, points)
            _clear_lease(job)
            job.error = reason
            job.finished_at = _now(s)
            _move(s, job, C, worker=worker_id, message=reason)

        self._tx(tx, "stop a job")

    def release(self, job_id: int, worker_id: str) -> None:
        """A worker that is stopping gives its job back; the next one resumes from the checkpoint."""
        try:
            self.requeue(job_id, worker_id, "worker stopped; requeued with its checkpoint", count_attempt=False)
        except LeaseLost:
            pass

    def import_finished(self, items: Iterable[ImportItem], *, worker: str) -> ImportOutcome:
        """Record results computed elsewhere in ONE transaction: each queued job goes queued ->
        running -> succeeded or diverged (``worker`` in its events), with its result and curve. A job that has a
        result already, or is not queued, is skipped (reported). If the database refuses any item
        the whole transaction rolls back (:class:`RowRefused` names the item): nothing is imported
        and no job is left claimed."""
        items = list(items)

        def tx(s):
            out = ImportOutcome([], [], [])
            now = _now(s)
            for item in items:
                job = repo.get_job(s, item.job_id, lock=True)
                if job is None:
                    raise RowRefused(f"{item.where}: job {item.job_id} is not in the database")
                if repo.result_of(s, job.id) is not None:
                    out.already.append(job.id)
                    continue
                if job.status != Q.value:
                    out.skipped.append((job.id, f"job is {job.status}, not queued (retry it first)"))
                    continue
                _start(s, job, worker, self.lease_s, now)
                _complete(s, job, worker, item.result, list(item.points), now)
                try:
                    s.flush()  # the row's INSERT runs now, so a refusal names this item
                except Exception as exc:
                    if is_transient(exc):
                        raise
                    why = translate_error(exc, s.get_bind()) if isinstance(exc, SQLAlchemyError) else (
                        f"{type(exc).__name__}: {exc}")
                    raise RowRefused(f"{item.where}: job {item.job_id}: the database refused the result: "
                                     f"{why}") from exc
                out.imported.append(job.id)
            return out

        return self._tx(tx, "import results")

    # -- maintenance -----------------------------------------------------------------------------
    def requeue_expired(self, now: datetime | None = None) -> list[int]:
        """Return running jobs whose lease expired (by the database's clock, or ``now``) to the queue
        (checkpoint kept); a job that has used all its attempts fails instead. Returns the ids moved."""
        return self._tx(lambda s: _reclaim_expired(s, now), "requeue expired leases", immediate=True)

    def reclaim_process(self, host: str, pid: int, why: str) -> list[int]:
        """A worker process known to be dead (its parent reaped it): its worker rows are marked
        stopped and its jobs go back to the queue at once, as an expired lease would later; ``why``
        is their event message. Returns the ids moved."""
        def tx(s):
            now = _now(s)
            moved = []
            for worker_id in repo.live_workers_of_process(s, host, pid):
                repo.touch_worker(s, worker_id, stopped=True)
                for job in repo.held_by(s, worker_id):
                    _reclaim(s, job, now, why)
                    moved.append(job.id)
            return moved

        return self._tx(tx, "reclaim a dead worker's jobs")

    # -- user side -------------------------------------------------------------------------------
    def cancel(self, job_id: int, by: str = "user") -> JobStatus:
        """Cancel a queued or running job (its worker stops at its next heartbeat)."""

        def tx(s):
            job = repo.get_job(s, job_id, lock=True)
            if job is None:
                raise NoSuchJob(f"no job {job_id}")
            _move(s, job, C, worker=by, message=f"cancelled by {by}")
            _clear_lease(job)
            job.finished_at = _now(s)
            return C

        return self._tx(tx, "cancel a job")

    def retry(self, job_id: int, by: str = "user", *, extra_attempts: int = 1) -> JobStatus:
        """Requeue a failed or cancelled job; a job out of attempts gets ``extra_attempts`` more."""

        def tx(s):
            job = repo.get_job(s, job_id, lock=True)
            if job is None:
                raise NoSuchJob(f"no job {job_id}")
            _move(s, job, Q, worker=by, message=f"retry requested by {by}")
            if job.attempts >= job.max_attempts:
                job.max_attempts = job.attempts + extra_attempts
            job.finished_at = None
            return Q

        return self._tx(tx, "retry a job")

    # -- workers -----------------------------------------------------------------------------------
    def register_worker(self, worker_id: str, host: str, pid: int, device: str) -> None:
        self._tx(lambda s: repo.add_worker(s, worker_id, host, pid, device) and None, "register a worker")

    def touch_worker(self, worker_id: str, *, stopped: bool = False) -> None:
        self._tx(lambda s: repo.touch_worker(s, worker_id, stopped=stopped), "update a worker")

    # -- reads -----------------------------------------------------------------------------------
    def counts(self, plan_id: int | None = None) -> dict[str, int]:
        return self._tx(lambda s: repo.status_counts(s, plan_id), "count jobs", immediate=False)

    def drained(self, plan_id: int | None = None) -> bool:
        """True when nothing is queued or running (nothing can come back through lease expiry)."""
        c = self.counts(plan_id)
        return c.get(Q.value, 0) == 0 and c.get(R.value, 0) == 0


__all__ = [
    "DEFAULT_LEASE_S",
    "TRANSITIONS",
    "Claim",
    "IllegalTransition",
    "ImportItem",
    "ImportOutcome",
    "JobQueue",
    "LeaseLost",
    "NoSuchJob",
    "QueueError",
    "RowRefused",
    "check_transition",
]
