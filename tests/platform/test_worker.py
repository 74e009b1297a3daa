"""The worker loop's outcomes: success, NaN loss, CUDA OOM, crashes with retry, cancel; the DB reporter."""

from __future__ import annotations

import time

import pytest

from tests.platform._factories import make_jobs
from tests.platform._runners import instant
from zolab.db.repo import jobs as repo
from zolab.db.session import session_scope
from zolab.platform.queue import JobQueue
from zolab.platform.worker import DbReporter, DeviceInfo, Worker, resolve_runner
from zolab.runners.reporter import Checkpoint, JobCancelled

RUNNER = "tests.platform._runners:instant"


def _jobs(url):
    with session_scope(url) as s:
        return repo.jobs_of_plan(s)


def _events(url, job_id):
    with session_scope(url) as s:
        return [(e.from_status, e.to_status, e.message) for e in repo.events_of(s, job_id)]


def test_resolve_runner_default_is_the_real_runner(monkeypatch):
    monkeypatch.delenv("ZOLAB_RUNNER", raising=False)
    from zolab.runners import train

    assert resolve_runner() is train.run
    assert resolve_runner(RUNNER) is instant
    with pytest.raises(ValueError, match="module:function"):
        resolve_runner("no-colon")


def test_worker_drains_queue_writes_results_curves_and_stops(db_url):
    make_jobs(db_url, 3, {"steps": 5, "checkpoint_every": 2})
    w = Worker(db_url, runner=RUNNER, lease_s=30, heartbeat_s=0.01, poll_s=0.05)
    stats = w.run()
    assert stats.succeeded == 3 and stats.failed == 0
    jobs = _jobs(db_url)
    assert [j.status for j in jobs] == ["succeeded"] * 3
    assert all(j.attempts == 1 and j.progress_step == 5 for j in jobs)
    with session_scope(db_url) as s:
        res = repo.result_of(s, jobs[1].id)
        assert res.accuracy == pytest.approx(0.01)  # seed 1 -> 1/100 in the fake runner
        assert [p[0] for p in repo.points_of(s, jobs[1].id, "train_loss")] == [1, 2, 3, 4, 5]
        (worker_row,) = repo.list_workers(s)
        assert worker_row.id == w.id and worker_row.stopped_at is not None


def test_nan_loss_fails_with_step_and_reason_and_is_not_retried(db_url):
    make_jobs(db_url, 1, {"steps": 5, "task_options": {"nan_step": 3}})
    Worker(db_url, runner=RUNNER, lease_s=30, poll_s=0.05).run()
    (job,) = _jobs(db_url)
    assert job.status == "failed" and job.attempts == 1
    assert "non-finite loss at step 3" in job.error
    assert [e[1] for e in _events(db_url, job.id)] == ["queued", "running", "failed"]


def test_cuda_oom_requeues_with_no_packing_then_fails_when_alone(db_url):
    make_jobs(db_url, 1, {"steps": 5, "task_options": {"oom_step": 2}}, est_memory_bytes=3 * 2**30, max_attempts=5)
    w = Worker(db_url, runner=RUNNER, lease_s=30, poll_s=0.05, max_jobs=1)
    w.run()
    (job,) = _jobs(db_url)
    assert job.status == "queued" and job.no_packing
    assert "CUDA out of memory on cpu: estimated peak 3.00 GiB" in job.error and "no packing" in job.error
    # second OOM while running alone: it does not fit, failed for good
    Worker(db_url, runner=RUNNER, lease_s=30, poll_s=0.05).run()
    (job,) = _jobs(db_url)
    assert job.status == "failed" and "it ran alone, so it does not fit" in job.error and job.attempts == 2


def test_crash_is_retried_while_attempts_remain_with_traceback(db_url):
    make_jobs(db_url, 1, {"steps": 4, "task_options": {"crash_step": 2}}, max_attempts=2)
    stats = Worker(db_url, runner=RUNNER, lease_s=30, poll_s=0.05).run()
    (job,) = _jobs(db_url)
    assert stats.requeued == 1 and stats.failed == 1
    assert job.status == "failed" and job.attempts == 2
    assert "Traceback" in job.error and "RuntimeError: boom at step 2" in job.error


def test_db_reporter_throttles_batches_and_stops_on_cancel(sqlite_url):
    make_jobs(sqlite_url, 1)
    q = JobQueue(sqlite_url, lease_s=30)
    c = q.claim("w")
    now = [0.0]
    rep = DbReporter(q, c.job_id, "w", heartbeat_s=5.0, clock=lambda: now[0])
    try:
        for step in range(1, 4):
            rep.progress(step, 10, 1.0 / step)
            rep.metric(step, "train_loss", 1.0 / step)
        time.sleep(0.3)
        assert rep.flushes == 0  # within the heartbeat interval: nothing written yet
        now[0] = 6.0
        rep.heartbeat()
        assert rep.wait_idle() and rep.flushes == 1  # one write carries the three steps
        with session_scope(sqlite_url) as s:
            job = repo.get_job(s, c.job_id)
            assert (job.progress_step, job.progress_total) == (3, 10)
            assert len(repo.points_of(s, c.job_id)) == 3
        rep.checkpoint(Checkpoint(step=3, base="b", trajectory=[(1, 0.1)]))  # checkpoints go out at once
        assert rep.wait_idle() and rep.flushes == 2
        assert _job_checkpoint(sqlite_url, c.job_id)["step"] == 3
        q.cancel(c.job_id)
        now[0] = 20.0
        rep.progress(4, 10, 0.2)  # the writer meets the cancellation ...
        deadline = time.monotonic() + 10
        while rep.lost is None and time.monotonic() < deadline:
            time.sleep(0.02)
        with pytest.raises(JobCancelled, match="no longer held"):  # ... and the next call tells the runner
            rep.progress(5, 10, 0.2)
    finally:
        rep.close()


