"""A stored plan with FIXED per-seed results, for the leaderboard statistics and the CLI tests.

Every number is written here, so a test can compute the expected paired differences by hand (or
with scipy) and compare them with the board built from the database.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from zolab.db.models import Job, JobStatus, Plan, Result, Variant
from zolab.db.session import session_scope

SEEDS = (1, 2, 3)
#: label -> {seed: accuracy}; F1 = accuracy - 0.05. "zo-broken" diverged on seed 3; "one-seed" ran seed 1 only
ACCURACY: dict[str, dict[int, float]] = {
    "baseline": {1: 0.70, 2: 0.72, 3: 0.68},
    "fo-adam": {1: 0.78, 2: 0.77, 3: 0.76},        # diffs .08 .05 .08: +7.0 pts [+2.7, +11.3]
    "eps 0.1": {1: 0.69, 2: 0.74, 3: 0.70},        # diffs -.01 .02 .02: within noise
    "zo-broken": {1: 0.90, 2: 0.95, 3: 0.99},      # best accuracy, but a seed diverged: ranked last
    "one-seed": {1: 0.80},
}
DIVERGED = {("zo-broken", 3)}
#: method memory (bytes): deterministic per variant, the same every seed
METHOD_MEMORY = {"baseline": 1_000_000, "fo-adam": 4_000_000, "eps 0.1": 1_000_000, "zo-broken": 1_000_000,
                 "one-seed": 2_000_000}


@dataclass
class FixedPlan:
    plan_id: int
    variant_ids: dict[str, int]
    name: str


def seed_fixed_plan(url: str, *, name: str = "fixed-plan", task: str = "sst2", cpu: bool = True,
                    extra_task: str | None = None) -> FixedPlan:
    """The plan above, on ``task`` (and again on ``extra_task`` with the baseline only)."""
    tasks = [task] + ([extra_task] if extra_task else [])
    with session_scope(url) as s:
        plan = Plan(name=name, format="yaml", source_text="{}", content_hash=uuid.uuid4().hex,
                    plan_json={"name": name, "tasks": tasks, "seeds": list(SEEDS),
                               "metrics": ["accuracy", "f1", "peak_memory", "gpu_hours"]})
        s.add(plan)
        s.flush()
        ids: dict[str, int] = {}
        for i, label in enumerate(ACCURACY):
            v = Variant(plan_id=plan.id, label=label, is_baseline=label == "baseline", config={"method": "mezo"},
                        config_hash=f"h{i}", ablations=[])
            s.add(v)
            s.flush()
            ids[label] = v.id
            for t in tasks:
                if t != task and label != "baseline":
                    continue
                for seed, acc in ACCURACY[label].items():
                    _add(s, plan.id, v.id, t, seed, acc, (label, seed) in DIVERGED, METHOD_MEMORY[label], cpu)
        return FixedPlan(plan.id, ids, name)


def _add(s: Any, plan_id: int, variant_id: int, task: str, seed: int, acc: float, diverged: bool,
         mem: int, cpu: bool) -> None:
    status = JobStatus.DIVERGED if diverged else JobStatus.SUCCEEDED
    job = Job(key=f"p{plan_id}:v{variant_id}:{task}:s{seed}:final", plan_id=plan_id, variant_id=variant_id,
              task=task, seed=seed, config={"seed": seed}, status=status.value, attempts=1)
    s.add(job)
    s.flush()
    s.add(Result(job_id=job.id, plan_id=plan_id, variant_id=variant_id, task=task, seed=seed, stage="final",
                 accuracy=acc, f1=acc - 0.05, steps=10, forward_passes=20, wall_time_s=10.0 + seed,
                 gpu_hours=0.0 if cpu else 0.01 * seed, peak_rss=500 * 2**20 + seed * 2**20,
                 peak_memory_allocated=None if cpu else mem * 3, peak_memory_reserved=None if cpu else mem * 4,
                 method_memory_bytes=mem, diverged=diverged, device="cpu" if cpu else "cuda:0"))
