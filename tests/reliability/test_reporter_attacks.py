"""Metric and heartbeat writes never block training (issue 17, point 5), on SQLite and PostgreSQL.

A training loop (a fixed step time, a progress + metric call each step, a checkpoint every 10 steps,
as the runner does) reports through the worker's :class:`DbReporter` while the database is made to
wait: SQLite with another process holding the write lock (``BEGIN IMMEDIATE``: every write waits its
busy timeout; WAL readers are never blocked, so that is the lock a heartbeat meets), PostgreSQL
with another connection holding the job's row ``FOR UPDATE`` (every heartbeat blocks on it). The
slowest step must stay near the loop's own step time while the writes wait; once the lock is gone
every point is stored exactly once and the newest checkpoint is in the database. Cancellation and a
lost lease must still reach the runner.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

import pytest
from sqlalchemy.engine import make_url

from tests.platform._factories import make_jobs
from tests.reliability._faults import hold_pg_row_lock, hold_sqlite_write_lock
from zolab.db.repo import jobs as repo
from zolab.db.session import session_scope
from zolab.platform.queue import JobQueue
from zolab.platform.worker import DbReporter
from zolab.runners.reporter import Checkpoint, JobCancelled

STEPS = 1000   # the total the loop reports (progress)
STEP_S = 0.02
LOCK_S = 4.0
#: the slowest step may take this long (the loop's own step is 0.02 s; before: the whole lock)
MAX_STEP_S = 0.25


@contextmanager
def _db_blocked(url: str, job_id: int, seconds: float):
    """Block the job's writes for ``seconds``; yields ``still_blocked()``."""
    if make_url(url).get_backend_name() == "sqlite":
        with hold_sqlite_write_lock(make_url(url).database, seconds) as proc:
            yield lambda: proc.poll() is None
    else:
        with hold_pg_row_lock(url, "jobs", [job_id], seconds) as released:
            yield lambda: not released.is_set()


def _train(reporter, steps: int, *, start: int = 1, during=None) -> list[float]:
    """A training loop: fixed step time, the runner's reporter calls; returns each step's duration
    (the reporter calls included). ``during(step)`` runs before each step (to inject a fault)."""
    times = []
    for step in range(start, start + steps):
        if during is not None:
            during(step)
        t0 = time.perf_counter()
        time.sleep(STEP_S)  # the forward passes
        reporter.progress(step, STEPS, 1.0 / step)
        reporter.metric(step, "train_loss", 1.0 / step)
        if step % 10 == 0:
            reporter.checkpoint(Checkpoint(step=step, base="b", trajectory=[(k, 0.1) for k in range(step)]))
        reporter.heartbeat()
        times.append(time.perf_counter() - t0 - STEP_S)
    return times


def test_a_locked_database_does_not_block_the_training_loop(db_url):
    _, (job_id,) = make_jobs(db_url, 1)
    q = JobQueue(db_url, lease_s=60)
    claim = q.claim("w")
    rep = DbReporter(q, claim.job_id, "w", heartbeat_s=0.05)
    try:
        times = _train(rep, 20)                           # normal writes
        step = 21
        with _db_blocked(db_url, job_id, LOCK_S) as still_blocked:
            t0 = time.monotonic()
            while still_blocked():                        # train on while every write waits
                times += _train(rep, 1, start=step)
                step += 1
            loop_s = time.monotonic() - t0
        blocked_steps = step - 21
        times += _train(rep, 20, start=step)
        total = step + 19
        slowest = max(times)
        print(f"\n{db_url.split(':')[0]}: database blocked {loop_s:.1f} s: {blocked_steps} steps meanwhile, "
              f"slowest step +{slowest * 1000:.0f} ms over its {STEP_S * 1000:.0f} ms")
        assert rep.wait_idle(60), "the writer did not catch up after the lock was released"
        points = rep.take_points()
    finally:
        rep.close()
    assert blocked_steps >= 0.5 * LOCK_S / STEP_S  # the loop really ran through the lock
    assert slowest < MAX_STEP_S, f"a step waited {slowest:.2f} s for the database"
    assert points == []  # everything reached the database by the writer
    with session_scope(db_url) as s:
        stored = repo.points_of(s, job_id)
        job = repo.get_job(s, job_id)
    assert [p[0] for p in stored] == list(range(1, total + 1))             # every point, once, in order
    assert [p[2] for p in stored] == pytest.approx([1.0 / k for k in range(1, total + 1)])
    assert job.progress_step == total and job.checkpoint["step"] == total // 10 * 10  # the newest checkpoint


def test_cancellation_reaches_the_runner_after_a_lock(db_url):
    """While writes wait the runner cannot learn anything; once the lock is gone a cancel issued
    meanwhile stops it within a few steps."""
    _, (job_id,) = make_jobs(db_url, 1)
    q = JobQueue(db_url, lease_s=60)
    q.claim("w")
    rep = DbReporter(q, job_id, "w", heartbeat_s=0.05)
    try:
        with _db_blocked(db_url, job_id, 2.0):
            _train(rep, 20)
        JobQueue(db_url).cancel(job_id, by="test")
        t0 = time.monotonic()
        with pytest.raises(JobCancelled, match="no longer held by w"):
            _train(rep, 500, start=21)
        stopped_after = time.monotonic() - t0
    finally:
        rep.close()
    assert stopped_after < 3.0, f"the cancellation took {stopped_after:.1f} s to reach the runner"


def test_a_lost_lease_reaches_the_runner(db_url):
    _, (job_id,) = make_jobs(db_url, 1)
    q = JobQueue(db_url, lease_s=0.3)
    q.claim("w")
    rep = DbReporter(q, job_id, "w", heartbeat_s=0.05)
    try:
        time.sleep(0.6)  # the lease runs out without a heartbeat (the process was frozen)
        taker = JobQueue(db_url, lease_s=30).claim("taker")
        assert taker is not None and taker.job_id == job_id
        with pytest.raises(JobCancelled, match="no longer held by w"):
            _train(rep, 200)
    finally:
        rep.close()
    with session_scope(db_url) as s:
        assert repo.get_job(s, job_id).lease_owner == "taker"
