"""Leaderboards and curves: per plan and task, one row per variant, aggregated over seeds in SQL.

Why SQL: a plan with many variants x tasks x seeds (and tuning trials) can hold 100k result rows;
pulling them into Python to average would make every dashboard refresh slow. The database returns
count, mean and sum of squares per (task, variant) (:func:`aggregates`), and the same moments of
the differences from the baseline's result at the same seed (a window over task and seed): everything a paired t-interval needs. ``zolab.platform.leaderboard`` turns them into the
statistics (scipy); :func:`leaderboard` keeps the flat per-variant row of the first dashboard.

Used by the CLI (``zolab leaderboard``) and the Streamlit pages (through ``zolab.ui.data``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Float, Select, case, cast, func, select
from sqlalchemy.orm import Session

from zolab.db.models import Job, JobStage, MetricPoint, Result, Variant

#: two-sided 95% Student-t quantiles t_{0.975, df} for df = 1..30 (exact to 3 decimals)
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)
_Z975 = 1.959963984540054


def t_quantile_975(df: int) -> float:
    """t_{0.975, df}: a table for df <= 30, the Cornish-Fisher expansion (error < 1e-5) above."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4


def mean_ci(n: int, mean: float | None, sum_sq: float | None) -> tuple[float | None, float | None]:
    """(sample standard deviation, 95% CI half-width) from count, mean and sum of squares.

    None for both when n < 2 (one seed says nothing about spread). Rounding can make the
    variance a hair below zero for identical values: it is clamped to 0.
    """
    if n < 2 or mean is None or sum_sq is None:
        return None, None
    var = max((sum_sq - n * mean * mean) / (n - 1), 0.0)
    sd = math.sqrt(var)
    return sd, t_quantile_975(n - 1) * sd / math.sqrt(n)


@dataclass
class LeaderboardRow:
    """One variant on one task: means over its finished seeds, with CIs and deltas vs the baseline."""

    plan_id: int
    task: str
    variant_id: int
    label: str
    is_baseline: bool
    n: int                                        # finished seeds (results) aggregated
    accuracy_mean: float
    accuracy_sd: float | None
    accuracy_ci: float | None                  # 95% half-width (Student t); None for n = 1
    f1_mean: float
    f1_sd: float | None
    f1_ci: float | None
    peak_memory_allocated_mean: float | None   # bytes (GPU); None on CPU
    peak_memory_reserved_mean: float | None    # bytes (GPU)
    peak_rss_mean: float | None                # bytes (CPU process)
    gpu_hours_mean: float
    gpu_hours_sum: float
    gpu_hours_ci: float | None
    wall_time_mean: float                         # seconds
    forward_passes_mean: float
    final_loss_mean: float | None = None
    convergence_step_mean: float | None = None
    dev_accuracy_mean: float | None = None
    delta_accuracy: float | None = None        # this - baseline of the same task (None: no baseline row)
    delta_f1: float | None = None
    delta_peak_memory: float | None = None     # bytes, on ``peak_memory``
    delta_gpu_hours: float | None = None
    delta_wall_time: float | None = None
    diverged_seeds: int = 0                    # results flagged diverged (results.diverged)
    method_memory_mean: float | None = None    # bytes the method holds (weights + state + z), CPU and GPU
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def peak_memory(self) -> float | None:
        """The memory figure to compare: GPU allocated when measured, else the CPU peak RSS."""
        if self.peak_memory_allocated_mean is not None:
            return self.peak_memory_allocated_mean
        return self.peak_rss_mean

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("extra")
        d["peak_memory"] = self.peak_memory
        return d


#: result columns a leaderboard summarises (mean and spread over seeds), by the key the platform uses
SUMMARY_COLUMNS: dict[str, Any] = {
    "accuracy": Result.accuracy,
    "f1": Result.f1,
    "method_memory": Result.method_memory_bytes,
    "peak_memory_allocated": Result.peak_memory_allocated,
    "peak_memory_reserved": Result.peak_memory_reserved,
    "peak_rss": Result.peak_rss,
    "gpu_hours": Result.gpu_hours,
    "wall_time": Result.wall_time_s,
    "forward_passes": Result.forward_passes,
    "final_loss": Result.final_loss,
    "convergence_step": Result.convergence_step,
    "dev_accuracy": Result.dev_accuracy,
}
#: columns compared with the baseline seed by seed (same seed = same data sample and test set)
PAIRED_COLUMNS = ("accuracy", "f1")


