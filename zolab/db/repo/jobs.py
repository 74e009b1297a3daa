"""All SQL for jobs, job events, results, metric points and workers.

Callers (``zolab.platform.queue``, ``scheduler``, ``worker``, the CLI) pass a session opened with
:func:`zolab.db.session.session_scope`; these functions never commit. The legal job state
transitions are checked by ``zolab.platform.queue`` (the only caller of :func:`record_transition`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, delete, func, literal, or_, select, type_coerce, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from zolab.db.models import (
    Ablation,
    Job,
    JobEvent,
    JobStatus,
    MetricPoint,
    Plan,
    Result,
    Variant,
    Worker,
    utcnow,
)
from zolab.db.session import dialect_name

RUNNING = JobStatus.RUNNING.value
QUEUED = JobStatus.QUEUED.value


# -- the database's clock ---------------------------------------------------------------------------
#: SQLite's ``strftime('%f')`` is "SS.SSS"; three zeros more give SQLAlchemy's own storage format
#: ("YYYY-MM-DD HH:MM:SS.ffffff"), so SQL-made and Python-made times compare as strings correctly
_SQLITE_NOW_FORMAT = "%Y-%m-%d %H:%M:%f000"


def db_utcnow_expr(session: Session) -> ColumnElement[datetime]:
    """The database server's current time as naive UTC (the models' convention), as SQL.

    PostgreSQL: ``statement_timestamp() AT TIME ZONE 'UTC'`` (timestamptz -> naive UTC whatever the
    session's TimeZone; the statement's start, not the transaction's as ``now()`` would be).
    SQLite: ``strftime(.., 'now')``, which is UTC by definition (the clock of the host writing the file).
    Leases are computed and compared with this clock only, so a worker whose own clock is off cannot
    shorten or lengthen another worker's lease."""
    if dialect_name(session) == "postgresql":
        return type_coerce(func.timezone("UTC", func.statement_timestamp()), DateTime())
    return type_coerce(func.strftime(literal(_SQLITE_NOW_FORMAT), literal("now")), DateTime())


def db_now(session: Session) -> datetime:
    """The database's current time (naive UTC): the clock every lease is measured with."""
    value = session.scalar(select(db_utcnow_expr(session)))
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


# -- jobs ---------------------------------------------------------------------------------------
def existing_keys(session: Session, keys: Sequence[str]) -> set[str]:
    """Which of ``keys`` already have a job (chunked: IN lists stay small)."""
    found: set[str] = set()
    for i in range(0, len(keys), 500):
        chunk = list(keys[i : i + 500])
        found.update(session.scalars(select(Job.key).where(Job.key.in_(chunk))))
    return found


def add_jobs(session: Session, jobs: Iterable[Job]) -> list[Job]:
    """Insert new jobs and their 'queued' event; returns them with ids."""
    jobs = list(jobs)
    session.add_all(jobs)
    session.flush()
    session.add_all(
        JobEvent(job_id=j.id, from_status=None, to_status=j.status, message="enqueued") for j in jobs
    )
    return jobs


def insert_new_jobs(session: Session, jobs: Iterable[Job]) -> dict[str, int]:
    """Insert the jobs whose key is not taken yet (``INSERT .. ON CONFLICT (key) DO NOTHING`` on
    both backends) plus their 'queued' event; returns ``{key: id}`` of the rows this call inserted.

    Two producers enqueueing the same plan at once never collide: the loser's rows are skipped by
    the database itself, not by a read-then-write that both pass. Rows go in key order, so two such
    transactions on PostgreSQL wait for each other instead of deadlocking."""
    columns = [c.key for c in Job.__table__.columns if c.key != "id"]
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for job in sorted(jobs, key=lambda j: j.key):
        row = {c: getattr(job, c) for c in columns if getattr(job, c) is not None}  # None: column default
        groups.setdefault(tuple(sorted(row)), []).append(row)
    insert = _upsert_insert(session)
    inserted: dict[str, int] = {}
    for rows in groups.values():
        stmt = insert(Job).on_conflict_do_nothing(index_elements=["key"]).returning(Job.id, Job.key)
        inserted.update((key, job_id) for job_id, key in session.execute(stmt, rows))
    if inserted:
        session.add_all(JobEvent(job_id=job_id, from_status=None, to_status=QUEUED, message="enqueued")
                        for job_id in sorted(inserted.values()))
        session.flush()
    return inserted


def get_job(session: Session, job_id: int, *, lock: bool = False) -> Job | None:
    stmt = select(Job).where(Job.id == job_id)
    if lock:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).first()


def jobs_of_plan(session: Session, plan_id: int | None = None, *, stage: str | None = None) -> list[Job]:
    stmt = select(Job).order_by(Job.id)
    if plan_id is not None:
        stmt = stmt.where(Job.plan_id == plan_id)
    if stage is not None:
        stmt = stmt.where(Job.stage == stage)
    return list(session.scalars(stmt))


def status_counts(session: Session, plan_id: int | None = None) -> dict[str, int]:
    stmt = select(Job.status, func.count()).group_by(Job.status)
    if plan_id is not None:
        stmt = stmt.where(Job.plan_id == plan_id)
    return {status: n for status, n in session.execute(stmt)}


