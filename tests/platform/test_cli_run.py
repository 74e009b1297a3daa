"""``zolab run|status|leaderboard|cancel|retry|worker|demo`` through the real CLI app."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from zolab.cli import app
from zolab.db.repo import jobs as repo
from zolab.db.session import session_scope

ROOT = Path(__file__).resolve().parents[2]
PLAN = """\
zolab: 1
name: cli-plan
baseline: {method: mezo, model: tiny-opt, steps: 3, checkpoint_every: 2, device: cpu}
tasks: [synthetic-sentiment]
seeds: [1, 2]
budget: {gpu_hours: %s}
ablations:
  - {name: bigger eps, ablated_part: perturbation scale, action: REPLACE, replacement: [1.0e-2]}
"""


@pytest.fixture
def cli(sqlite_url, monkeypatch, tmp_path):
    monkeypatch.setenv("ZOLAB_RUNNER", "tests.platform._runners:instant")  # inherited by worker processes
    from zolab.cli import common

    monkeypatch.setattr(common.console, "_width", 200)  # wide tables: labels on one line whatever ran before
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, list(args))

    return invoke


def _plan(tmp_path, budget="10") -> str:
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN % budget)
    return str(path)


def _jobs(url):
    with session_scope(url) as s:
        return repo.jobs_of_plan(s)


def test_dry_run_prints_jobs_totals_and_verdict_and_enqueues_nothing(cli, sqlite_url, tmp_path):
    res = cli("run", _plan(tmp_path), "--dry-run")
    assert res.exit_code == 0, res.output
    assert "4 jobs = 2 variants x 1 tasks x 2 seeds" in res.output
    assert "eps=0.01" in res.output and "bigger eps" in res.output
    assert "within budget: estimated" in res.output and "CPU-hours on this machine of 10.000" in res.output
    assert _jobs(sqlite_url) == []


def test_over_budget_is_refused_and_force_runs_it(cli, sqlite_url, tmp_path):
    plan = _plan(tmp_path, budget="1.0e-9")
    res = cli("run", plan, "--no-progress")
    assert res.exit_code == 1
    assert "OVER budget" in res.output and "exceeds the plan's budget" in res.output and "--force" in res.output
    assert _jobs(sqlite_url) == []
    res = cli("run", plan, "--force", "--workers", "2", "--no-progress")
    assert res.exit_code == 0, res.output
    assert "enqueued 4 new jobs (0 already known)" in res.output
    assert [j.status for j in _jobs(sqlite_url)] == ["succeeded"] * 4
    assert "leaderboard: plan 1" in res.output and "jobs: succeeded 4" in res.output


def test_status_cancel_retry_leaderboard(cli, sqlite_url, tmp_path):
    assert cli("run", _plan(tmp_path), "--dry-run").exit_code == 0
    from zolab.platform.scheduler import schedule

    schedule(sqlite_url, 1)
    res = cli("status", "1")
    assert res.exit_code == 0 and res.output.count("queued") >= 4 and "jobs: queued 4" in res.output
    assert cli("cancel", "2").exit_code == 0
    again = cli("cancel", "2")
    assert again.exit_code == 1 and "cannot go from cancelled to cancelled" in again.output
    assert "jobs: cancelled 1, queued 3" in cli("status", "cli-plan").output
    assert cli("retry", "2").exit_code == 0
    assert cli("retry", "999").exit_code == 1
    res = cli("worker")
    assert res.exit_code == 0 and "4 succeeded" in res.output
    board = cli("leaderboard", "1")
    assert board.exit_code == 0 and "baseline" in board.output and "eps=0.01" in board.output
    assert cli("leaderboard", "nope").exit_code == 1


def test_worker_follow_waits_for_new_jobs(sqlite_url, tmp_path):
    from tests.platform._factories import make_jobs

    env = dict(os.environ, ZOLAB_DB=sqlite_url, ZOLAB_RUNNER="tests.platform._runners:instant",
               PYTHONPATH=str(ROOT), CUDA_VISIBLE_DEVICES="")
    proc = subprocess.Popen([sys.executable, "-m", "zolab.platform.worker", "--follow", "--poll-seconds", "0.2"],
                            env=env, cwd=ROOT)
    try:
        time.sleep(3)
        assert proc.poll() is None  # empty queue: still waiting
        make_jobs(sqlite_url, 2, {"steps": 1})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(j.status != "succeeded" for j in _jobs(sqlite_url)):
            time.sleep(0.2)
        assert [j.status for j in _jobs(sqlite_url)] == ["succeeded"] * 2
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.slow
def test_demo_runs_quickstart_end_to_end(tmp_path):
    """`zolab demo` on a fresh directory: real tiny MeZO runs, an Optuna stage with pruning, a leaderboard
    with at least one paired contrast whose interval excludes 0, under 10 minutes (about 1-3 on 2 cores)."""
    env = {k: v for k, v in os.environ.items() if k not in ("ZOLAB_DB", "ZOLAB_RUNNER")}
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "zolab", "demo"], cwd=tmp_path, env=dict(env, PYTHONPATH=str(ROOT)),
                         capture_output=True, text=True, timeout=600, check=False)
    elapsed = time.monotonic() - t0
    assert out.returncode == 0, out.stdout + out.stderr
    assert "synthetic-sentiment" in out.stdout and "Optuna studies" in out.stdout and "demo finished in" in out.stdout
    assert (tmp_path / "zolab-demo.db").exists()
    url = f"sqlite:///{tmp_path / 'zolab-demo.db'}"
    from zolab.platform import tuning
    from zolab.platform.leaderboard import load_board

    with session_scope(url) as s:
        jobs = repo.jobs_of_plan(s, 1)
    finals = [j for j in jobs if j.stage == "final"]
    trials = [j for j in jobs if j.stage == "tune"]
    assert len(finals) == 4 * 3 and {j.status for j in finals} == {"succeeded"}  # nothing diverged
    assert len(trials) == 3 * 4  # 3 trained variants x a 4-point grid (zero-shot is not tuned)
    # a trial whose lr blew the loss up ends diverged (a failed trial of its study); none is left running
    assert {j.status for j in trials} <= {"succeeded", "cancelled", "diverged"}
    assert any((j.error or "").startswith("pruned at step") for j in trials)  # the median pruner stopped some
    studies = tuning.status(url, 1)
    assert len(studies) == 3 and all(st.finished and st.complete >= 1 for st in studies)
    tb = load_board(url, 1).task("synthetic-sentiment")
    contrasts = {r.label: r.cells["accuracy"].delta for r in tb.rows if not r.is_baseline}
    # trained beats untrained on average; with 3 seeds its interval may or may not exclude 0 (zero-shot accuracy
    # of the tiny random model swings 30-70 % by seed), so significance is asserted for fo-adam only
    assert contrasts["zero-shot"].mean < 0
    assert contrasts["method=fo-adam"].excludes_zero and contrasts["method=fo-adam"].mean > 0
    print(f"\ndemo took {elapsed:.0f} s")


def test_demo_passes_run_every_option_it_has(monkeypatch, tmp_path):
    """``demo`` calls ``run_cmd`` as a function: an option it forgets arrives as typer's OptionInfo
    default and fails at run time ("'OptionInfo' object is not iterable"), which only the slow demo
    test would see. Every parameter must be given, none as an OptionInfo."""
    import inspect

    import typer

    from zolab.cli import demo_cmds, run_cmds, tune_cmds

    seen: dict = {}
    monkeypatch.setattr(demo_cmds, "run_cmd", lambda **kw: seen.update(kw))
    monkeypatch.setattr(demo_cmds, "tune_status_cmd", lambda **kw: None)
    res = CliRunner().invoke(app, ["demo", "--db", f"sqlite:///{tmp_path / 'd.db'}"])
    assert res.exit_code == 0, res.output
    assert set(seen) == set(inspect.signature(run_cmds.run_cmd).parameters)
    assert not any(isinstance(v, typer.models.OptionInfo) for v in seen.values())
    assert set(inspect.signature(tune_cmds.tune_status_cmd).parameters) == {"plan", "advance", "as_json", "db"}
