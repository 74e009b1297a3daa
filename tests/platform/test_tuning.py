"""Optuna tuning (issue 5 item 5): one study per variant x task, tune jobs, median pruning, final jobs
with the study's best params; on SQLite (journal file) and PostgreSQL (RDB storage, schema optuna).

The default tests run the real worker loop in-process with a run function whose dev accuracy is a
known function of lr and eps (best near lr=1e-2, eps=1e-3; lr above 1 collapses below chance), so
which trials must be pruned and which params must win is checkable. The slow test runs the real
MeZO runner on the tiny model.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from zolab.db.models import JobStage, JobStatus, Variant
from zolab.db.repo import jobs as jobs_repo
from zolab.db.session import get_engine, session_scope
from zolab.platform import tuning
from zolab.platform.scheduler import expand, schedule
from zolab.platform.upload import upload_plan
from zolab.platform.worker import Worker
from zolab.runners.config import RunConfig
from zolab.runners.reporter import Checkpoint, Reporter, Result

PLAN = """\
zolab: 1
name: tune-test
baseline:
  method: mezo
  model: tiny-opt
  lr: 1.0e-6
  eps: 1.0e-3
  steps: 40
  eval_every: 10
  device: cpu
tasks: [synthetic-sentiment]
seeds: [7, 8]
tuning:
  trials: 6
  sampler: tpe
  pruner: median
  steps: 12
  space:
    lr:  {low: 1.0e-4, high: 1.0e+3, log: true}   # deliberately bad above lr = 1: dev accuracy collapses
    eps: {low: 1.0e-5, high: 1.0e-1, log: true}
ablations:
  - name: More sampled directions
    ablated_part: number of sampled directions
    action: REPLACE
    replacement: [4]
"""


def dev_accuracy(config: RunConfig, step: int) -> float:
    """Known curve: climbs toward a ceiling that peaks at lr=1e-2, eps=1e-3; lr > 1 falls to 0.3."""
    if config.lr > 1.0:
        return 0.5 - 0.2 * step / config.steps
    quality = max(0.0, 1 - abs(math.log10(config.lr) + 2) / 4) * max(0.0, 1 - abs(math.log10(config.eps) + 3) / 6)
    return 0.5 + 0.45 * quality * step / config.steps


def curve_runner(config: RunConfig, reporter: Reporter, resume: Checkpoint | None = None) -> Result:
    """The runner's signature and reporting pattern (zero-shot dev eval at step 0, then every eval_every)."""
    reporter.metric(0, "dev_accuracy", 0.5)
    acc = 0.5
    for step in range(1, config.steps + 1):
        reporter.progress(step, config.steps, 1.0 / step)
        if step % config.eval_every == 0 or step == config.steps:
            acc = dev_accuracy(config, step)
            reporter.metric(step, "dev_accuracy", acc)
    return Result(accuracy=acc, f1=acc, steps=config.steps, forward_passes=2 * config.steps, wall_time_s=0.01,
                  gpu_hours=0.0, dev_accuracy=acc)


@pytest.fixture
def tune_db(db_url: str):
    """The test DB; afterwards Optuna's PostgreSQL schema is dropped (the conftest reuses databases
    by their public schema only) and cached storages are closed."""
    yield db_url
    tuning.dispose_storages()
    if db_url.startswith("postgresql"):
        from sqlalchemy.schema import DropSchema

        with get_engine(db_url).begin() as conn:
            conn.execute(DropSchema(tuning.OPTUNA_SCHEMA, cascade=True, if_exists=True))


def _upload(url: str, text: str = PLAN) -> int:
    return upload_plan(text, filename="tune.yaml", url=url).plan_id


def _jobs(url: str, plan_id: int):
    with session_scope(url) as s:
        return jobs_repo.jobs_of_plan(s, plan_id)


