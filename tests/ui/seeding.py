"""Seed a database with a plan, its variants, jobs, results and curves through the ORM models.

Used by the leaderboard repo tests, the AppTest page tests and the benchmark: the numbers are
pseudo-random but fixed by ``rng_seed``, and :class:`SeededPlan` keeps every result row so a test
can compute the expected aggregates in plain Python and compare them with the SQL ones.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from zolab.db.models import Ablation, Job, JobEvent, JobStatus, MetricPoint, Plan, Result, Variant

GiB = 1024**3
WORKER = "testhost:4242:0c0ffee0"
T0 = datetime(2026, 1, 2, 3, 4, 5)
TRACEBACK = "Traceback (most recent call last):\n" + "".join(f"  frame {i}\n" for i in range(40)) + \
    "RuntimeError: CUDA out of memory (seeded)"


@dataclass
class SeededPlan:
    plan_id: int
    variant_ids: list[int]
    baseline_id: int
    labels: dict[int, str]
    tasks: list[str]
    results: list[dict[str, Any]] = field(default_factory=list)   # one dict per Result row
    job_ids: list[int] = field(default_factory=list)


def seed_plan(
    session: Session,
    *,
    name: str = "seeded plan",
    labels: tuple[str, ...] = ("baseline (mezo)", "optimizer = fo-sgd", "peft = lora"),
    tasks: tuple[str, ...] = ("sst2", "rte"),
    seeds: tuple[int, ...] = (13, 21, 42),
    rng_seed: int = 0,
    cpu: bool = False,
    curves: bool = True,
    missing: set[tuple[int, str, int]] | None = None,
    content_hash: str | None = None,
    stage: str = "final",
    configs: tuple[dict[str, Any], ...] | None = None,
    failed: set[tuple[int, str, int]] | None = None,
) -> SeededPlan:
    """A plan whose first label is the baseline; one succeeded job + result per (variant, task, seed).

    ``missing`` holds (variant index, task, seed) triples left queued without a result (so n differs);
    ``failed`` triples end ``failed`` with :data:`TRACEBACK` as their error and no result. Jobs that ran
    have events (claimed by :data:`WORKER`), a start and an end (60 s after the start).
    ``configs``: each variant's config (default ``{"method": "mezo"}``).
    """
    rng = random.Random(rng_seed)
    plan = Plan(
        name=name,
        description="seeded for tests",
        format="yaml",
        source_name="seeded.yaml",
        source_text="zolab: 1",
        content_hash=content_hash or f"seed-{rng_seed}-{name}"[:64],
        plan_json={"name": name, "tasks": list(tasks), "seeds": list(seeds),
                   "metrics": ["accuracy", "f1", "peak_memory", "gpu_hours"]},
    )
    session.add(plan)
    session.flush()
    session.add(
        Ablation(plan_id=plan.id, position=0, name=f"{name} ablation", ablated_part="optimizer",
                 action="REPLACE", replacement=["SGD"], metrics=["accuracy"], component="optimizer",
                 status="resolved", confidence=1.0, explanation="test", changes=[])
    )
    seeded = SeededPlan(plan_id=plan.id, variant_ids=[], baseline_id=0, labels={}, tasks=list(tasks))
    for vi, label in enumerate(labels):
        config = dict(configs[vi]) if configs else {"method": "mezo"}
        variant = Variant(plan_id=plan.id, label=label, is_baseline=vi == 0, config=config,
                          config_hash=f"h{vi}", ablations=[])
        session.add(variant)
        session.flush()
        seeded.variant_ids.append(variant.id)
        seeded.labels[variant.id] = label
        if vi == 0:
            seeded.baseline_id = variant.id
        for task in tasks:
            for seed in seeds:
                broken = bool(failed and (vi, task, seed) in failed)
                done = not (missing and (vi, task, seed) in missing) and not broken
                ran = done or broken
                start = T0 + timedelta(minutes=len(seeded.job_ids))
                job = Job(
                    key=f"{plan.id}:{variant.id}:{task}:{seed}:{stage}:",
                    plan_id=plan.id, variant_id=variant.id, task=task, seed=seed, stage=stage,
                    config={**config, "task": task, "seed": seed},
                    status=(JobStatus.SUCCEEDED if done else JobStatus.FAILED if broken else JobStatus.QUEUED).value,
                    attempts=1 if ran else 0, progress_step=100 if done else 0, progress_total=100,
                    started_at=start if ran else None, finished_at=start + timedelta(seconds=60) if ran else None,
                    error=TRACEBACK if broken else None,
                )
                session.add(job)
                session.flush()
                seeded.job_ids.append(job.id)
                session.add(JobEvent(job_id=job.id, at=T0, from_status=None, to_status="queued", message="enqueued"))
                if ran:
                    session.add(JobEvent(job_id=job.id, at=start, from_status="queued", to_status="running",
                                         worker=WORKER, message="claimed (attempt 1)"))
                    session.add(JobEvent(job_id=job.id, at=start + timedelta(seconds=60), from_status="running",
                                         to_status=job.status, worker=WORKER,
                                         message="RuntimeError: CUDA out of memory (seeded)" if broken else "done"))
                if not done:
                    continue
                values = _result_values(rng, vi, cpu)
                session.add(Result(job_id=job.id, plan_id=plan.id, variant_id=variant.id, task=task,
                                   seed=seed, stage=stage, **values))
                seeded.results.append({"variant_id": variant.id, "task": task, "seed": seed, **values})
                if curves:
                    for step in range(0, 101, 25):
                        session.add(MetricPoint(job_id=job.id, step=step, name="train_loss",
                                                value=1.0 / (1 + step / 50) + rng.random() * 0.01))
                        session.add(MetricPoint(job_id=job.id, step=step, name="dev_accuracy",
                                                value=0.5 + step / 400 + rng.random() * 0.01))
    session.flush()
    return seeded


def _result_values(rng: random.Random, vi: int, cpu: bool) -> dict[str, Any]:
    alloc = int((2 + vi) * GiB + rng.randrange(0, GiB // 4))
    return {
        "accuracy": 0.7 + 0.05 * vi + rng.random() * 0.05,
        "f1": 0.65 + 0.05 * vi + rng.random() * 0.05,
        "steps": 100,
        "forward_passes": 200,
        "wall_time_s": 60.0 + rng.random() * 10,
        "gpu_hours": 0.0 if cpu else 0.02 + rng.random() * 0.01,
        "peak_memory_allocated": None if cpu else alloc,
        "peak_memory_reserved": None if cpu else alloc + GiB // 2,
        "peak_rss": alloc if cpu else None,
        "final_loss": 0.5 + rng.random() * 0.1,
        "dev_accuracy": 0.7 + rng.random() * 0.1,
        "convergence_step": rng.randrange(10, 90),
        "device": "cpu" if cpu else "cuda",
    }
