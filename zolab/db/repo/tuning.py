"""The queries of Optuna tuning (``zolab.platform.tuning``): tune jobs of a study, the variant lock.

Callers pass a session from :func:`zolab.db.session.session_scope`; nothing here commits.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from zolab.db.models import Job, JobStage, Variant


def lock_variant(session: Session, variant_id: int) -> Variant | None:
    """The variant row, locked for this transaction (PostgreSQL ``FOR UPDATE``; on SQLite the
    caller's ``BEGIN IMMEDIATE`` already holds the only write lock). Serialises the advancing of
    a variant's studies, so two workers finishing trials at once never ask one trial too many."""
    return session.scalars(select(Variant).where(Variant.id == variant_id).with_for_update()).first()


def tune_jobs(session: Session, study_name: str) -> dict[int, Job]:
    """The tune jobs of one study by trial number."""
    stmt = select(Job).where(Job.stage == JobStage.TUNE.value, Job.study_name == study_name).order_by(Job.id)
    return {j.trial_number: j for j in session.scalars(stmt) if j.trial_number is not None}


def set_tuned_params(variant: Variant, task: str, params: dict[str, Any]) -> None:
    """Store a task's best params on the variant (``{task: {param: value}}``); a new dict so the
    JSON column sees the change."""
    tuned = dict(variant.tuned_params or {})
    tuned[task] = dict(params)
    variant.tuned_params = tuned


def tuned_params_of_plan(session: Session, plan_id: int) -> dict[int, dict[str, Any]]:
    """variant id -> its tuned params (``{task: {param: value}}``) for the variants that have some."""
    rows = session.execute(select(Variant.id, Variant.tuned_params).where(Variant.plan_id == plan_id))
    return {vid: params for vid, params in rows if params}


def ensure_schema(url: str | None, name: str) -> None:
    """Create the PostgreSQL schema ``name`` if missing. Optuna's RDB storage keeps its own Alembic
    ``alembic_version`` table, which would collide with zolab's in the ``public`` schema, so its
    tables live in a schema of their own in the same database."""
    from sqlalchemy import exc as sa_exc
    from sqlalchemy.schema import CreateSchema

    from zolab.db.session import get_engine

    try:
        with get_engine(url).begin() as conn:
            conn.execute(CreateSchema(name, if_not_exists=True))
    except sa_exc.IntegrityError:  # created by another process at the same moment
        pass


__all__ = ["ensure_schema", "lock_variant", "set_tuned_params", "tune_jobs", "tuned_params_of_plan"]