def _variants(url: str, plan_id: int) -> dict[int, Variant]:
    with session_scope(url) as s:
        return {v.id: v for v in jobs_repo.plan_parts(s, plan_id)[2]}


def _study(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=tuning.storage_for(url))


def test_dry_run_lists_trials_x_variants_x_tasks_then_final_seeds(tune_db):
    plan_id = _upload(tune_db)
    exp = expand(tune_db, plan_id, device="cpu")
    tune = [j for j in exp.jobs if j.stage == JobStage.TUNE.value]
    final = [j for j in exp.jobs if j.stage == JobStage.FINAL.value]
    assert len(exp.variants) == 2
    assert len(tune) == 6 * 2 * 1 and len(final) == 2 * 1 * 2
    assert {j.seed for j in tune} == {7}                     # the plan's first seed
    assert {j.config["steps"] for j in tune} == {12}         # tuning.steps, not the baseline's 40
    assert {j.config["eval_every"] for j in tune} == {3}     # at least MIN_EVALS evals for the pruner
    assert all(j.key.endswith(f":tune:t{n}") for n in range(6) for j in tune[n::6])
    assert sum(j.estimate.gpu_hours for j in tune) < sum(j.estimate.gpu_hours for j in final) * 6 * 2 / 2
    assert _jobs(tune_db, plan_id) == []                     # expand writes nothing


def test_tuning_prunes_bad_trials_and_runs_finals_with_best_params(tune_db):
    plan_id = _upload(tune_db)
    report = schedule(tune_db, plan_id)
    first = _jobs(tune_db, plan_id)
    # two studies, each asked DEFAULT_PARALLEL trials up front (TPE learns from finished ones later)
    assert len(report.created) == 2 * tuning.DEFAULT_PARALLEL
    assert {j.stage for j in first} == {JobStage.TUNE.value}

    stats = Worker(tune_db, runner=curve_runner, lease_s=30, poll_s=0.01).run()

    jobs = _jobs(tune_db, plan_id)
    variants = _variants(tune_db, plan_id)
    assert len(jobs) == 2 * (6 + 2)
    assert stats.pruned >= 1
    pruned_bad = 0
    for vid, variant in variants.items():
        name = tuning.study_name(plan_id, vid, "synthetic-sentiment")
        study = _study(tune_db, name)
        trials = study.get_trials()
        assert len(trials) == 6 and all(t.state.is_finished() for t in trials)
        assert study.user_attrs["variant_id"] == vid and study.user_attrs["pruner"]["kind"] == "median"
        tune = {j.trial_number: j for j in jobs if j.variant_id == vid and j.stage == JobStage.TUNE.value}
        assert sorted(tune) == list(range(6))
        for t in trials:
            job = tune[t.number]
            assert job.study_name == name and job.seed == 7 and job.config["steps"] == 12
            assert (job.config["lr"], job.config["eps"]) == (t.params["lr"], t.params["eps"])
            assert job.config["n_samples"] == variant.config["n_samples"]
            if t.state == TrialState.PRUNED:
                step = max(t.intermediate_values)
                assert job.status == JobStatus.CANCELLED.value and job.attempts == 1
                assert job.error == f"pruned at step {step} by the median pruner"
                # the median rule, checked independently: its best value so far was below the median
                # of the completed trials at that step
                done = [u.intermediate_values[step] for u in trials
                        if u.state == TrialState.COMPLETE and step in u.intermediate_values and u.number < t.number]
                assert max(t.intermediate_values.values()) < statistics.median(done)
                pruned_bad += t.params["lr"] > 1.0
            else:
                assert t.state == TrialState.COMPLETE and job.status == JobStatus.SUCCEEDED.value
                assert t.value == pytest.approx(dev_accuracy(RunConfig.from_dict(job.config), 12))
        best = study.best_params
        assert best["lr"] <= 1.0
        assert variant.tuned_params == {"synthetic-sentiment": best}
        finals = [j for j in jobs if j.variant_id == vid and j.stage == JobStage.FINAL.value]
        assert sorted(j.seed for j in finals) == [7, 8]
        for j in finals:
            assert {k: j.config[k] for k in best} == best            # the study's best params...
            assert j.config["steps"] == 40 and j.config["eval_every"] == 10  # ...on the full run
            assert j.status == JobStatus.SUCCEEDED.value
    assert pruned_bad >= 1                                        # a trial in the bad range was pruned
    # idempotent: running the plan again or advancing again adds nothing
    assert schedule(tune_db, plan_id).created == []
    assert tuning.advance(tune_db, plan_id).created == []
    assert len(_jobs(tune_db, plan_id)) == 2 * (6 + 2)


