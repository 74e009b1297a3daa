"""Test factories for the queue/worker tests: a stored plan with one variant and N jobs.

Built with the ORM directly (tests may; zolab code goes through ``zolab.db.repo``) so queue tests do
not depend on the plan parser. The scheduler tests use real uploaded plans instead.
"""

from __future__ import annotations

import uuid
from typing import Any

from zolab.db.models import Job, Plan, Variant
from zolab.db.session import session_scope
from zolab.platform.queue import JobQueue
from zolab.runners.config import RunConfig


def make_plan(url: str, config: dict[str, Any] | None = None, name: str = "test-plan") -> tuple[int, int]:
    """A plan with one baseline variant; returns (plan_id, variant_id)."""
    cfg = RunConfig(**(config or {})).to_dict()
    with session_scope(url) as s:
        plan = Plan(name=name, format="yaml", source_text="{}", content_hash=uuid.uuid4().hex,
                    plan_json={"name": name, "tasks": [cfg["task"]], "seeds": [cfg["seed"]]})
        s.add(plan)
        s.flush()
        variant = Variant(plan_id=plan.id, label="baseline", is_baseline=True, config=cfg,
                          config_hash=uuid.uuid4().hex[:16], ablations=[])
        s.add(variant)
        s.flush()
        return plan.id, variant.id


def make_jobs(url: str, n: int, config: dict[str, Any] | None = None, *, lease_s: float = 60.0,
              **job_fields: Any) -> tuple[int, list[int]]:
    """A plan with ``n`` queued jobs (seeds ``config["seed"]`` (default 0) + 0..n-1) through the real
    ``enqueue``; returns (plan_id, job ids)."""
    plan_id, variant_id = make_plan(url, config)
    base = RunConfig(**(config or {}))
    first = (config or {}).get("seed", 0)
    jobs = [
        Job(key=f"p{plan_id}:v{variant_id}:{base.task}:s{seed}:final", plan_id=plan_id, variant_id=variant_id,
            task=base.task, seed=seed, config=base.replace(seed=seed).to_dict(), **job_fields)
        for seed in range(first, first + n)
    ]
    ids, skipped = JobQueue(url, lease_s=lease_s).enqueue(jobs)
    assert skipped == 0
    return plan_id, ids
