"""Plan -> jobs: seed plans' counts, duplicate variants merged, no-op ablations without jobs,
idempotent enqueue, estimates on the jobs and the budget check."""

from __future__ import annotations

import pytest

from zolab import config
from zolab.db.repo import jobs as repo
from zolab.db.session import session_scope
from zolab.platform.scheduler import BudgetExceeded, expand, job_key, schedule
from zolab.platform.upload import upload_plan

DUPES = """\
zolab: 1
name: dedup
baseline: {method: mezo, model: tiny-opt, steps: 10, device: cpu}
tasks: [synthetic-sentiment, other-task]
seeds: [1, 2, 3]
budget: {gpu_hours: %s}
ablations:
  - {name: eps sweep, ablated_part: perturbation scale, action: REPLACE, replacement: [1.0e-2, 1.0e-1]}
  - {name: bigger eps again, ablated_part: perturbation scale, action: REPLACE, replacement: [1.0e-2]}
"""


def _upload(url: str, name: str) -> int:
    path = config.ABLATIONS_DIR / name
    return upload_plan(path, filename=str(path), url=url).plan_id


def test_seed_plan_000_expands_to_9_variants_and_90_jobs(sqlite_url):
    exp = expand(sqlite_url, _upload(sqlite_url, "seed-000-mezo.yaml"), device="gpu")
    labels = sorted(v.label for v in exp.variants)
    assert len(exp.variants) == 9 and len(exp.tasks) * len(exp.seeds) == 10 and len(exp.jobs) == 90
    assert {"baseline", "method=fo-sgd", "method=fo-adam", "in_place=false", "peft=lora", "peft=prefix",
            "objective=accuracy", "objective=f1", "prompt=false"} == set(labels)
    assert exp.skipped == []
    assert len({j.key for j in exp.jobs}) == 90
    # MeZO on a 1.3B model needs about its fp weights; FO-Adam several times more
    by_label = {j.variant_label: j.estimate.memory_bytes for j in exp.jobs}
    assert by_label["method=fo-adam"] > 3 * by_label["baseline"]
    assert exp.total_gpu_hours > 0 and exp.budget_gpu_hours == 400


def test_seed_plan_001_skips_the_no_op_with_its_reason(sqlite_url):
    plan_id = _upload(sqlite_url, "seed-001-mezo.yaml")
    exp = expand(sqlite_url, plan_id, device="gpu")
    assert len(exp.variants) == 8 and len(exp.jobs) == 8 * 10
    (skipped,) = exp.skipped
    assert skipped.status == "no_op" and "Layer-Wise" in skipped.name and skipped.reason
    served = {a for v in exp.variants for a in v.ablations}
    assert skipped.name not in served  # no variant, hence no job, runs the no-op
    report = schedule(sqlite_url, plan_id, force=True, device="gpu")
    assert len(report.created) == 80


def test_duplicate_variants_merge_and_enqueue_is_idempotent(db_url):
    plan_id = upload_plan(DUPES % 1000, filename="dedup.yaml", url=db_url).plan_id
    exp = expand(db_url, plan_id, device="cpu")
    variants = {v.label: v for v in exp.variants}
    assert sorted(variants) == ["baseline", "eps=0.01", "eps=0.1"]
    assert sorted(variants["eps=0.01"].ablations) == ["bigger eps again", "eps sweep"]
    assert len(exp.jobs) == 3 * 2 * 3
    first = schedule(db_url, plan_id)
    again = schedule(db_url, plan_id)
    assert (len(first.created), first.existing) == (18, 0)
    assert (len(again.created), again.existing) == (0, 18)
    with session_scope(db_url) as s:
        jobs = repo.jobs_of_plan(s, plan_id)
    assert len(jobs) == 18
    j = jobs[0]
    assert j.key == job_key(plan_id, j.variant_id, j.task, j.seed)
    assert j.config["task"] == j.task and j.config["seed"] == j.seed and j.config["steps"] == 10
    assert j.est_memory_bytes > 0 and j.est_gpu_hours > 0 and j.est_step_seconds > 0
    assert j.status == "queued" and j.progress_total == 10


def test_budget_refusal_writes_nothing_and_force_runs(sqlite_url):
    plan_id = upload_plan(DUPES % 1e-9, filename="dedup.yaml", url=sqlite_url).plan_id
    with pytest.raises(BudgetExceeded, match="CPU-hours on this machine exceeds the plan's budget of 0.00"):
        schedule(sqlite_url, plan_id)
    with session_scope(sqlite_url) as s:
        assert repo.jobs_of_plan(s, plan_id) == []
    assert not expand(sqlite_url, plan_id).within_budget
    assert len(schedule(sqlite_url, plan_id, force=True).created) == 18


def test_final_jobs_use_the_tuned_params_of_their_task(sqlite_url):
    from zolab.db.models import Variant

    plan_id = upload_plan(DUPES % 1000, filename="dedup.yaml", url=sqlite_url).plan_id
    with session_scope(sqlite_url) as s:
        base = s.query(Variant).filter_by(plan_id=plan_id, is_baseline=True).one()
        base.tuned_params = {"synthetic-sentiment": {"lr": 0.5, "eps": 0.02}}
    jobs = [j for j in expand(sqlite_url, plan_id).jobs if j.variant_label == "baseline"]
    tuned = {(j.config["lr"], j.config["eps"]) for j in jobs if j.task == "synthetic-sentiment"}
    untouched = {(j.config["lr"], j.config["eps"]) for j in jobs if j.task == "other-task"}
    assert tuned == {(0.5, 0.02)} and untouched == {(1e-6, 1e-3)}
