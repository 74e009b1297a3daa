"""Upload on SQLite and PostgreSQL: idempotent by content, one transaction; an ablation the
resolver cannot settle is stored (with its candidates) and not run, never a refused plan."""

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
  - name: no optimizer
    ablated_part: the optimizer
    action: REMOVE
  - name: sizes
    ablated_part: step size and perturbation size
    action: REPLACE
    replacement: [0.01]
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


def test_strict_refuses_unsettled_ablations_and_writes_nothing(db_url: str) -> None:
    with pytest.raises(PlanError) as err:
        upload_plan(UNRESOLVED, filename="u.yaml", url=db_url, allow_unresolved=False)
    assert "ablation 'no optimizer' is unresolved" in str(err.value)
    assert err.value.line == 12 and err.value.field == "ablations[1].ablated_part"
    assert "ablation 'sizes' is ambiguous" in str(err.value) and "e.g. one of" in str(err.value)
    assert _rows(db_url) == {"plans": 0, "ablations": 0, "variants": 0}


def test_one_unreadable_ablation_uploads_with_the_rest_runnable(db_url: str) -> None:
    result = upload_plan(UNRESOLVED, filename="u.yaml", url=db_url)  # the default: stored, not run
    assert [line.split(" is ")[0] for line in result.prepared.not_run_lines()] == [
        "not run: 'no optimizer'", "not run: 'sizes'"]
    with session_scope(db_url) as s:
        abl = repo.plan_ablations(s, result.plan_id)
        assert [a.status for a in abl] == ["resolved", "unresolved", "ambiguous"]
        assert abl[0].candidates == [] and abl[1].changes == [] and abl[2].changes == []
        cands = abl[2].candidates
        assert [c["component"] for c in cands][:2] in (["lr", "eps"], ["eps", "lr"])
        assert {c["changes"][0]["label"] for c in cands[:2]} == {"lr=0.01", "eps=0.01"}
        assert all(set(c) == {"component", "score", "status", "changes", "why"} for c in cands)
        pending = repo.pending_ablations(s, result.plan_id)
        assert [(p.position, p.name, p.status) for p in pending] == [(1, "no optimizer", "unresolved"),
                                                                     (2, "sizes", "ambiguous")]
        assert pending[1].candidates == cands
        variants = repo.plan_variants(s, result.plan_id)
        assert all("sizes" not in v.ablations and "no optimizer" not in v.ablations for v in variants)
        assert [v.label for v in variants] == ["baseline", "eps=0.01"]
    from zolab.platform.scheduler import expand

    exp = expand(db_url, result.plan_id)
    assert {s.name: s.status for s in exp.skipped} == {"no optimizer": "unresolved", "sizes": "ambiguous"}
    assert len(exp.jobs) == 2  # baseline and eps=0.01 on one task x one seed


def test_overrides_resolve_and_change_the_content_hash(db_url: str) -> None:
    plain = prepare(UNRESOLVED, filename="u.yaml")
    forced = prepare(UNRESOLVED, filename="u.yaml", overrides={"sizes": "eps"})
    assert plain.content_hash != forced.content_hash
    by_number = prepare(UNRESOLVED, filename="u.yaml", overrides={"3": "eps"})  # NAME may be its number
    assert by_number.content_hash == forced.content_hash
    result = upload_plan(UNRESOLVED, filename="u.yaml", url=db_url, overrides={"sizes": "eps"})
    with session_scope(db_url) as s:
        abl = repo.plan_ablations(s, result.plan_id)
        assert (abl[2].component, abl[2].status, abl[2].overridden) == ("eps", "resolved", True)
        assert abl[2].candidates == [] and abl[2].changes == [{"label": "eps=0.01", "changes": {"eps": 0.01}}]
    with pytest.raises(PlanError, match="override for unknown ablation 'nope'"):
        prepare(UNRESOLVED, filename="u.yaml", overrides={"nope": "eps"})
    with pytest.raises(PlanError, match="override for unknown ablation '9'"):
        prepare(UNRESOLVED, filename="u.yaml", overrides={"9": "eps"})
    with pytest.raises(PlanError, match="known: optimizer"):
        prepare(UNRESOLVED, filename="u.yaml", overrides={"sizes": "flux"})


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
