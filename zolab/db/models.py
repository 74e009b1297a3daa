"""SQLAlchemy 2.0 typed models: plans -> ablations, variants -> jobs -> results, metric points.

Conventions:
* times are naive UTC (``utcnow()``), the same on SQLite and PostgreSQL;
* JSON columns hold plain dicts/lists (RunConfig dicts, resolutions, checkpoints);
* a job's ``status`` is a :class:`JobStatus` value stored as a short string; the legal
  transitions live in ``zolab.platform.queue`` and every change also appends a ``job_events`` row;
* ``results.job_id`` is unique: a job has at most one result (exactly-once at the DB level).
Schema changes go through Alembic (``zolab/db/migrations``); ``create_all`` is for migration tests only.
"""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from typing import Any, Optional

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Naive UTC now (SQLite keeps no time zone; we store UTC everywhere)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class JobStatus(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    DIVERGED = "diverged"     # ran to the end (a result is stored) but its loss blew up: ranked last

    def is_finished(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.DIVERGED)


class JobStage(str, enum.Enum):
    FINAL = "final"   # a seed of a variant, counted in leaderboards
    TUNE = "tune"     # an Optuna trial (one seed, fewer steps)


class Plan(Base):
    __tablename__ = "plans"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    format: Mapped[str] = mapped_column(String(16))            # yaml | jsonl | markdown
    source_name: Mapped[str] = mapped_column(String(500), default="")
    source_text: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)
    plan_json: Mapped[dict[str, Any]] = mapped_column(JSON)   # the validated Plan, normalised
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    ablations: Mapped[list["Ablation"]] = relationship(
        back_populates="plan", cascade="all, delete-orphan", order_by="Ablation.position"
    )
    variants: Mapped[list["Variant"]] = relationship(back_populates="plan", cascade="all, delete-orphan")


class Ablation(Base):
    __tablename__ = "ablations"
    __table_args__ = (UniqueConstraint("plan_id", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(300))
    ablated_part: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(String(16))            # REPLACE | REMOVE | ADD
    replacement: Mapped[list[Any]] = mapped_column(JSON, default=list)
    metrics: Mapped[list[Any]] = mapped_column(JSON, default=list)
    component: Mapped[Optional[str]] = mapped_column(String(64), nullable=True)
    status: Mapped[str] = mapped_column(String(16))            # resolved | inverted | no_op | ambiguous | unresolved
    confidence: Mapped[float] = mapped_column(Float, default=0.0)
    explanation: Mapped[str] = mapped_column(Text, default="")
    changes: Mapped[list[Any]] = mapped_column(JSON, default=list)  # one {label, changes} per replacement
    overridden: Mapped[bool] = mapped_column(Boolean, default=False)  # component set by the user
    # ambiguous/unresolved: the top readings, each {component, score, changes, why}; the user picks one
    candidates: Mapped[list[Any]] = mapped_column(JSON, default=list)

    plan: Mapped[Plan] = relationship(back_populates="ablations")


class Variant(Base):
    __tablename__ = "variants"
    __table_args__ = (UniqueConstraint("plan_id", "config_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(300))
    is_baseline: Mapped[bool] = mapped_column(Boolean, default=False)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)       # RunConfig dict without task/seed
    config_hash: Mapped[str] = mapped_column(String(64))
    ablations: Mapped[list[Any]] = mapped_column(JSON, default=list)  # names of the ablations it serves
    tuned_params: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    plan: Mapped[Plan] = relationship(back_populates="variants")
    jobs: Mapped[list["Job"]] = relationship(back_populates="variant", cascade="all, delete-orphan")


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_priority", "status", "priority", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)  # plan:variant:task:seed:stage:trial (idempotent enqueue)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"), index=True)
    variant_id: Mapped[int] = mapped_column(ForeignKey("variants.id", ondelete="CASCADE"), index=True)
    task: Mapped[str] = mapped_column(String(100))
    seed: Mapped[int] = mapped_column(Integer)
    stage: Mapped[str] = mapped_column(String(8), default=JobStage.FINAL.value)
    study_name: Mapped[Optional[str]] = mapped_column(String(300), nullable=True)
    trial_number: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)       # the complete RunConfig dict to run
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED.value)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    est_memory_bytes: Mapped[Optional[int]] = mapped_column(BigInteger, nullable=True)
    est_gpu_hours: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    est_step_seconds: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    no_packing: Mapped[bool] = mapped_column(Boolean, default=False)  # set after a CUDA OOM
    lease_owner: Mapped[Optional[str]] = mapped_column(String(200), nullable=True)
    lease_expires_at: Mapped[Optional[datetime]] = mapped_column(DateTime, nullable=True)
    heartbeat_at: Mapped[Optional[datetime]] = mapped_column(DateTime, nullable=True)
    progress_step: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int] = mapped_column(Integer, default=0)
    last_loss: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    checkpoint: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON, nullable=True)
    error: Mapped[Optional[str]] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    started_at: Mapped[Optional[datetime]] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[Optional[datetime]] = mapped_column(DateTime, nullable=True)

    variant: Mapped[Variant] = relationship(back_populates="jobs")
    result: Mapped[Optional["Result"]] = relationship(back_populates="job", uselist=False, cascade="all, delete-orphan")
    events: Mapped[list["JobEvent"]] = relationship(cascade="all, delete-orphan", order_by="JobEvent.id")