def test_advance_repairs_a_crash_between_ask_and_enqueue(tune_db):
    plan_id = _upload(tune_db)
    schedule(tune_db, plan_id)
    vid = min(_variants(tune_db, plan_id))
    name = tuning.study_name(plan_id, vid, "synthetic-sentiment")
    # a trial asked but its job never written (the process died in between)
    orphan = _study(tune_db, name).ask(tuning.distributions(tuning.settings_of(
        {"tasks": ["t"], "seeds": [1], "tuning": {"trials": 6, "space": {
            "lr": {"low": 1e-4, "high": 1e3, "log": True}, "eps": {"low": 1e-5, "high": 1e-1, "log": True}}}}).tuning))
    report = tuning.advance(tune_db, plan_id)
    assert len(report.created) == 1                       # exactly its job, no extra trial (3 in flight > 2)
    jobs = {j.trial_number: j for j in _jobs(tune_db, plan_id) if j.variant_id == vid}
    assert jobs[orphan.number].config["lr"] == orphan.params["lr"]
    assert tuning.advance(tune_db, plan_id).created == []
    assert len(_study(tune_db, name).trials) == 3


def test_a_trial_whose_job_failed_for_good_is_told_fail_and_the_next_is_asked(tune_db):
    plan_id = _upload(tune_db)
    schedule(tune_db, plan_id)
    from zolab.platform.queue import JobQueue

    q = JobQueue(tune_db)
    claim = q.claim("w1")
    q.fail(claim.job_id, "w1", "boom", retry=False)
    report = tuning.on_job_finished(tune_db, claim.job_id)
    assert report is not None and len(report.created) == 1   # the freed slot gets the next trial
    study = _study(tune_db, claim.study_name)
    assert study.trials[claim.trial_number].state == TrialState.FAIL
    assert tuning.on_job_finished(tune_db, claim.job_id).created == []  # told once, asked once


def test_storage_for_each_backend(tune_db, monkeypatch, tmp_path):
    storage = tuning.storage_for(tune_db)
    if tune_db.startswith("sqlite"):
        assert isinstance(storage, optuna.storages.JournalStorage)
        optuna.create_study(storage=storage, study_name="s")
        assert Path(tune_db.removeprefix("sqlite:///") + ".optuna.log").exists()
    else:
        assert isinstance(storage, optuna.storages.RDBStorage)
        optuna.create_study(storage=storage, study_name="s")
        from sqlalchemy import inspect

        assert "studies" in inspect(get_engine(tune_db)).get_table_names(schema=tuning.OPTUNA_SCHEMA)
        assert "studies" not in inspect(get_engine(tune_db)).get_table_names()  # zolab's schema untouched
    assert [s.study_name for s in optuna.get_all_study_summaries(tuning.storage_for(tune_db))] == ["s"]
    monkeypatch.setenv(tuning.STORAGE_ENV, str(tmp_path / "elsewhere.log"))
    assert optuna.get_all_study_summaries(tuning.storage_for(tune_db)) == []
    monkeypatch.delenv(tuning.STORAGE_ENV)
    with pytest.raises(tuning.TuningError, match="in-memory"):
        tuning.storage_for("sqlite:///:memory:")


