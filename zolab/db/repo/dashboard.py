"""Reads only the dashboard needs: the job monitor table, ablation/variant pickers, worker count.

(The plan list with job counts is ``zolab.db.repo.plans.list_plans``.)

Each function returns plain frozen dataclasses (picklable, so ``st.cache_data`` can keep them) and
does a bounded number of queries whatever the plan size: counts are grouped in SQL, the job table
is filtered and limited in SQL.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from zolab.db.models import Ablation, Job, JobStatus, Plan, Variant, Worker


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


def variants_of(session: Session, plan_id: int) -> list[VariantInfo]:
    """The plan's variants, baseline first."""
    stmt = select(Variant).where(Variant.plan_id == plan_id).order_by(Variant.is_baseline.desc(), Variant.id)
    return [
        VariantInfo(id=v.id, plan_id=v.plan_id, label=v.label, is_baseline=v.is_baseline,
                    config=dict(v.config or {}), ablations=list(v.ablations or []))
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

    @property
    def progress(self) -> float:
        return self.progress_step / self.progress_total if self.progress_total else 0.0


def job_rows(
    session: Session,
    *,
    plan_id: int | None = None,
    statuses: Iterable[str] | None = None,
    variant_ids: Iterable[int] | None = None,
    limit: int = 1000,
) -> list[JobRow]:
    """Jobs for the monitor, newest activity first, filtered and limited in SQL."""
    stmt = (
        select(Job.id, Job.plan_id, Job.variant_id, Variant.label, Job.task, Job.seed, Job.stage, Job.status,
               Job.progress_step, Job.progress_total, Job.last_loss, Job.attempts, Job.max_attempts,
               Job.error, Job.lease_owner, Job.heartbeat_at, Job.updated_at)
        .join(Variant, Variant.id == Job.variant_id)
        .order_by(Job.updated_at.desc(), Job.id.desc())
        .limit(limit)
    )
    if plan_id is not None:
        stmt = stmt.where(Job.plan_id == plan_id)
    if statuses is not None:
        stmt = stmt.where(Job.status.in_(list(statuses)))
    if variant_ids is not None:
        stmt = stmt.where(Job.variant_id.in_(list(variant_ids)))
    return [JobRow(*row) for row in session.execute(stmt)]


def active_worker_count(session: Session) -> int:
    """Workers registered and not stopped (the UI starts local workers only when this is 0)."""
    return int(session.scalar(select(func.count(Worker.id)).where(Worker.stopped_at.is_(None))) or 0)


def job_status_values() -> list[str]:
    return [s.value for s in JobStatus]


__all__ = [
    "AblationInfo",
    "JobRow",
    "VariantInfo",
    "ablations_of",
    "active_worker_count",
    "job_rows",
    "job_status_values",
    "plan_document",
    "variants_of",
]