@dataclass(frozen=True)
class Moments:
    """Count of non-null values, their mean and sum of squares (None when the count is 0)."""

    n: int
    mean: float | None
    sum_sq: float | None


@dataclass
class CellAggregate:
    """One variant on one task: moments over its results, and over its differences from the baseline.

    ``paired[key]`` holds the moments of ``value(variant, seed) - value(baseline, seed)`` over the
    seeds both have a result for (absent for the baseline itself and when there is no baseline).
    """

    task: str
    variant_id: int
    label: str
    is_baseline: bool
    n: int                                   # results (finished seeds)
    diverged: int                            # of which diverged (results.diverged)
    metrics: dict[str, Moments]
    paired: dict[str, Moments] = field(default_factory=dict)


def _f(value: Any) -> float | None:
    return None if value is None else float(value)


def _moments(rec: Any, key: str) -> Moments:
    n = int(rec[f"{key}__n"] or 0)
    return Moments(n, _f(rec[f"{key}__mean"]) if n else None, _f(rec[f"{key}__ss"]) if n else None)


def _aggregated(x: Any, key: str) -> list[ColumnElement[Any]]:
    return [func.count(x).label(f"{key}__n"), func.avg(x).label(f"{key}__mean"), func.sum(x * x).label(f"{key}__ss")]


def _as_float(col: Any) -> Any:
    """Integer columns as floats: bytes squared overflow BIGINT (PostgreSQL) and SQLite's integer sum()."""
    return col if isinstance(col.type, Float) else cast(col, Float)


def _aggregates_query(plan_id: int, task: str | None, stage: str, paired: bool,
                      keys: Sequence[str] | None = None) -> Select[Any]:
    """One scan of the plan's results, grouped by (task, variant), then joined to the few variants:
    count, mean and sum of squares of every summary column and (``paired``) of each result's
    difference from the baseline's result at the same seed. The baseline's value comes from a window
    over (task, seed), fed in that order by ``ix_results_plan_stage_task_seed`` (no sort); where the
    baseline has no result for a seed the difference is NULL and the pair drops out of the count.
    (A self-join instead makes SQLite scan every baseline row of the task for each result: minutes
    at 100k results.)"""
    r = Result
    inner: list[ColumnElement[Any]] = [r.task.label("task"), r.variant_id.label("variant_id"),
                                       r.diverged.label("diverged")]
    keys = list(SUMMARY_COLUMNS) if keys is None else [k for k in SUMMARY_COLUMNS if k in keys]
    inner += [_as_float(SUMMARY_COLUMNS[key]).label(key) for key in keys]
    if paired:
        baseline_id = (select(Variant.id).where(Variant.plan_id == plan_id, Variant.is_baseline.is_(True))
                       .order_by(Variant.id).limit(1).scalar_subquery())
        for key in PAIRED_COLUMNS:
            x = _as_float(SUMMARY_COLUMNS[key])
            base = func.max(case((r.variant_id == baseline_id, x))).over(partition_by=(r.task, r.seed))
            inner.append((x - base).label(f"d_{key}"))
    rows = select(*inner).where(r.plan_id == plan_id, r.stage == stage)
    if task is not None:
        rows = rows.where(r.task == task)
    sub = rows.subquery("rows")
    out: list[ColumnElement[Any]] = [sub.c.task, sub.c.variant_id, func.count().label("n"),
                                     func.sum(case((sub.c.diverged.is_(True), 1), else_=0)).label("diverged")]
    for key in keys:
        out += _aggregated(sub.c[key], key)
    if paired:
        for key in PAIRED_COLUMNS:
            out += _aggregated(sub.c[f"d_{key}"], f"d_{key}")
    agg = select(*out).group_by(sub.c.task, sub.c.variant_id).subquery("agg")
    return (select(agg, Variant.label, Variant.is_baseline)
            .join(Variant, Variant.id == agg.c.variant_id)
            .order_by(agg.c.task, Variant.is_baseline.desc(), agg.c.variant_id))


