"""Executors: worker pinning/commands (local), GPU fractions and a real run on a local Ray instance."""

from __future__ import annotations

import sys

import pytest

from tests.platform._factories import make_jobs
from zolab import config
from zolab.db.repo import jobs as repo
from zolab.db.session import session_scope
from zolab.platform.executors.local import run_local, snapshot, worker_command, worker_env
from zolab.platform.executors.ray import gpu_fraction


def test_workers_are_pinned_round_robin_or_hidden_from_gpus():
    assert [worker_env(i, 2, {})["CUDA_VISIBLE_DEVICES"] for i in range(5)] == ["0", "1", "0", "1", "0"]
    assert worker_env(3, 0, {})["CUDA_VISIBLE_DEVICES"] == ""
    cmd = worker_command("sqlite:///x.db", plan_id=3, runner="m:f", lease_s=5)
    assert cmd[:3] == [sys.executable, "-m", "zolab.platform.worker"]
    assert cmd[3:] == ["--db", "sqlite:///x.db", "--plan", "3", "--runner", "m:f", "--lease-seconds", "5"]


def test_gpu_fraction_from_memory_estimates():
    gib = 2**30
    assert gpu_fraction(3 * gib, 80 * gib) == 0.05      # tiny MeZO jobs: 20 per GPU
    assert gpu_fraction(9 * gib, 80 * gib) == 0.15
    assert gpu_fraction(200 * gib, 80 * gib) == 1.0     # never more than one GPU per worker
    assert gpu_fraction(None, 80 * gib) == 1.0          # unknown: a whole GPU


def test_local_executor_reports_progress_and_eta(sqlite_url):
    plan_id, _ = make_jobs(sqlite_url, 6, {"steps": 2}, est_step_seconds=0.5, progress_total=2)
    before = snapshot(sqlite_url, plan_id, workers=2)
    assert before.counts == {"queued": 6} and before.eta_s == pytest.approx(6 * 2 * 0.5 / 2)
    ticks = []
    final = run_local(sqlite_url, 2, plan_id=plan_id, runner="tests.platform._runners:instant",
                      show_progress=False, poll_s=0.2, on_tick=ticks.append)
    assert final.counts == {"succeeded": 6} and final.eta_s == 0
    assert ticks and ticks[-1].counts == {"succeeded": 6}


@pytest.mark.slow
def test_quickstart_through_ray_writes_one_result_per_job(sqlite_url):
    """The real quickstart plan (real tiny MeZO runs) through `zolab run --executor ray` on a local Ray
    instance: as many results as the plan has jobs, as the local executor writes (see the demo test)."""
    from typer.testing import CliRunner

    from zolab.cli import app
    from zolab.platform.scheduler import expand

    res = CliRunner().invoke(app, ["run", str(config.ABLATIONS_DIR / "quickstart.yaml"), "--executor", "ray",
                                   "--workers", "2", "--no-progress"])
    assert res.exit_code == 0, res.output
    n_jobs = len(expand(sqlite_url, 1).jobs)
    with session_scope(sqlite_url) as s:
        jobs = repo.jobs_of_plan(s, 1)
        pruned = [j for j in jobs if (j.error or "").startswith("pruned at step")]  # tuning trials stopped early
        assert len(jobs) == n_jobs == 24 and repo.count_results(s, 1) == n_jobs - len(pruned)
        assert all(j.attempts == 1 for j in jobs if j not in pruned)
        assert all(j.status == "succeeded" for j in jobs if j not in pruned and j.stage == "final")
        # a tuning trial whose settings blew the loss up ends diverged, with its result kept
        assert all(j.status in ("succeeded", "diverged") for j in jobs if j not in pruned and j.stage == "tune")


@pytest.mark.slow
def test_ray_executor_shows_live_progress_from_the_queue(sqlite_url):
    """Ray tasks drain the queue while the driver shows the same live display as the local executor."""
    import io

    from rich.console import Console

    from zolab.platform.executors.ray import run_ray

    plan_id, _ = make_jobs(sqlite_url, 6, {"steps": 2, "task_options": {"sleep": 0.3}})
    ticks = []
    out = io.StringIO()
    final = run_ray(sqlite_url, 2, plan_id=plan_id, runner="tests.platform._runners:instant", show_progress=True,
                    poll_s=0.2, console=Console(file=out, force_terminal=False, width=120), on_tick=ticks.append)
    assert final.counts == {"succeeded": 6}
    assert ticks[-1].counts == {"succeeded": 6}
    assert any(t.counts.get("running", 0) + t.counts.get("queued", 0) > 0 for t in ticks[:-1])   # watched live
    assert "6/6 jobs" in out.getvalue() and "done 6" in out.getvalue()
