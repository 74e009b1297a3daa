"""Attacks on the queue itself (issue 17, points 3 and 4), on SQLite and PostgreSQL.

* Two producers enqueue the same plan at the same instant (a barrier), many trials: both must
  succeed, every job must exist once with one 'enqueued' event (before: PostgreSQL raised a
  unique-key violation on ``jobs.key`` in some trials).
* A worker whose clock runs 120 s ahead (or behind) of the others: leases are measured with the
  database's clock, so it neither requeues a healthy job nor gets a lease that is already over.
* A dead worker's expired lease is reclaimed before newer queued jobs are claimed (before: only
  once nothing else was claimable, i.e. at the end of the plan).
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from tests.platform._factories import make_jobs, make_plan
from tests.reliability._faults import skewed_host_clock
from zolab.db.models import Job
from zolab.db.repo import jobs as repo
from zolab.db.session import session_scope
from zolab.platform.queue import JobQueue
from zolab.runners.config import RunConfig

TRIALS = 12
JOBS_PER_PLAN = 150


def _jobs_for(plan_id: int, variant_id: int, n: int) -> list[Job]:
    base = RunConfig()
    return [Job(key=f"p{plan_id}:v{variant_id}:{base.task}:s{seed}:final", plan_id=plan_id, variant_id=variant_id,
                task=base.task, seed=seed, config=base.replace(seed=seed).to_dict()) for seed in range(n)]


def _race_once(url: str, producers: int = 2) -> list[BaseException | tuple[list[int], int]]:
    plan_id, variant_id = make_plan(url)
    barrier = threading.Barrier(producers)
    outcomes: list = [None] * producers

    def producer(i: int) -> None:
        jobs = _jobs_for(plan_id, variant_id, JOBS_PER_PLAN)  # each `zolab run` builds its own rows
        try:
            barrier.wait(timeout=30)
            outcomes[i] = JobQueue(url).enqueue(jobs)
        except BaseException as exc:  # noqa: BLE001 - the test counts them
            outcomes[i] = exc

    threads = [threading.Thread(target=producer, args=(i,)) for i in range(producers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    with session_scope(url) as s:
        jobs = repo.jobs_of_plan(s, plan_id)
        events = sum(len(repo.events_of(s, j.id)) for j in jobs)
    assert len(jobs) == JOBS_PER_PLAN and len({j.key for j in jobs}) == JOBS_PER_PLAN
    assert events == JOBS_PER_PLAN  # one 'enqueued' event each, none for the skipped copies
    return outcomes


def test_concurrent_enqueue_of_the_same_plan_never_fails(db_url):
    failures, created_total = [], []
    for _ in range(TRIALS):
        outcomes = _race_once(db_url)
        bad = [o for o in outcomes if isinstance(o, BaseException)]
        failures += bad
        if not bad:
            created = sorted(len(o[0]) for o in outcomes)
            skipped = sorted(o[1] for o in outcomes)
            created_total.append(created)
            assert sum(created) == JOBS_PER_PLAN and sum(skipped) == JOBS_PER_PLAN  # split, never doubled
    print(f"\nconcurrent enqueue on {db_url.split(':')[0]}: {len(failures)} of {TRIALS} trials failed"
          + (f" ({type(failures[0]).__name__}: {str(failures[0])[:120]})" if failures else ""))
    assert failures == [], f"{len(failures)} of {TRIALS} trials failed: {failures[0]!r}"


# -- leases against skewed host clocks ------------------------------------------------------------------
def test_a_worker_with_a_clock_120s_ahead_does_not_requeue_a_healthy_job(db_url):
    _, (job_id,) = make_jobs(db_url, 1)
    healthy = JobQueue(db_url, lease_s=60)
    assert healthy.claim("healthy").job_id == job_id
    healthy.heartbeat(job_id, "healthy", step=1)
    with skewed_host_clock(+120):
        fast = JobQueue(db_url, lease_s=60)
        moved = fast.requeue_expired()          # what any worker does between claims
        stolen = fast.claim("fast")             # claims reclaim expired leases first
    assert moved == [] and stolen is None
    with session_scope(db_url) as s:
        job = repo.get_job(s, job_id)
    assert (job.status, job.lease_owner, job.attempts) == ("running", "healthy", 1)
    healthy.heartbeat(job_id, "healthy", step=2)  # still its job


def test_a_worker_with_a_clock_120s_behind_gets_a_real_lease(db_url):
    """Its lease must not be over before it starts: another worker's reclaim must not take its job."""
    _, (job_id,) = make_jobs(db_url, 1)
    with skewed_host_clock(-120):
        slow = JobQueue(db_url, lease_s=60)
        assert slow.claim("slow").job_id == job_id
        slow.heartbeat(job_id, "slow", step=1)
    other = JobQueue(db_url, lease_s=60)
    assert other.requeue_expired() == [] and other.claim("other") is None
    with session_scope(db_url) as s:
        job = repo.get_job(s, job_id)
        db_now = repo.db_now(s)
    assert job.lease_owner == "slow"
    assert timedelta(seconds=55) < job.lease_expires_at - db_now <= timedelta(seconds=60)


@pytest.mark.postgres
def test_lease_times_are_utc_whatever_the_postgres_session_time_zone(pg_url, monkeypatch):
    """``now()`` is a timestamptz: rendered in the session's TimeZone it would shift every lease by
    the zone's offset. The queue's times are naive UTC on every session."""
    from zolab.db.models import utcnow
    from zolab.db.session import dispose_engines

    _, (job_id,) = make_jobs(pg_url, 1)
    dispose_engines()
    monkeypatch.setenv("PGTZ", "Pacific/Kiritimati")  # UTC+14: libpq sets the session TimeZone
    q = JobQueue(pg_url, lease_s=60)
    q.claim("w")
    with session_scope(pg_url) as s:
        zone = s.connection().exec_driver_sql("SHOW TimeZone").scalar()
        job = repo.get_job(s, job_id)
    assert zone == "Pacific/Kiritimati"
    assert abs((job.lease_expires_at - timedelta(seconds=60)) - utcnow()) < timedelta(seconds=5)
    assert q.requeue_expired() == []


# -- a dead worker's job goes first ----------------------------------------------------------------------
def test_an_expired_lease_is_reclaimed_before_newer_jobs_are_claimed(db_url):
    _, ids = make_jobs(db_url, 3)
    dying = JobQueue(db_url, lease_s=0.3)
    first = dying.claim("dies")
    assert first.job_id == ids[0]
    dying.heartbeat(first.job_id, "dies", step=4, checkpoint={"step": 4})
    import time

    time.sleep(0.6)  # its lease runs out (by the database's clock)
    nxt = JobQueue(db_url, lease_s=30).claim("alive")
    assert nxt is not None and nxt.job_id == ids[0], f"claimed job {nxt.job_id if nxt else None}, not the dead one"
    assert nxt.attempts == 2 and nxt.checkpoint == {"step": 4}  # resumed, not restarted
    with session_scope(db_url) as s:
        messages = [e.message for e in repo.events_of(s, ids[0])]
    assert any("lease of dies expired; will resume at step 4" in m for m in messages)