def aggregates(
    session: Session, plan_id: int, task: str | None = None, stage: str = JobStage.FINAL.value, *,
    paired: bool = True, keys: Sequence[str] | None = None,
) -> list[CellAggregate]:
    """Moments per (task, variant), ordered by task, baseline first, then variant id: one grouped
    query whatever the number of results (``paired=False``: without the differences; ``keys``: only
    these summary columns, the paired ones always). The statistics are made from them by
    ``zolab.platform.leaderboard``."""
    if keys is not None:
        keys = [*keys, *(k for k in PAIRED_COLUMNS if k not in keys)]
    wanted = list(SUMMARY_COLUMNS) if keys is None else [k for k in SUMMARY_COLUMNS if k in keys]
    cells: list[CellAggregate] = []
    for rec in session.execute(_aggregates_query(plan_id, task, stage, paired, wanted)).mappings():
        is_base = bool(rec["is_baseline"])
        cells.append(CellAggregate(
            task=rec["task"], variant_id=int(rec["variant_id"]), label=rec["label"], is_baseline=is_base,
            n=int(rec["n"]), diverged=int(rec["diverged"] or 0),
            metrics={key: _moments(rec, key) for key in wanted},
            paired={} if is_base or not paired else {key: _moments(rec, f"d_{key}") for key in PAIRED_COLUMNS},
        ))
    return cells


def seed_values(
    session: Session, plan_id: int, key: str, task: str | None = None, stage: str = JobStage.FINAL.value
) -> dict[tuple[str, int], dict[int, float]]:
    """``{(task, variant_id): {seed: value}}`` of one summary column (per-seed drill-downs, plots)."""
    col = SUMMARY_COLUMNS[key]
    stmt = select(Result.task, Result.variant_id, Result.seed, col).where(
        Result.plan_id == plan_id, Result.stage == stage)
    if task is not None:
        stmt = stmt.where(Result.task == task)
    out: dict[tuple[str, int], dict[int, float]] = {}
    for t, vid, seed, value in session.execute(stmt.order_by(Result.task, Result.variant_id, Result.seed)):
        if value is not None:
            out.setdefault((t, int(vid)), {})[int(seed)] = float(value)
    return out


def leaderboard(
    session: Session, plan_id: int, task: str | None = None, stage: str = JobStage.FINAL.value
) -> list[LeaderboardRow]:
    """Rows ordered by task, baseline first, then variant id. Empty when the plan has no results.

    The flat row the dashboard's first pages read; the paired statistics, Holm correction and
    formatting are ``zolab.platform.leaderboard.build_board``."""
    rows: list[LeaderboardRow] = []
    for c in aggregates(session, plan_id, task, stage, paired=False):
        m = c.metrics
        acc_sd, acc_ci = mean_ci(m["accuracy"].n, m["accuracy"].mean, m["accuracy"].sum_sq)
        f1_sd, f1_ci = mean_ci(m["f1"].n, m["f1"].mean, m["f1"].sum_sq)
        _, gh_ci = mean_ci(m["gpu_hours"].n, m["gpu_hours"].mean, m["gpu_hours"].sum_sq)
        gh = m["gpu_hours"]
        rows.append(
            LeaderboardRow(
                plan_id=plan_id, task=c.task, variant_id=c.variant_id, label=c.label,
                is_baseline=c.is_baseline, n=c.n,
                accuracy_mean=float(m["accuracy"].mean or 0.0), accuracy_sd=acc_sd, accuracy_ci=acc_ci,
                f1_mean=float(m["f1"].mean or 0.0), f1_sd=f1_sd, f1_ci=f1_ci,
                peak_memory_allocated_mean=m["peak_memory_allocated"].mean,
                peak_memory_reserved_mean=m["peak_memory_reserved"].mean,
                peak_rss_mean=m["peak_rss"].mean,
                gpu_hours_mean=float(gh.mean or 0.0), gpu_hours_sum=float(gh.mean or 0.0) * gh.n,
                gpu_hours_ci=gh_ci,
                wall_time_mean=float(m["wall_time"].mean or 0.0),
                forward_passes_mean=float(m["forward_passes"].mean or 0.0),
                final_loss_mean=m["final_loss"].mean,
                convergence_step_mean=m["convergence_step"].mean,
                dev_accuracy_mean=m["dev_accuracy"].mean,
                diverged_seeds=c.diverged,
                method_memory_mean=m["method_memory"].mean,
            )
        )
    _fill_deltas(rows)
    return rows


