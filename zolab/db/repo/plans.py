"""Plan queries: store a validated, resolved plan in one go; read plans, ablations and variants.

Writes happen inside the caller's ``session_scope`` (one transaction for the plan, its ablations
and its variants). ``content_hash`` is unique, so uploading the same content twice finds the
existing plan (:func:`get_plan_by_hash`) and writes nothing. Each ablation row keeps the
resolver's reading, and for ``ambiguous`` / ``unresolved`` ones the ``candidates`` the user can
pick from (:func:`pending_ablations`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from zolab.db.models import Ablation, Job, Plan, Variant


@dataclass(frozen=True)
class PlanSummary:
    id: int
    name: str
    format: str
    source_name: str
    created_at: datetime
    n_ablations: int
    n_variants: int
    job_counts: dict[str, int] = field(default_factory=dict)   # status -> jobs (empty before scheduling)

    @property
    def n_jobs(self) -> int:
        return sum(self.job_counts.values())


def get_plan_by_hash(session: Session, content_hash: str) -> Plan | None:
    return session.scalars(select(Plan).where(Plan.content_hash == content_hash)).first()


def get_plan(session: Session, plan_id: int) -> Plan | None:
    return session.get(Plan, plan_id)


def save_plan(
    session: Session,
    *,
    name: str,
    description: str,
    format: str,
    source_name: str,
    source_text: str,
    content_hash: str,
    plan_json: dict[str, Any],
    ablations: Sequence[dict[str, Any]],
    variants: Sequence[dict[str, Any]],
) -> tuple[Plan, bool]:
    """Store a plan with its ablations and variants; ``(plan, created)``. Existing content -> no rows."""
    existing = get_plan_by_hash(session, content_hash)
    if existing is not None:
        return existing, False
    plan = Plan(name=name, description=description, format=format, source_name=source_name,
                source_text=source_text, content_hash=content_hash, plan_json=plan_json)
    plan.ablations = [Ablation(position=i, **row) for i, row in enumerate(ablations)]
    plan.variants = [Variant(**row) for row in variants]
    session.add(plan)
    session.flush()
    return plan, True


def plan_ablations(session: Session, plan_id: int) -> list[Ablation]:
    return list(session.scalars(select(Ablation).where(Ablation.plan_id == plan_id).order_by(Ablation.position)))


#: statuses whose ablations wait for the user to pick a reading (stored, never scheduled)
PENDING = ("ambiguous", "unresolved")


@dataclass(frozen=True)
class PendingAblation:
    """An ablation the resolver could not settle, with the readings offered for it."""

    position: int
    name: str
    status: str
    explanation: str
    candidates: list[dict[str, Any]]   # each {component, score, status, changes: [{label, changes}], why}


def pending_ablations(session: Session, plan_id: int) -> list[PendingAblation]:
    """The plan's ambiguous and unresolved ablations with their candidates, in plan order."""
    rows = session.scalars(select(Ablation).where(Ablation.plan_id == plan_id, Ablation.status.in_(PENDING))
                           .order_by(Ablation.position))
    return [PendingAblation(a.position, a.name, a.status, a.explanation, list(a.candidates or [])) for a in rows]


def plan_variants(session: Session, plan_id: int) -> list[Variant]:
    return list(session.scalars(select(Variant).where(Variant.plan_id == plan_id).order_by(Variant.id)))


def _counts(session: Session, column: Any, plan_ids: Sequence[int]) -> dict[int, int]:
    rows = session.execute(select(column, func.count()).where(column.in_(plan_ids)).group_by(column))
    return {pid: n for pid, n in rows}


def list_plans(session: Session, *, limit: int | None = None) -> list[PlanSummary]:
    """Newest first, with ablation/variant counts and job counts by status (GROUP BY, no N+1)."""
    stmt = select(Plan).order_by(Plan.id.desc())
    if limit is not None:
        stmt = stmt.limit(limit)
    plans = list(session.scalars(stmt))
    ids = [p.id for p in plans]
    if not ids:
        return []
    n_ablations = _counts(session, Ablation.plan_id, ids)
    n_variants = _counts(session, Variant.plan_id, ids)
    job_counts: dict[int, dict[str, int]] = {}
    rows = session.execute(
        select(Job.plan_id, Job.status, func.count()).where(Job.plan_id.in_(ids)).group_by(Job.plan_id, Job.status)
    )
    for pid, status, n in rows:
        job_counts.setdefault(pid, {})[status] = n
    return [
        PlanSummary(p.id, p.name, p.format, p.source_name, p.created_at, n_ablations.get(p.id, 0),
                    n_variants.get(p.id, 0), job_counts.get(p.id, {}))
        for p in plans
    ]


def count_rows(session: Session) -> dict[str, int]:
    """Rows in the plan tables (tests check that refused uploads wrote nothing)."""
    return {
        "plans": session.scalar(select(func.count()).select_from(Plan)) or 0,
        "ablations": session.scalar(select(func.count()).select_from(Ablation)) or 0,
        "variants": session.scalar(select(func.count()).select_from(Variant)) or 0,
    }
