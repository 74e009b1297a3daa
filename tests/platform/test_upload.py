"""Upload on SQLite and PostgreSQL: idempotent by content, unresolved refused, one transaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from zolab.db.models import Job
from zolab.db.repo import plans as repo
from zolab.db.session import session_scope
from zolab.platform.errors import PlanError
from zolab.platform.upload import prepare, upload_plan

FIX = Path(__file__).parent / "fixtures"
UNRESOLVED = """\
zolab: 1
name: with-unresolved
baseline: {model: tiny-opt, lr: 1.0e-3, steps: 5}
tasks: [synthetic-sentiment]
seeds: [1]
ablations:
  - name: eps
    ablated_part: perturbation scale
    action: REPLACE
    replacement: [0.01]
  - name: dropout
    ablated_part: dropout in the attention blocks
    action: REMOVE
"""


def _rows(url: str) -> dict[str, int]:
    with session_scope(url) as s:
        return repo.count_rows(s)


def test_upload_twice_gives_one_plan(db_url: str) -> None:
    first = upload_plan(FIX / "planner_001.md", url=db_url)
    assert first.created
    after_first = _rows(db_url)
    assert after_first == {"plans": 1, "ablations": 5, "variants": 8}
    second = upload_plan(FIX / "planner_001.md", url=db_url)
    assert (second.plan_id, second.created) == (first.plan_id, False)
    assert _rows(db_url) == after_first
    # the same plan content in another format is the same plan
    third = upload_plan(FIX / "eq-plan.md", baseline=FIX / "eq_baseline.yaml", url=db_url)
    fourth = upload_plan(FIX / "eq-plan.yaml", url=db_url)
    assert third.plan_id == fourth.plan_id != first.plan_id and not fourth.created


def test_stored_plan_ablations_and_variants(db_url: str) -> None:
    result = upload_plan(FIX / "planner_000.md", url=db_url)
    with session_scope(db_url) as s:
        plan = repo.get_plan(s, result.plan_id)
        assert plan.format == "markdown" and plan.source_text.startswith("<style>")
        assert repo.get_plan_by_hash(s, plan.content_hash).id == plan.id
        abl = repo.plan_ablations(s, result.plan_id)
        assert [(a.position, a.component, a.status) for a in abl] == [
            (0, "optimizer", "resolved"), (1, "in_place", "resolved"), (2, "peft", "inverted"),
            (3, "objective", "inverted"), (4, "prompt", "resolved")]
        assert abl[2].changes == [{"label": "peft=lora", "changes": {"peft": "lora"}},
                                  {"label": "peft=prefix", "changes": {"peft": "prefix"}}]
        variants = repo.plan_variants(s, result.plan_id)
        assert [v.label for v in variants][:3] == ["baseline", "method=fo-sgd", "method=fo-adam"]
        assert variants[0].is_baseline and variants[0].config["method"] == "mezo"
        assert "task" not in variants[0].config and "seed" not in variants[0].config
        assert variants[8].config["prompt"] is False


def test_unresolved_is_refused_and_nothing_written(db_url: str) -> None:
    with pytest.raises(PlanError) as err:
        upload_plan(UNRESOLVED, filename="u.yaml", url=db_url)
    assert "ablation 'dropout' is unresolved" in str(err.value)
    assert err.value.line == 12 and err.value.field == "ablations[1].ablated_part"
    assert _rows(db_url) == {"plans": 0, "ablations": 0, "variants": 0}


def test_allow_unresolved_stores_it_marked_and_unscheduled(db_url: str) -> None:
    result = upload_plan(UNRESOLVED, filename="u.yaml", url=db_url, allow_unresolved=True)
    with session_scope(db_url) as s:
        abl = repo.plan_ablations(s, result.plan_id)
        assert [a.status for a in abl] == ["resolved", "unresolved"]
        variants = repo.plan_variants(s, result.plan_id)
        assert all("dropout" not in v.ablations for v in variants)
        assert [v.label for v in variants] == ["baseline", "eps=0.01"]


def test_overrides_resolve_and_change_the_content_hash(db_url: str) -> None:
    plain = prepare(UNRESOLVED, filename="u.yaml")
    forced = prepare(UNRESOLVED, filename="u.yaml", overrides={"dropout": "prompt"})
    assert plain.content_hash != forced.content_hash
    result = upload_plan(UNRESOLVED, filename="u.yaml", url=db_url, overrides={"dropout": "prompt"})
    with session_scope(db_url) as s:
        abl = repo.plan_ablations(s, result.plan_id)
        assert (abl[1].component, abl[1].status, abl[1].overridden) == ("prompt", "resolved", True)
    with pytest.raises(PlanError, match="override for unknown ablation 'nope'"):
        prepare(UNRESOLVED, filename="u.yaml", overrides={"nope": "eps"})
    with pytest.raises(PlanError, match="known: optimizer"):
        prepare(UNRESOLVED, filename="u.yaml", overrides={"dropout": "dropout"})


def test_list_plans_counts_jobs_by_status(db_url: str) -> None:
    a = upload_plan(FIX / "eq-plan.yaml", url=db_url)
    b = upload_plan(FIX / "planner_001.md", url=db_url)
    with session_scope(db_url) as s:
        variant = repo.plan_variants(s, a.plan_id)[0]
        for i, status in enumerate(["queued", "queued", "succeeded"]):
            s.add(Job(key=f"k{i}", plan_id=a.plan_id, variant_id=variant.id, task="t", seed=i,
                      config=variant.config, status=status))
    with session_scope(db_url) as s:
        listed = repo.list_plans(s)
    assert [p.id for p in listed] == [b.plan_id, a.plan_id]
    assert listed[1].job_counts == {"queued": 2, "succeeded": 1} and listed[1].n_jobs == 3
    assert listed[0].job_counts == {} and (listed[0].n_ablations, listed[0].n_variants) == (5, 8)


def test_concurrent_uploads_of_the_same_plan_store_it_once(db_url: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    text = (FIX / "planner_000.md").read_text(encoding="utf-8")
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: upload_plan(text, filename="p.md", url=db_url), range(4)))
    assert len({r.plan_id for r in results}) == 1
    assert sum(r.created for r in results) == 1
    assert _rows(db_url) == {"plans": 1, "ablations": 5, "variants": 9}