def remaining_work(session: Session, plan_id: int | None = None) -> list[tuple[str, int, int, float | None]]:
    """(status, progress_step, progress_total, est_step_seconds) of unfinished jobs, for the ETA."""
    stmt = select(Job.status, Job.progress_step, Job.progress_total, Job.est_step_seconds).where(
        Job.status.in_([QUEUED, RUNNING])
    )
    if plan_id is not None:
        stmt = stmt.where(Job.plan_id == plan_id)
    return [tuple(r) for r in session.execute(stmt)]  # type: ignore[misc]


def held_by(session: Session, worker_id: str) -> list[Job]:
    """Running jobs whose lease ``worker_id`` holds, locked (a dead worker's jobs, to reclaim)."""
    stmt = select(Job).where(Job.status == RUNNING, Job.lease_owner == worker_id).order_by(Job.id)
    return list(session.scalars(stmt.with_for_update()))


def running_on_device(session: Session, host: str, device: str) -> list[Job]:
    """Jobs running on workers of ``host`` pinned to ``device`` (for GPU packing)."""
    owners = select(Worker.id).where(Worker.host == host, Worker.device == device)
    return list(session.scalars(select(Job).where(Job.status == RUNNING, Job.lease_owner.in_(owners))))


def next_claimable(
    session: Session,
    *,
    max_memory: int | None = None,
    allow_no_packing: bool = True,
    plan_id: int | None = None,
    job_id: int | None = None,
) -> Job | None:
    """Lock and return the next queued job (priority, then age).

    PostgreSQL: ``FOR UPDATE SKIP LOCKED`` so concurrent claimers take different rows. SQLite
    ignores the clause; the caller holds the single write lock (``BEGIN IMMEDIATE``) instead.
    """
    stmt = select(Job).where(Job.status == QUEUED)
    if max_memory is not None:
        stmt = stmt.where(or_(Job.est_memory_bytes.is_(None), Job.est_memory_bytes <= max_memory))
    if not allow_no_packing:
        stmt = stmt.where(Job.no_packing.is_(False))
    if plan_id is not None:
        stmt = stmt.where(Job.plan_id == plan_id)
    if job_id is not None:
        stmt = stmt.where(Job.id == job_id)
    stmt = stmt.order_by(Job.priority.desc(), Job.id).limit(1)
    if dialect_name(session) == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return session.scalars(stmt).first()


def expired_leases(session: Session, now: datetime | None = None) -> list[Job]:
    """Running jobs whose lease ended before ``now`` (default: the database's clock), locked."""
    cutoff = db_utcnow_expr(session) if now is None else now
    stmt = select(Job).where(Job.status == RUNNING, Job.lease_expires_at < cutoff).order_by(Job.id)
    if dialect_name(session) == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return list(session.scalars(stmt))


def record_transition(
    session: Session, job: Job, to: JobStatus, *, worker: str | None = None, message: str = ""
) -> JobEvent:
    """Set ``job.status`` and append its audit row (legality is checked by the queue)."""
    event = JobEvent(job_id=job.id, from_status=job.status, to_status=to.value, worker=worker, message=message)
    job.status = to.value
    job.updated_at = utcnow()
    session.add(event)
    return event


def events_of(session: Session, job_id: int) -> list[JobEvent]:
    return list(session.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)))


# -- results and metric points --------------------------------------------------------------------
def add_result(session: Session, job: Job, values: dict[str, Any]) -> Result:
    result = Result(
        job_id=job.id, plan_id=job.plan_id, variant_id=job.variant_id, task=job.task, seed=job.seed,
        stage=job.stage, **values,
    )
    session.add(result)
    return result


def add_points(session: Session, job_id: int, points: Iterable[tuple[int, str, float]]) -> int:
    """Store curve points; a point already stored for (job, name, step) takes the new value.

    Idempotent, so a heartbeat retried after a lost reply cannot duplicate points (the unique
    index ``ix_metric_points_job_name_step`` backs it); within one call the last value wins."""
    latest: dict[tuple[str, int], float] = {}
    for s, n, v in points:
        latest[(str(n), int(s))] = float(v)
    if not latest:
        return 0
    rows = [{"job_id": job_id, "name": n, "step": s, "value": v} for (n, s), v in latest.items()]
    insert = _upsert_insert(session)
    for start in range(0, len(rows), _POINTS_PER_STATEMENT):
        stmt = insert(MetricPoint).values(rows[start:start + _POINTS_PER_STATEMENT])
        session.execute(stmt.on_conflict_do_update(index_elements=["job_id", "name", "step"],
                                                   set_={"value": stmt.excluded.value}))
    return len(rows)


_POINTS_PER_STATEMENT = 1000   # 4 bound values a row: well under SQLite's 32766-variable limit


def _upsert_insert(session: Session) -> Any:
    """The dialect's INSERT with ON CONFLICT (SQLite and PostgreSQL share the API)."""
    if dialect_name(session) == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def delete_points_after(session: Session, job_id: int, step: int) -> None:
    """Forget curve points past a resume point (the resumed run reports them again)."""
    session.execute(delete(MetricPoint).where(MetricPoint.job_id == job_id, MetricPoint.step > step))