def _fill_deltas(rows: list[LeaderboardRow]) -> None:
    baselines = {row.task: row for row in rows if row.is_baseline}
    for row in rows:
        base = baselines.get(row.task)
        if base is None:
            continue
        row.delta_accuracy = row.accuracy_mean - base.accuracy_mean
        row.delta_f1 = row.f1_mean - base.f1_mean
        row.delta_peak_memory = _delta(row.peak_memory, base.peak_memory)
        row.delta_gpu_hours = row.gpu_hours_mean - base.gpu_hours_mean
        row.delta_wall_time = row.wall_time_mean - base.wall_time_mean


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def leaderboard_tasks(session: Session, plan_id: int, stage: str = JobStage.FINAL.value) -> list[str]:
    """Tasks of a plan that have at least one result (for a task picker)."""
    stmt = (
        select(Result.task)
        .where(Result.plan_id == plan_id, Result.stage == stage)
        .group_by(Result.task)
        .order_by(Result.task)
    )
    return list(session.scalars(stmt))


@dataclass(frozen=True)
class CurvePoint:
    job_id: int
    variant_id: int
    task: str
    seed: int
    name: str
    step: int
    value: float


def metric_curves(
    session: Session,
    *,
    job_ids: Iterable[int] | None = None,
    variant_ids: Iterable[int] | None = None,
    names: Sequence[str] | None = None,
    task: str | None = None,
    stage: str = JobStage.FINAL.value,
) -> list[CurvePoint]:
    """Curve points of the chosen jobs or variants' jobs, ordered by job, name and step.

    Give ``job_ids`` or ``variant_ids`` (or both, intersected); with neither, nothing is returned
    rather than every curve of the database. ``names`` limits the curves (None: all of them).
    """
    if job_ids is None and variant_ids is None:
        return []
    stmt = (
        select(
            MetricPoint.job_id, Job.variant_id, Job.task, Job.seed, MetricPoint.name, MetricPoint.step,
            MetricPoint.value,
        )
        .join(Job, Job.id == MetricPoint.job_id)
        .order_by(MetricPoint.job_id, MetricPoint.name, MetricPoint.step)
    )
    if names is not None:
        stmt = stmt.where(MetricPoint.name.in_(list(names)))
    if job_ids is not None:
        stmt = stmt.where(MetricPoint.job_id.in_(list(job_ids)))
    if variant_ids is not None:
        stmt = stmt.where(Job.variant_id.in_(list(variant_ids)), Job.stage == stage)
    if task is not None:
        stmt = stmt.where(Job.task == task)
    return [CurvePoint(*row) for row in session.execute(stmt)]


def curve_names(session: Session, variant_ids: Iterable[int]) -> list[str]:
    """The metric names recorded for these variants' jobs (what the compare page can plot)."""
    stmt = (
        select(MetricPoint.name)
        .join(Job, Job.id == MetricPoint.job_id)
        .where(Job.variant_id.in_(list(variant_ids)))
        .group_by(MetricPoint.name)
        .order_by(MetricPoint.name)
    )
    return list(session.scalars(stmt))


__all__ = [
    "PAIRED_COLUMNS",
    "SUMMARY_COLUMNS",
    "CellAggregate",
    "CurvePoint",
    "LeaderboardRow",
    "Moments",
    "aggregates",
    "curve_names",
    "leaderboard",
    "leaderboard_tasks",
    "mean_ci",
    "metric_curves",
    "seed_values",
    "t_quantile_975",
]
