"""Reads only the dashboard needs: the job monitor table, ablation/variant pickers, worker count,
the per-variant drill-down (seed results, job events) and the tune jobs behind a study's trials.

(The plan list with job counts is ``zolab.db.repo.plans.list_plans``.)

Each function returns plain frozen dataclasses (picklable, so ``st.cache_data`` can keep them) and
does a bounded number of queries whatever the plan size: counts are grouped in SQL, the job table
is filtered and limited in SQL.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from zolab.db.models import Ablation, Job, JobEvent, JobStage, JobStatus, Plan, Result, Variant, Worker


@dataclass(frozen=True)
class AblationInfo:
    position: int
    name: str
    ablated_part: str
    action: str
    replacement: list[Any]
    metrics: list[Any]
    component: str | None
    status: str
    confidence: float
    explanation: str
    overridden: bool


def ablations_of(session: Session, plan_id: int) -> list[AblationInfo]:
    stmt = select(Ablation).where(Ablation.plan_id == plan_id).order_by(Ablation.position)
    return [
        AblationInfo(position=a.position, name=a.name, ablated_part=a.ablated_part, action=a.action,
                     replacement=list(a.replacement or []), metrics=list(a.metrics or []),
                     component=a.component, status=a.status, confidence=a.confidence,
                     explanation=a.explanation, overridden=a.overridden)
        for a in session.scalars(stmt)
    ]


@dataclass(frozen=True)
class VariantInfo:
    id: int
    plan_id: int
    label: str
    is_baseline: bool
    config: dict[str, Any]
    ablations: list[Any]
    tuned_params: dict[str, Any] = field(default_factory=dict)   # {task: {param: value}} from Optuna


def variants_of(session: Session, plan_id: int) -> list[VariantInfo]:
    """The plan's variants, baseline first."""
    stmt = select(Variant).where(Variant.plan_id == plan_id).order_by(Variant.is_baseline.desc(), Variant.id)
    return [
        VariantInfo(id=v.id, plan_id=v.plan_id, label=v.label, is_baseline=v.is_baseline,
                    config=dict(v.config or {}), ablations=list(v.ablations or []),
                    tuned_params=dict(v.tuned_params or {}))
        for v in session.scalars(stmt)
    ]


def plan_document(session: Session, plan_id: int) -> dict[str, Any] | None:
    """The stored, validated plan (``plan_json``): tasks, seeds, metrics, tuning, budget."""
    return session.scalar(select(Plan.plan_json).where(Plan.id == plan_id))


@dataclass(frozen=True)
class JobRow:
    id: int
    plan_id: int
    variant_id: int
    variant: str
    task: str
    seed: int
    stage: str
    status: str
    progress_step: int
    progress_total: int
    last_loss: float | None
    attempts: int
    max_attempts: int
    error: str | None
    lease_owner: str | None
    heartbeat_at: datetime | None
    updated_at: datetime | None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    trial_number: int | None = None
    worker: str | None = None     # the holder of the lease, else the worker that last claimed the job

    @property
    def progress(self) -> float:
        return self.progress_step / self.progress_total if self.progress_total else 0.0

    def duration_s(self, now: datetime) -> float | None:
        """Seconds from the first claim to the end (or to ``now`` while it runs); None before a claim."""
        if self.started_at is None:
            return None
        return max(((self.finished_at or now) - self.started_at).total_seconds(), 0.0)


def _last_claimer():
    """Subquery: per job, the worker of its latest move to ``running`` (the lease is cleared at the end)."""
    last = (select(JobEvent.job_id, func.max(JobEvent.id).label("event_id"))
            .where(JobEvent.to_status == JobStatus.RUNNING.value).group_by(JobEvent.job_id).subquery("last_run"))
    return (select(last.c.job_id, JobEvent.worker).join(JobEvent, JobEvent.id == last.c.event_id)
            .subquery("claimer"))