def points_of(session: Session, job_id: int, name: str | None = None) -> list[tuple[int, str, float]]:
    stmt = select(MetricPoint.step, MetricPoint.name, MetricPoint.value).where(MetricPoint.job_id == job_id)
    if name is not None:
        stmt = stmt.where(MetricPoint.name == name)
    return [tuple(r) for r in session.execute(stmt.order_by(MetricPoint.step, MetricPoint.id))]  # type: ignore[misc]


def result_of(session: Session, job_id: int) -> Result | None:
    return session.scalars(select(Result).where(Result.job_id == job_id)).first()


def count_results(session: Session, plan_id: int | None = None) -> int:
    stmt = select(func.count()).select_from(Result)
    if plan_id is not None:
        stmt = stmt.where(Result.plan_id == plan_id)
    return int(session.scalar(stmt) or 0)


@dataclass
class StepTimeSample:
    """One finished run of a model+method: what the estimate learns from."""

    config: dict[str, Any]
    steps: int
    wall_time_s: float
    device: str


def step_time_samples(session: Session, model: str, method: str, limit: int = 50) -> list[StepTimeSample]:
    """Latest finished results whose job ran ``model`` with ``method`` (JSON fields, both backends)."""
    stmt = (
        select(Job.config, Result.steps, Result.wall_time_s, Result.device)
        .join(Result, Result.job_id == Job.id)
        .where(
            Job.config["model"].as_string() == model,
            Job.config["method"].as_string() == method,
            Result.steps > 0,
            Result.wall_time_s > 0,
        )
        .order_by(Result.id.desc())
        .limit(limit)
    )
    return [StepTimeSample(c, s, w, d) for c, s, w, d in session.execute(stmt)]


# -- workers ------------------------------------------------------------------------------------
def add_worker(session: Session, worker_id: str, host: str, pid: int, device: str) -> Worker:
    worker = Worker(id=worker_id, host=host, pid=pid, device=device)
    session.add(worker)
    return worker


def touch_worker(session: Session, worker_id: str, *, stopped: bool = False) -> None:
    values: dict[str, Any] = {"last_seen": utcnow()}
    if stopped:
        values["stopped_at"] = values["last_seen"]
    session.execute(update(Worker).where(Worker.id == worker_id).values(**values))


def live_workers_of_process(session: Session, host: str, pid: int) -> list[str]:
    """Ids of the not-stopped worker rows of process ``pid`` on ``host`` (a process that died
    without marking itself stopped; pids are unique among live processes, so all of them are dead)."""
    stmt = select(Worker.id).where(Worker.host == host, Worker.pid == pid, Worker.stopped_at.is_(None))
    return list(session.scalars(stmt))


def list_workers(session: Session, *, active_only: bool = False) -> list[Worker]:
    stmt = select(Worker).order_by(Worker.started_at)
    if active_only:
        stmt = stmt.where(Worker.stopped_at.is_(None))
    return list(session.scalars(stmt))


__all__ = [
    "StepTimeSample",
    "add_jobs",
    "add_points",
    "add_result",
    "add_worker",
    "count_results",
    "db_now",
    "db_utcnow_expr",
    "delete_points_after",
    "events_of",
    "existing_keys",
    "expired_leases",
    "get_job",
    "held_by",
    "insert_new_jobs",
    "jobs_of_plan",
    "list_workers",
    "live_workers_of_process",
    "max_queued_memory",
    "next_claimable",
    "plan_parts",
    "points_of",
    "record_transition",
    "remaining_work",
    "result_of",
    "running_on_device",
    "status_counts",
    "step_time_samples",
    "touch_worker",
    "variant_labels",
]


# -- plan parts the scheduler reads -----------------------------------------------------------------
def plan_parts(session: Session, plan_id: int) -> tuple[Plan, list[Ablation], list[Variant]] | None:
    """A stored plan with its ablations (by position) and variants (baseline first, then by id)."""
    plan = session.get(Plan, plan_id)
    if plan is None:
        return None
    ablations = list(session.scalars(select(Ablation).where(Ablation.plan_id == plan_id).order_by(Ablation.position)))
    variants = list(session.scalars(
        select(Variant).where(Variant.plan_id == plan_id).order_by(Variant.is_baseline.desc(), Variant.id)
    ))
    return plan, ablations, variants


def variant_labels(session: Session, variant_ids: Iterable[int]) -> dict[int, str]:
    ids = list(set(variant_ids))
    if not ids:
        return {}
    return dict(session.execute(select(Variant.id, Variant.label).where(Variant.id.in_(ids))).all())


def max_queued_memory(session: Session, plan_id: int | None = None) -> int | None:
    """The largest memory estimate among queued jobs (sizes fractional GPU requests)."""
    stmt = select(func.max(Job.est_memory_bytes)).where(Job.status == QUEUED)
    if plan_id is not None:
        stmt = stmt.where(Job.plan_id == plan_id)
    value = session.scalar(stmt)
    return int(value) if value is not None else None
