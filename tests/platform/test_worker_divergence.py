"""Diverged runs through the worker and the real runner: job ``diverged``, result row ``diverged``,
``zolab status`` and the progress line count it as finished; healthy runs succeed; NaN fails as before."""

from __future__ import annotations

import math

import pytest
from typer.testing import CliRunner

from tests.platform._factories import make_jobs
from zolab.cli import app, common
from zolab.db.repo import jobs as repo
from zolab.db.session import session_scope
from zolab.platform.executors.local import Progress, _render
from zolab.platform.worker import Worker

REAL = "zolab.runners.train:run"
TINY = {"model": "tiny-llama-h16-l1", "task": "synthetic-sentiment", "train_size": 200, "dev_size": 60,
        "test_size": 100, "batch_size": 8, "eps": 1e-2, "device": "cpu", "steps": 40, "eval_every": 20,
        "checkpoint_every": 20}


def _job_and_result(url):
    with session_scope(url) as s:
        (job,) = repo.jobs_of_plan(s)
        res = repo.result_of(s, job.id)
        events = [(e.to_status, e.message) for e in repo.events_of(s, job.id)]
        return job, res, events


def test_huge_lr_job_ends_diverged_with_a_diverged_result(db_url, monkeypatch):
    make_jobs(db_url, 1, {**TINY, "method": "mezo", "lr": 1.0})
    stats = Worker(db_url, runner=REAL, lease_s=60, heartbeat_s=0.05, poll_s=0.05).run()
    assert (stats.diverged, stats.succeeded, stats.failed) == (1, 0, 0)
    job, res, events = _job_and_result(db_url)
    assert job.status == "diverged" and job.finished_at is not None and job.lease_owner is None
    assert [e[0] for e in events] == ["queued", "running", "diverged"]
    assert "diverged: smoothed train loss" in events[-1][1]
    assert res is not None and res.diverged is True
    assert "exceeds 10x its first value" in res.extra["diverged_reason"]
    assert res.steps == res.extra["diverged_at_step"] == job.progress_step < TINY["steps"]  # stopped early
    # zolab status: the job, its colour, the reason, and "finished" counting it
    monkeypatch.setattr(common.console, "_width", 250)
    out = CliRunner().invoke(app, ["status", "--db", db_url])
    assert out.exit_code == 0, out.output
    assert "diverged" in out.output and "smoothed train loss" in out.output
    assert "jobs: diverged 1 (finished 1 of 1)" in out.output


def test_healthy_job_succeeds_with_a_result_not_diverged(db_url):
    make_jobs(db_url, 1, {**TINY, "method": "mezo", "lr": 1e-3, "steps": 10, "eval_every": 5})
    stats = Worker(db_url, runner=REAL, lease_s=60, heartbeat_s=0.05, poll_s=0.05).run()
    assert (stats.succeeded, stats.diverged) == (1, 0)
    job, res, events = _job_and_result(db_url)
    assert job.status == "succeeded" and res.diverged is False and res.steps == 10
    assert [e[0] for e in events] == ["queued", "running", "succeeded"]


def test_nan_loss_job_fails_as_before_without_a_result(db_url, monkeypatch):
    from zolab.runners import objectives

    ce = objectives.OBJECTIVES["ce"]
    calls = {"n": 0}

    def poisoned(ll, lengths, labels):  # NaN from the 5th forward: ZO step 3
        calls["n"] += 1
        return ce(ll, lengths, labels) * (math.nan if calls["n"] > 4 else 1.0)

    monkeypatch.setitem(objectives.OBJECTIVES, "ce", poisoned)
    make_jobs(db_url, 1, {**TINY, "method": "mezo", "lr": 1e-3}, max_attempts=3)
    stats = Worker(db_url, runner=REAL, lease_s=60, heartbeat_s=0.05, poll_s=0.05).run()
    assert (stats.failed, stats.diverged, stats.requeued) == (1, 0, 0)
    job, res, events = _job_and_result(db_url)
    assert job.status == "failed" and job.attempts == 1 and "non-finite loss at step 3" in job.error
    assert res is None and [e[0] for e in events] == ["queued", "running", "failed"]


def test_progress_line_counts_diverged_as_finished():
    from rich.console import Console

    prog = Progress({"succeeded": 2, "diverged": 1, "running": 1, "failed": 1}, eta_s=None, workers=2)
    assert prog.finished == 4
    console = Console(width=200, record=True)
    console.print(_render(prog, started=0.0))
    text = console.export_text()
    assert "4/5 jobs" in text and "diverged 1" in text


@pytest.mark.parametrize("diverged", [True, False])
def test_queue_finish_picks_the_status_from_the_result(sqlite_url, diverged):
    from zolab.db.models import JobStatus
    from zolab.platform.queue import JobQueue

    make_jobs(sqlite_url, 1, {"steps": 3})
    q = JobQueue(sqlite_url)
    claim = q.claim("w")
    result = {"accuracy": 0.5, "f1": 0.5, "steps": 2, "forward_passes": 4, "wall_time_s": 1.0, "gpu_hours": 0.0,
              "diverged": diverged, "extra": {"diverged_reason": "loss 1e5 > 10x 1.0"} if diverged else {}}
    got = q.finish(claim.job_id, "w", result)
    assert got is (JobStatus.DIVERGED if diverged else JobStatus.SUCCEEDED)
    job, res, _ = _job_and_result(sqlite_url)
    assert job.status == got.value and res.diverged is diverged


def test_status_summary_counts_diverged_as_finished():
    from zolab.cli.run_cmds import STATUS_STYLE, counts_line

    line = counts_line({"diverged": 1, "running": 1, "succeeded": 1, "queued": 2})
    assert line == "jobs: diverged 1, queued 2, running 1, succeeded 1 (finished 2 of 5)"
    assert counts_line({}) == "jobs: none"
    assert STATUS_STYLE["diverged"] not in {v for k, v in STATUS_STYLE.items() if k != "diverged"}  # its own colour
