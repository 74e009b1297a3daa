"""A plan's estimate: the same in the preview and once stored, recalibration stated, launch confirmation rules."""

from __future__ import annotations

import uuid

import pytest
from typer.testing import CliRunner

from zolab import config
from zolab.cli import app, common
from zolab.db.models import Job, Plan, Result, Variant
from zolab.db.repo import jobs as jobs_repo
from zolab.db.session import session_scope
from zolab.platform import estimates
from zolab.platform.scheduler import CONFIRM_ABOVE_GPU_HOURS, expand, expand_prepared, schedule
from zolab.platform.upload import prepare, store
from zolab.runners.config import RunConfig

QUICKSTART = config.ABLATIONS_DIR / "quickstart.yaml"
BIG = """\
zolab: 1
name: big-no-budget
baseline: {method: mezo, model: tiny-opt, steps: %d, eval_every: 1000000, checkpoint_every: 1000000}
tasks: [synthetic-sentiment]
seeds: [1]
ablations:
  - {name: bigger eps, ablated_part: perturbation scale, action: REPLACE, replacement: [1.0e-2]}
"""


def _finished_runs(url: str, cfg: RunConfig, n: int, wall_s: float) -> None:
    """n finished results of ``cfg`` on CPU (another plan): what recalibration learns from."""
    with session_scope(url) as s:
        plan = Plan(name="past", format="yaml", source_text="", content_hash=uuid.uuid4().hex, plan_json={})
        s.add(plan)
        s.flush()
        v = Variant(plan_id=plan.id, label="baseline", is_baseline=True, config=cfg.to_dict(),
                    config_hash=uuid.uuid4().hex[:16])
        s.add(v)
        s.flush()
        for i in range(n):
            job = Job(key=f"past-{uuid.uuid4().hex}", plan_id=plan.id, variant_id=v.id, task=cfg.task, seed=i,
                      config=cfg.replace(seed=i).to_dict(), status="succeeded")
            s.add(job)
            s.flush()
            s.add(Result(job_id=job.id, plan_id=plan.id, variant_id=v.id, task=cfg.task, seed=i, accuracy=0.5,
                         f1=0.5, steps=cfg.steps, forward_passes=1, wall_time_s=wall_s, gpu_hours=0.0,
                         device="cpu"))


def test_preview_equals_stored_plan_and_says_why_it_moves(sqlite_url):
    """Before: the upload preview used no past runs and a fixed CPU device, the stored plan learned from
    every finished run, so one plan showed 0.049 / 0.019 / 0.037 h as runs finished, without a word."""
    prepared = prepare(QUICKSTART, filename=str(QUICKSTART))
    base = RunConfig.from_dict({**prepared.variants[0].config, "task": "synthetic-sentiment", "seed": 1})
    predicted = estimates.job_seconds(base, estimates.CPU_CARD)
    _finished_runs(sqlite_url, base, 3, wall_s=0.5 * predicted)
    preview = expand_prepared(sqlite_url, prepared)
    stored = expand(sqlite_url, store(prepared, url=sqlite_url).plan_id)
    assert preview.total_hours == pytest.approx(stored.total_hours, rel=1e-12)
    finals = len(prepared.variants) * len(prepared.plan.tasks) * len(prepared.plan.seeds)
    assert len(preview.jobs) == len(stored.jobs) >= finals      # + the quickstart's Optuna trials
    def same(jobs):  # ids differ (a preview numbers variants by position), the jobs do not
        return [(j.variant_label, j.key.split(":", 2)[2]) for j in jobs]

    assert same(preview.jobs) == same(stored.jobs)
    assert preview.estimate_label == stored.estimate_label == "CPU-hours on this machine"
    assert "recalibrated from 3 finished runs: x0.5" in stored.estimate_note
    assert preview.estimate_note == stored.estimate_note
    # more finished runs: the number moves, and the note says from what
    _finished_runs(sqlite_url, base, 3, wall_s=2.0 * predicted)
    later = expand(sqlite_url, stored.plan_id)
    assert later.total_hours != pytest.approx(stored.total_hours)
    assert "recalibrated from 6 finished runs" in later.estimate_note


