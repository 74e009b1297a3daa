"""Exactly-once under concurrency (issue 5 + issue 8.2): 4 worker processes drain a queue.

Each job's body writes a marker file when it runs, so "exactly once" is checked three ways:
results = jobs, attempts = 1 for every job, and job bodies executed = jobs (no duplicate run,
not only no duplicate row). No worker may surface an error (database locked, deadlock).
"""

from __future__ import annotations

import time

import pytest

from tests.platform._factories import make_jobs
from zolab.db.models import JobStatus
from zolab.db.repo import jobs as repo
from zolab.db.session import session_scope
from zolab.platform.executors.local import run_local

RUNNER = "tests.platform._runners:instant"


def drain(url: str, tmp_path, n_jobs: int, workers: int = 4) -> dict:
    marker = tmp_path / "markers"
    marker.mkdir()
    plan_id, _ids = make_jobs(url, n_jobs, {"steps": 1, "checkpoint_every": 100,
                                           "task_options": {"marker_dir": str(marker)}})
    t0 = time.monotonic()
    progress = run_local(url, workers, plan_id=plan_id, runner=RUNNER, show_progress=False, poll_s=0.5)
    elapsed = time.monotonic() - t0
    with session_scope(url) as s:
        jobs = repo.jobs_of_plan(s, plan_id)
        n_results = repo.count_results(s, plan_id)
        owners = {e.worker for j in jobs for e in repo.events_of(s, j.id) if e.to_status == "running"}
    runs = len(list(marker.iterdir()))
    assert progress.counts == {JobStatus.SUCCEEDED.value: n_jobs}
    assert n_results == n_jobs
    assert [j.attempts for j in jobs] == [1] * n_jobs
    assert runs == n_jobs, f"{runs - n_jobs} job bodies ran twice"
    assert len(owners) >= 2  # the work really was shared between processes
    return {"jobs": n_jobs, "seconds": elapsed, "workers_used": len(owners)}


def test_four_workers_drain_200_jobs_exactly_once(db_url, tmp_path):
    drain(db_url, tmp_path, 200)


@pytest.mark.slow
def test_four_workers_drain_500_jobs_exactly_once(db_url, tmp_path):
    figures = drain(db_url, tmp_path, 500)
    print(f"\n4 workers x 500 jobs on {db_url.split(':')[0]}: {figures}")
