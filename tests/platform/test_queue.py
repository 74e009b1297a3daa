"""The DB job queue: the transition table, atomic claims, leases, finish/fail/cancel/retry (SQLite + PostgreSQL)."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest

from tests.platform._factories import make_jobs
from zolab.db.models import JobStatus, utcnow
from zolab.db.repo import jobs as repo
from zolab.db.session import session_scope
from zolab.platform.queue import TRANSITIONS, IllegalTransition, JobQueue, LeaseLost, check_transition

RESULT = {"accuracy": 0.75, "f1": 0.7, "steps": 10, "forward_passes": 20, "wall_time_s": 2.0, "gpu_hours": 0.0,
          "final_loss": 0.3}


def _job(url, job_id):
    with session_scope(url) as s:
        return repo.get_job(s, job_id)


def _events(url, job_id):
    with session_scope(url) as s:
        return [(e.from_status, e.to_status) for e in repo.events_of(s, job_id)]


# -- the table (pure) ---------------------------------------------------------------------------
EXPECTED = {
    ("queued", "running"), ("queued", "cancelled"),
    ("running", "succeeded"), ("running", "diverged"), ("running", "failed"), ("running", "cancelled"), ("running", "queued"),
    ("failed", "queued"), ("cancelled", "queued"),
}


@pytest.mark.parametrize("src,dst", list(itertools.product(JobStatus, JobStatus)))
def test_transition_table_is_exactly_the_documented_one(src, dst):
    legal = (src.value, dst.value) in EXPECTED
    assert (dst in TRANSITIONS[src]) == legal
    if legal:
        check_transition(src, dst)
    else:
        with pytest.raises(IllegalTransition, match=f"from {src.value} to {dst.value}"):
            check_transition(src, dst)


# -- on the database ----------------------------------------------------------------------------
def test_enqueue_is_idempotent_by_key(db_url):
    plan_id, ids = make_jobs(db_url, 3)
    q = JobQueue(db_url)
    with session_scope(db_url) as s:
        again = [repo.get_job(s, i) for i in ids]
    from zolab.db.models import Job

    copies = [Job(key=j.key, plan_id=j.plan_id, variant_id=j.variant_id, task=j.task, seed=j.seed, config=j.config)
              for j in again]
    created, skipped = q.enqueue(copies)
    assert created == [] and skipped == 3
    assert q.counts(plan_id) == {"queued": 3}
    assert _events(db_url, ids[0]) == [(None, "queued")]


def test_claim_heartbeat_finish_writes_result_points_and_events(db_url):
    _, ids = make_jobs(db_url, 2)
    q = JobQueue(db_url, lease_s=30)
    c = q.claim("w1")
    assert c.job_id == ids[0] and c.attempts == 1 and c.checkpoint is None
    job = _job(db_url, c.job_id)
    assert job.status == "running" and job.lease_owner == "w1"
    assert job.lease_expires_at > utcnow() + timedelta(seconds=25)
    q.heartbeat(c.job_id, "w1", step=4, total=10, loss=0.5, checkpoint={"step": 4}, points=[(4, "train_loss", 0.5)])
    job = _job(db_url, c.job_id)
    assert (job.progress_step, job.progress_total, job.last_loss, job.checkpoint) == (4, 10, 0.5, {"step": 4})
    q.finish(c.job_id, "w1", RESULT, [(10, "train_loss", 0.3)])
    job = _job(db_url, c.job_id)
    assert job.status == "succeeded" and job.lease_owner is None and job.finished_at is not None
    with session_scope(db_url) as s:
        res = repo.result_of(s, c.job_id)
        assert (res.accuracy, res.steps, res.task, res.seed) == (0.75, 10, job.task, job.seed)
        assert repo.points_of(s, c.job_id) == [(4, "train_loss", 0.5), (10, "train_loss", 0.3)]
    assert _events(db_url, c.job_id) == [(None, "queued"), ("queued", "running"), ("running", "succeeded")]
    # a finished job cannot be finished, failed or cancelled again
    with pytest.raises(LeaseLost):
        q.finish(c.job_id, "w1", RESULT)
    with pytest.raises(IllegalTransition):
        q.cancel(c.job_id)
    assert q.claim("w2").job_id == ids[1]
    assert q.claim("w3") is None


def test_expired_lease_requeues_with_checkpoint_and_refuses_the_old_worker(db_url):
    make_jobs(db_url, 1)
    q = JobQueue(db_url, lease_s=30)
    c = q.claim("dead")
    q.heartbeat(c.job_id, "dead", step=7, checkpoint={"step": 7, "trajectory": [[1, 0.5]]},
                points=[(5, "train_loss", 0.9), (8, "train_loss", 0.8)])
    assert q.requeue_expired() == []  # not expired yet
    assert q.requeue_expired(now=utcnow() + timedelta(seconds=31)) == [c.job_id]
    job = _job(db_url, c.job_id)
    assert job.status == "queued" and job.lease_owner is None and job.checkpoint["step"] == 7
    c2 = q.claim("alive")
    assert c2.attempts == 2 and c2.checkpoint == {"step": 7, "trajectory": [[1, 0.5]]}
    with session_scope(db_url) as s:  # points past the resume step are dropped (reported again)
        assert repo.points_of(s, c.job_id) == [(5, "train_loss", 0.9)]
    with pytest.raises(LeaseLost, match="no longer held by dead"):
        q.heartbeat(c.job_id, "dead", step=9)
    with pytest.raises(LeaseLost):
        q.finish(c.job_id, "dead", RESULT)
    q.finish(c.job_id, "alive", RESULT)
    with session_scope(db_url) as s:
        assert repo.count_results(s) == 1
    assert ("running", "queued") in _events(db_url, c.job_id)


def test_lease_expiry_after_last_attempt_fails_the_job(db_url):
    _, ids = make_jobs(db_url, 1, max_attempts=1)
    q = JobQueue(db_url, lease_s=1)
    q.claim("w")
    assert q.requeue_expired(now=utcnow() + timedelta(seconds=5)) == ids
    job = _job(db_url, ids[0])
    assert job.status == "failed" and "all 1 attempts used" in job.error


def test_fail_retries_while_attempts_remain_then_stays_failed(db_url):
    make_jobs(db_url, 1, max_attempts=2)
    q = JobQueue(db_url)
    c = q.claim("w")
    assert q.fail(c.job_id, "w", "Traceback: boom", retry=True) == JobStatus.QUEUED
    c = q.claim("w")
    assert c.attempts == 2
    assert q.fail(c.job_id, "w", "Traceback: boom again", retry=True) == JobStatus.FAILED
    job = _job(db_url, c.job_id)
    assert job.error == "Traceback: boom again" and job.attempts == 2
    assert _events(db_url, c.job_id) == [
        (None, "queued"), ("queued", "running"), ("running", "failed"), ("failed", "queued"),
        ("queued", "running"), ("running", "failed"),
    ]
    # manual retry grants one more attempt
    assert q.retry(c.job_id) == JobStatus.QUEUED
    assert q.claim("w").attempts == 3


def test_fail_without_retry_is_final(db_url):
    make_jobs(db_url, 1)
    q = JobQueue(db_url)
    c = q.claim("w")
    assert q.fail(c.job_id, "w", "non-finite loss at step 3", retry=False) == JobStatus.FAILED
    assert q.claim("w") is None
    assert _job(db_url, c.job_id).attempts == 1


def test_cancel_queued_and_running_jobs(db_url):
    _, ids = make_jobs(db_url, 2)
    q = JobQueue(db_url)
    assert q.cancel(ids[1]) == JobStatus.CANCELLED
    c = q.claim("w")
    assert c.job_id == ids[0]
    q.cancel(ids[0])
    with pytest.raises(LeaseLost) as err:  # the worker learns at its next heartbeat
        q.heartbeat(ids[0], "w", step=1)
    assert err.value.status == JobStatus.CANCELLED
    assert q.claim("w") is None and q.drained()
    with pytest.raises(IllegalTransition, match="cancelled to cancelled"):
        q.cancel(ids[0])
    q.retry(ids[1])
    assert q.claim("w").job_id == ids[1]


def test_requeue_for_oom_sets_no_packing_and_packing_rules(db_url):
    make_jobs(db_url, 3, est_memory_bytes=4 * 2**30)
    q = JobQueue(db_url)
    assert q.claim("w0", device_free_memory=2**30) is None  # does not fit
    c = q.claim("w0", device_free_memory=8 * 2**30)
    assert q.requeue(c.job_id, "w0", "CUDA out of memory", no_packing=True) == JobStatus.QUEUED
    job = _job(db_url, c.job_id)
    assert job.no_packing and job.status == "queued" and job.attempts == 1
    # two workers on one GPU: worker A holds a job, so B may not take the exclusive one
    q.register_worker("A", "h", 1, "cuda:0")
    q.register_worker("B", "h", 2, "cuda:0")
    a = q.claim("A", 80 * 2**30, host="h", device="cuda:0", device_capacity=70 * 2**30)
    assert a.job_id == c.job_id and a.no_packing  # idle device: the exclusive job goes first (lowest id)
    assert q.claim("B", 80 * 2**30, host="h", device="cuda:0", device_capacity=70 * 2**30) is None
    q.finish(a.job_id, "A", RESULT)
    b = q.claim("B", 80 * 2**30, host="h", device="cuda:0", device_capacity=6 * 2**30)
    assert b is not None and not b.no_packing
    # capacity 6 GiB minus B's 4 GiB leaves 2 GiB: the next 4 GiB job does not fit on this GPU
    assert q.claim("A", 80 * 2**30, host="h", device="cuda:0", device_capacity=6 * 2**30) is None


def test_worker_rows_register_and_stop(db_url):
    q = JobQueue(db_url)
    q.register_worker("h:1:x", "h", 1, "cpu")
    q.touch_worker("h:1:x", stopped=True)
    with session_scope(db_url) as s:
        (w,) = repo.list_workers(s)
        assert w.id == "h:1:x" and w.stopped_at is not None
        assert repo.list_workers(s, active_only=True) == []


def test_a_retried_heartbeat_does_not_duplicate_curve_points(db_url):
    """A heartbeat whose commit succeeded but whose reply was lost is sent again with the same points."""
    make_jobs(db_url, 1)
    q = JobQueue(db_url, lease_s=30)
    c = q.claim("w1")
    points = [(1, "train_loss", 0.7), (2, "train_loss", 0.6), (2, "dev_accuracy", 0.55)]
    for _ in range(2):
        q.heartbeat(c.job_id, "w1", step=2, total=10, loss=0.6, points=points)
    q.finish(c.job_id, "w1", RESULT, [(2, "train_loss", 0.61), (10, "train_loss", 0.3), (10, "train_loss", 0.29)])
    with session_scope(db_url) as s:
        assert sorted(repo.points_of(s, c.job_id)) == [
            (1, "train_loss", 0.7), (2, "dev_accuracy", 0.55), (2, "train_loss", 0.61), (10, "train_loss", 0.29)]
        assert repo.add_points(s, c.job_id, []) == 0
        # more points than one statement takes (SQLite's bound-variable limit): all stored, once
        assert repo.add_points(s, c.job_id, [(k, "long", float(k)) for k in range(2500)] * 2) == 2500
    with session_scope(db_url) as s:
        assert len(repo.points_of(s, c.job_id, "long")) == 2500