class JobEvent(Base):
    """One row per state change of a job: the audit trail."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    from_status: Mapped[Optional[str]] = mapped_column(String(16), nullable=True)
    to_status: Mapped[str] = mapped_column(String(16))
    worker: Mapped[Optional[str]] = mapped_column(String(200), nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")


class Result(Base):
    """A finished job's numbers. plan/variant/task/seed are copied from the job so leaderboards aggregate in SQL."""

    __tablename__ = "results"
    __table_args__ = (
        Index("ix_results_plan_task_variant", "plan_id", "task", "variant_id"),
        Index("ix_results_plan_stage_task_seed", "plan_id", "stage", "task", "seed"),   # pairing by seed (0004)
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), unique=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"))
    variant_id: Mapped[int] = mapped_column(ForeignKey("variants.id", ondelete="CASCADE"))
    task: Mapped[str] = mapped_column(String(100))
    seed: Mapped[int] = mapped_column(Integer)
    stage: Mapped[str] = mapped_column(String(8), default=JobStage.FINAL.value)
    accuracy: Mapped[float] = mapped_column(Float)
    f1: Mapped[float] = mapped_column(Float)
    steps: Mapped[int] = mapped_column(Integer)
    forward_passes: Mapped[int] = mapped_column(BigInteger)
    wall_time_s: Mapped[float] = mapped_column(Float)
    gpu_hours: Mapped[float] = mapped_column(Float)
    peak_memory_allocated: Mapped[Optional[int]] = mapped_column(BigInteger, nullable=True)
    peak_memory_reserved: Mapped[Optional[int]] = mapped_column(BigInteger, nullable=True)
    peak_rss: Mapped[Optional[int]] = mapped_column(BigInteger, nullable=True)
    final_loss: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    zero_shot_accuracy: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    convergence_step: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)
    loss_slope: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    dev_accuracy: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    device: Mapped[str] = mapped_column(String(64), default="cpu")
    diverged: Mapped[bool] = mapped_column(Boolean, default=False)
    method_memory_bytes: Mapped[Optional[int]] = mapped_column(BigInteger, nullable=True)
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    job: Mapped[Job] = relationship(back_populates="result")


class MetricPoint(Base):
    """A point of a curve (train loss, dev accuracy, ...) of one job."""

    __tablename__ = "metric_points"
    # unique: a heartbeat retried after a lost reply must not store its points twice (add_points upserts)
    __table_args__ = (Index("ix_metric_points_job_name_step", "job_id", "name", "step", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)


class Worker(Base):
    """A worker process that claims jobs (for 'are workers running?' and the job monitor)."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)  # host:pid:uuid
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    device: Mapped[str] = mapped_column(String(64), default="cpu")
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    stopped_at: Mapped[Optional[datetime]] = mapped_column(DateTime, nullable=True)