@pytest.mark.parametrize(("block", "message"), [
    ("{trials: 3, metric: f1, space: {lr: {low: 1.0e-4, high: 1.0e-2}}}", "metric 'f1' is not supported"),
    ("{trials: 3, sampler: grid, space: {lr: {low: 1.0e-4, high: 1.0e-2}}}", "grid sampler needs choices"),
    ("{trials: 3}", "empty space"),
])
def test_tuning_blocks_that_cannot_run_are_refused_before_any_job(sqlite_url, block, message):
    text = PLAN.split("tuning:")[0] + f"tuning: {block}\nablations:" + PLAN.split("ablations:")[1]
    plan_id = _upload(sqlite_url, text)
    with pytest.raises(tuning.TuningError, match=message):
        schedule(sqlite_url, plan_id)
    assert _jobs(sqlite_url, plan_id) == []


def test_distributions_follow_runconfig_types():
    t = tuning.settings_of({"tasks": ["t"], "seeds": [1], "tuning": {"trials": 2, "space": {
        "lr": {"low": 1e-4, "high": 1e-2, "log": True}, "n_samples": {"low": 1, "high": 8},
        "peft": {"choices": ["none", "lora"]}}}}).tuning
    d = tuning.distributions(t)
    assert isinstance(d["lr"], optuna.distributions.FloatDistribution) and d["lr"].log
    assert isinstance(d["n_samples"], optuna.distributions.IntDistribution) and (d["n_samples"].low, d["n_samples"].high) == (1, 8)
    assert isinstance(d["peft"], optuna.distributions.CategoricalDistribution)


@pytest.mark.slow
def test_real_runner_tuning_on_the_tiny_model(tune_db):
    """The real runner (tiny OPT, first-order Adam so a few steps move dev accuracy): trials are
    real runs, lr far too high makes some diverge (loss blew up), fail (non-finite loss) or get pruned,
    a diverged trial is a failed trial of its study (never its best), and the final jobs run with the best params."""
    text = PLAN.replace("method: mezo", "method: fo-adam").replace("lr: 1.0e-6", "lr: 1.0e-2").replace(
        "steps: 40\n  eval_every: 10", "steps: 12\n  eval_every: 3\n  batch_size: 8\n  train_size: 64\n"
        "  dev_size: 32\n  test_size: 32\n  max_length: 32\n  checkpoint_every: 3").replace(
        # the number of sampled directions is a no-op for a first-order method (the resolver says so):
        # ablate something fo-adam has, so the plan still has two variants
        "ablated_part: number of sampled directions", "ablated_part: batch size")
    plan_id = _upload(tune_db, text)
    schedule(tune_db, plan_id)
    assert len(_variants(tune_db, plan_id)) == 2
    stats = Worker(tune_db, lease_s=60, poll_s=0.01).run()
    jobs = _jobs(tune_db, plan_id)
    assert len(jobs) == 2 * (6 + 2)
    assert stats.pruned + stats.failed + stats.diverged >= 1
    diverged = {(j.variant_id, j.trial_number) for j in jobs if j.status == JobStatus.DIVERGED.value}
    assert all(j.stage == JobStage.TUNE.value for j in jobs if j.status == JobStatus.DIVERGED.value)
    for vid, variant in _variants(tune_db, plan_id).items():
        study = _study(tune_db, tuning.study_name(plan_id, vid, "synthetic-sentiment"))
        assert len(study.trials) == 6 and all(t.state.is_finished() for t in study.trials)
        best = study.best_params
        assert all(study.trials[n].state == optuna.trial.TrialState.FAIL for v, n in diverged if v == vid)
        assert all((vid, t.number) not in diverged for t in study.trials if t.params == best)
        assert variant.tuned_params == {"synthetic-sentiment": best}
        finals = [j for j in jobs if j.variant_id == vid and j.stage == JobStage.FINAL.value]
        assert len(finals) == 2 and all({k: j.config[k] for k in best} == best for j in finals)
        assert all(j.status == JobStatus.SUCCEEDED.value for j in finals)