def _job_checkpoint(url, job_id):
    with session_scope(url) as s:
        return repo.get_job(s, job_id).checkpoint


def test_running_job_cancelled_stops_without_result(db_url):
    make_jobs(db_url, 1, {"steps": 400, "task_options": {"sleep": 0.01}})
    q = JobQueue(db_url)
    w = Worker(db_url, runner=RUNNER, lease_s=30, heartbeat_s=0.05, poll_s=0.05, max_jobs=1)
    claim = w.queue.claim(w.id)
    calls = []

    def run_fn(config, reporter, resume):  # cancel from "the CLI" after the first steps
        calls.append(1)
        q.cancel(claim.job_id)
        return instant(config, reporter, resume)

    w.run_fn = run_fn
    assert w.run_claim(claim) == "stopped"
    (job,) = _jobs(db_url)
    assert job.status == "cancelled"
    with session_scope(db_url) as s:
        assert repo.count_results(s) == 0


def test_gpu_device_info_on_cpu():
    assert DeviceInfo().free_memory() is None and not DeviceInfo().is_gpu


def test_keepalive_holds_the_lease_while_the_runner_is_silent(sqlite_url):
    """A runner busy for longer than the lease without reporting (model load, long eval) keeps its job."""
    make_jobs(sqlite_url, 1, {"steps": 2})
    seen = {}

    def silent(config, reporter, resume):
        import time as _time

        _time.sleep(2.5)  # 2.5 leases without a reporter call
        seen["requeued"] = JobQueue(sqlite_url).requeue_expired()  # what another worker would do
        return instant(config, reporter, resume)

    stats = Worker(sqlite_url, runner=silent, lease_s=1.0, heartbeat_s=0.2, poll_s=0.05).run()
    (job,) = _jobs(sqlite_url)
    assert seen["requeued"] == [] and stats.succeeded == 1 and job.attempts == 1


class _FakeGpu(DeviceInfo):
    """A GPU as the worker sees it, without CUDA: fixed total and free memory."""

    def __init__(self, total: int, free: int) -> None:
        super().__init__(name="cuda:0", total_memory=total)
        self.free = free

    def free_memory(self) -> int | None:
        return self.free


def test_gpu_workers_pack_jobs_while_estimates_fit_90_percent(db_url):
    gib = 2**30
    make_jobs(db_url, 4, {"steps": 1}, est_memory_bytes=30 * gib)
    gpu = _FakeGpu(total=80 * gib, free=80 * gib)
    a, b, c = (Worker(db_url, runner=RUNNER, lease_s=30, device=gpu) for _ in range(3))
    for w in (a, b, c):
        w.queue.register_worker(w.id, w.host, 1, gpu.name)
    assert a._claim() is not None and b._claim() is not None  # 2 x 30 GiB fit in 0.9 x 80 GiB
    assert c._claim() is None                                  # a third would need 90 GiB
    gpu.free = 10 * gib                                        # memory taken by someone else: nothing fits
    other = Worker(db_url, runner=RUNNER, lease_s=30, device=_FakeGpu(total=80 * gib, free=10 * gib))
    assert other._claim() is None


def test_db_reporter_keeps_points_through_an_outage_and_never_waits_for_it(sqlite_url, monkeypatch):
    """During a (injected) outage every reporter call returns at once; the writer keeps the points and
    the newest checkpoint, and writes them once when the database is back."""
    from zolab.db.errors import TransientDatabaseError
    from zolab.platform import queue as queue_mod

    make_jobs(sqlite_url, 1)
    q = JobQueue(sqlite_url, lease_s=30, attempts=8)
    c = q.claim("w")
    real_scope, tries = queue_mod.session_scope, []

    def down(*a, **k):
        tries.append(1)
        raise TransientDatabaseError("database unreachable (injected)")

    monkeypatch.setattr(queue_mod, "session_scope", down)
    rep = DbReporter(q, c.job_id, "w", heartbeat_s=0.05)
    try:
        slowest = 0.0
        for step in range(1, 201):
            t0 = time.perf_counter()
            rep.progress(step, 200, 1.0 / step)
            rep.metric(step, "train_loss", 1.0 / step)
            if step % 50 == 0:
                rep.checkpoint(Checkpoint(step=step, base="b", trajectory=[(step, 0.1)]))
            slowest = max(slowest, time.perf_counter() - t0)
            time.sleep(0.002)
        assert len(tries) >= 3 and rep.flushes == 0  # the writer kept trying ...
        assert slowest < 0.05                         # ... while no step waited for it
        monkeypatch.setattr(queue_mod, "session_scope", real_scope)
        assert rep.wait_idle(30)
    finally:
        rep.close()
    with session_scope(sqlite_url) as s:
        assert [p[0] for p in repo.points_of(s, c.job_id)] == list(range(1, 201))  # each point once
        job = repo.get_job(s, c.job_id)
        assert job.checkpoint["step"] == 200 and job.progress_step == 200