def job_rows(
    session: Session,
    *,
    plan_id: int | None = None,
    statuses: Iterable[str] | None = None,
    variant_ids: Iterable[int] | None = None,
    job_ids: Iterable[int] | None = None,
    limit: int = 1000,
) -> list[JobRow]:
    """Jobs for the monitor in id order (so a row keeps its place while states change under a
    selection), filtered and limited in SQL, with the worker that ran each."""
    claimer = _last_claimer()
    stmt = (
        select(Job.id, Job.plan_id, Job.variant_id, Variant.label, Job.task, Job.seed, Job.stage, Job.status,
               Job.progress_step, Job.progress_total, Job.last_loss, Job.attempts, Job.max_attempts,
               Job.error, Job.lease_owner, Job.heartbeat_at, Job.updated_at, Job.started_at, Job.finished_at,
               Job.trial_number, func.coalesce(Job.lease_owner, claimer.c.worker))
        .join(Variant, Variant.id == Job.variant_id)
        .outerjoin(claimer, claimer.c.job_id == Job.id)
        .order_by(Job.id)
        .limit(limit)
    )
    if plan_id is not None:
        stmt = stmt.where(Job.plan_id == plan_id)
    if statuses is not None:
        stmt = stmt.where(Job.status.in_(list(statuses)))
    if variant_ids is not None:
        stmt = stmt.where(Job.variant_id.in_(list(variant_ids)))
    if job_ids is not None:
        stmt = stmt.where(Job.id.in_(list(job_ids)))
    return [JobRow(*row) for row in session.execute(stmt)]


def active_worker_count(session: Session) -> int:
    """Workers registered and not stopped (the UI starts local workers only when this is 0)."""
    return int(session.scalar(select(func.count(Worker.id)).where(Worker.stopped_at.is_(None))) or 0)


def job_status_values() -> list[str]:
    return [s.value for s in JobStatus]


def plans_with_results(session: Session, stage: str = JobStage.FINAL.value) -> list[int]:
    """Ids of the plans that have at least one result, newest first (the pages open on the first)."""
    stmt = select(Result.plan_id).where(Result.stage == stage).group_by(Result.plan_id).order_by(Result.plan_id.desc())
    return list(session.scalars(stmt))


@dataclass(frozen=True)
class SeedResult:
    """One finished run of a variant (one task, one seed): what the drill-down lists per seed."""

    job_id: int
    variant_id: int
    task: str
    seed: int
    status: str
    accuracy: float
    f1: float
    dev_accuracy: float | None
    final_loss: float | None
    wall_time_s: float
    peak_memory_allocated: int | None
    peak_rss: int | None
    method_memory_bytes: int | None
    diverged: bool
    device: str


def seed_results(session: Session, variant_ids: Iterable[int], stage: str = JobStage.FINAL.value) -> list[SeedResult]:
    """The results of these variants' jobs, by variant, task and seed."""
    stmt = (
        select(Result.job_id, Result.variant_id, Result.task, Result.seed, Job.status, Result.accuracy, Result.f1,
               Result.dev_accuracy, Result.final_loss, Result.wall_time_s, Result.peak_memory_allocated,
               Result.peak_rss, Result.method_memory_bytes, Result.diverged, Result.device)
        .join(Job, Job.id == Result.job_id)
        .where(Result.variant_id.in_(list(variant_ids)), Result.stage == stage)
        .order_by(Result.variant_id, Result.task, Result.seed)
    )
    return [SeedResult(*row) for row in session.execute(stmt)]


@dataclass(frozen=True)
class EventRow:
    """One state change of a job (the job's log as the database keeps it)."""

    job_id: int
    at: datetime
    from_status: str | None
    to_status: str
    worker: str | None
    message: str


def job_events(session: Session, job_ids: Iterable[int], limit: int = 200) -> list[EventRow]:
    """The newest ``limit`` state changes of these jobs, oldest first."""
    stmt = (select(JobEvent.job_id, JobEvent.at, JobEvent.from_status, JobEvent.to_status, JobEvent.worker,
                   JobEvent.message)
            .where(JobEvent.job_id.in_(list(job_ids))).order_by(JobEvent.id.desc()).limit(limit))
    return [EventRow(*row) for row in reversed(session.execute(stmt).all())]


@dataclass(frozen=True)
class TrialJob:
    """The tune job behind one Optuna trial."""

    trial_number: int
    job_id: int
    status: str
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None
    progress_step: int
    progress_total: int


def trial_jobs(session: Session, study_name: str) -> list[TrialJob]:
    """The tune jobs of a study by trial number (a trial asked but whose job was never written is absent)."""
    stmt = (select(Job.trial_number, Job.id, Job.status, Job.error, Job.started_at, Job.finished_at,
                   Job.progress_step, Job.progress_total)
            .where(Job.stage == JobStage.TUNE.value, Job.study_name == study_name, Job.trial_number.is_not(None))
            .order_by(Job.trial_number))
    return [TrialJob(*row) for row in session.execute(stmt)]


__all__ = [
    "AblationInfo",
    "EventRow",
    "JobRow",
    "SeedResult",
    "TrialJob",
    "VariantInfo",
    "ablations_of",
    "active_worker_count",
    "job_events",
    "job_rows",
    "job_status_values",
    "plan_document",
    "plans_with_results",
    "seed_results",
    "trial_jobs",
    "variants_of",
]