def test_tune_status_cli_shows_each_study(tune_db):
    from typer.testing import CliRunner

    from zolab.cli import app

    plan_id = _upload(tune_db)
    schedule(tune_db, plan_id)
    Worker(tune_db, runner=curve_runner, lease_s=30, poll_s=0.01).run()
    res = CliRunner().invoke(app, ["tune-status", str(plan_id), "--db", tune_db, "--json"])
    assert res.exit_code == 0, res.output
    import json

    rows = json.loads(res.output)
    assert len(rows) == 2 and all(r["asked"] == 6 and r["finished"] for r in rows)
    for r in rows:
        assert r["best_params"] == _study(tune_db, r["name"]).best_params
        assert r["complete"] + r["pruned"] + r["failed"] == 6
    res = CliRunner().invoke(app, ["tune-status", str(plan_id), "--db", tune_db])
    assert res.exit_code == 0 and f"plan {plan_id}: Optuna studies" in res.output
    assert CliRunner().invoke(app, ["tune-status", "999", "--db", tune_db]).exit_code == 1


GRID_PLAN = PLAN.replace("""  trials: 6
  sampler: tpe""", """  trials: 4
  sampler: grid""").replace("""    lr:  {low: 1.0e-4, high: 1.0e+3, log: true}   # deliberately bad above lr = 1: dev accuracy collapses
    eps: {low: 1.0e-5, high: 1.0e-1, log: true}""", """    lr:  {choices: [1.0e-2, 1.0e+2]}
    eps: {choices: [1.0e-3, 1.0e-1]}""").replace("seeds: [7, 8]\n", "seeds: [7, 8]\nzero_shot: true\n")


def test_grid_tuning_covers_the_grid_finishes_and_skips_the_zero_shot_row(tune_db):
    """The grid sampler under ask/tell: every grid point once, the study finishes (Optuna's own grid
    sampler called study.stop() from tell, which raises outside optimize, and left the last trials
    RUNNING with no final jobs), and the zero-shot row, which does not train, gets no study."""
    plan_id = _upload(tune_db, GRID_PLAN)
    variants = _variants(tune_db, plan_id)
    zero = next(v.id for v in variants.values() if v.config["steps"] == 0)
    planned = expand(tune_db, plan_id, device="cpu").jobs
    assert not [j for j in planned if j.variant_id == zero and j.stage == JobStage.TUNE.value]
    schedule(tune_db, plan_id)
    Worker(tune_db, runner=curve_runner, lease_s=30, poll_s=0.01).run()
    jobs = _jobs(tune_db, plan_id)
    assert {(j.stage, j.status) for j in jobs if j.variant_id == zero} == {("final", "succeeded")}
    assert len([j for j in jobs if j.variant_id == zero]) == 2
    names = {s.study_name for s in optuna.get_all_study_summaries(tuning.storage_for(tune_db))}
    assert tuning.study_name(plan_id, zero, "synthetic-sentiment") not in names
    trained = [vid for vid in variants if vid != zero]
    for vid in trained:
        study = _study(tune_db, tuning.study_name(plan_id, vid, "synthetic-sentiment"))
        trials = study.get_trials()
        assert len(trials) == 4 and all(t.state.is_finished() for t in trials)
        assert {(t.params["lr"], t.params["eps"]) for t in trials} == {
            (lr, eps) for lr in (1e-2, 1e2) for eps in (1e-3, 1e-1)}
        finals = [j for j in jobs if j.variant_id == vid and j.stage == JobStage.FINAL.value]
        assert sorted(j.seed for j in finals) == [7, 8] and {j.config["lr"] for j in finals} == {1e-2}
    assert [s.variant_id for s in tuning.status(tune_db, plan_id)] == trained