def test_hub_model_plan_defaults_to_h100_gpu_hours(sqlite_url, monkeypatch):
    monkeypatch.setattr(estimates, "local_card", lambda: None)
    path = config.ABLATIONS_DIR / "seed-000-mezo.yaml"
    exp = expand(sqlite_url, store(prepare(path, filename=str(path)), url=sqlite_url).plan_id)
    assert exp.device == "gpu" and exp.estimate_label == "H100 GPU-hours"
    assert "GPU estimates by default for facebook/opt-1.3b" in exp.estimate_note
    assert "calibrated to reference-style MeZO step" in exp.estimate_note
    assert 40 < exp.total_hours < 400            # 90 jobs of 20k steps at ~0.13-0.19 s a step
    cpu = expand(sqlite_url, exp.plan_id, device="cpu")
    assert cpu.estimate_label == "CPU-hours on this machine" and cpu.total_hours > 10 * exp.total_hours
    a100 = expand(sqlite_url, exp.plan_id, card="A100")
    assert a100.estimate_label == "A100 GPU-hours" and a100.total_hours > exp.total_hours


def test_launch_needs_confirmation_over_budget_or_above_10_gpu_hours(sqlite_url, monkeypatch):
    monkeypatch.setattr(estimates, "local_card", lambda: None)
    small = store(prepare((BIG % 10).encode(), filename="small.yaml"), url=sqlite_url).plan_id
    check = expand(sqlite_url, small, device="gpu").launch_check()
    assert not check.needs_confirmation and "no budget set" in check.reason
    big = store(prepare((BIG % 10**8).encode(), filename="big.yaml"), url=sqlite_url).plan_id
    exp = expand(sqlite_url, big, device="gpu")
    assert exp.gpu_hours > CONFIRM_ABOVE_GPU_HOURS and exp.budget_gpu_hours is None
    check = exp.launch_check()
    assert check.needs_confirmation and "sets no budget" in check.reason and "H100 GPU-hours" in check.reason
    with pytest.raises(Exception, match="use --force"):
        schedule(sqlite_url, big, device="gpu")
    with session_scope(sqlite_url) as s:
        assert jobs_repo.jobs_of_plan(s, big) == []
    assert len(schedule(sqlite_url, big, device="gpu", force=True).created) == 2
    # the same hours on CPU are CPU-hours: the 10 GPU-hour rule does not apply to them
    assert not expand(sqlite_url, small, device="cpu").launch_check().needs_confirmation


@pytest.fixture
def cli(sqlite_url, monkeypatch):
    monkeypatch.setenv("ZOLAB_RUNNER", "tests.platform._runners:instant")
    monkeypatch.setattr(common.console, "_width", 250)
    monkeypatch.setattr(estimates, "local_card", lambda: None)
    return lambda *a: CliRunner().invoke(app, list(a))


def test_cli_dry_run_names_card_and_basis_and_refuses_without_force(cli, sqlite_url, tmp_path):
    res = cli("run", str(config.ABLATIONS_DIR / "seed-000-mezo.yaml"), "--dry-run")
    assert res.exit_code == 0, res.output
    assert "estimates in H100 GPU-hours" in res.output and "est. H100 GPU-hours" in res.output
    assert "(a hub model) on this machine without a GPU" in res.output and "fwd/step" in res.output
    res = cli("run", str(config.ABLATIONS_DIR / "seed-000-mezo.yaml"), "--dry-run", "--card", "A100")
    assert res.exit_code == 0 and "A100 GPU-hours" in res.output
    assert cli("run", "1", "--dry-run", "--card", "TPU").exit_code == 1
    plan = tmp_path / "big.yaml"
    plan.write_text(BIG % 10**8)
    refused = cli("run", str(plan), "--estimate-for", "gpu", "--no-progress")
    assert refused.exit_code == 1 and "use --force" in refused.output and "sets no budget" in refused.output
    with session_scope(sqlite_url) as s:
        assert len(jobs_repo.jobs_of_plan(s)) == 0
