"""Leaderboards and curves: per plan and task, one row per variant, aggregated over seeds in SQL.

Why SQL: a plan with many variants x tasks x seeds (and tuning trials) can hold 100k result rows;
pulling them into Python to average would make every dashboard refresh slow. The database returns
count, mean and sum of squares per (task, variant); Python only turns those into a standard
deviation and a Student-t 95% confidence half-width (the t quantile depends on n alone).

Used by the CLI (``zolab leaderboard``) and the Streamlit pages (through ``zolab.ui.data``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select
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


def _avg(col: Any, name: str) -> ColumnElement[Any]:
    return func.avg(col).label(name)


def _sum_sq(col: Any, name: str) -> ColumnElement[Any]:
    return func.sum(col * col).label(name)


def _leaderboard_query(plan_id: int, task: str | None, stage: str) -> Select[Any]:
    """Aggregate results alone, grouped in the order of ``ix_results_plan_task_variant`` (no sort
    of 100k rows), then join the few aggregated rows to their variants."""
    r = Result
    agg = (
        select(
            r.task,
            r.variant_id,
            func.count(r.id).label("n"),
            _avg(r.accuracy, "acc_mean"),
            _sum_sq(r.accuracy, "acc_ss"),
            _avg(r.f1, "f1_mean"),
            _sum_sq(r.f1, "f1_ss"),
            _avg(r.peak_memory_allocated, "alloc_mean"),
            _avg(r.peak_memory_reserved, "reserved_mean"),
            _avg(r.peak_rss, "rss_mean"),
            _avg(r.gpu_hours, "gh_mean"),
            func.sum(r.gpu_hours).label("gh_sum"),
            _sum_sq(r.gpu_hours, "gh_ss"),
            _avg(r.wall_time_s, "wall_mean"),
            _avg(r.forward_passes, "fwd_mean"),
            _avg(r.final_loss, "loss_mean"),
            _avg(r.convergence_step, "conv_mean"),
            _avg(r.dev_accuracy, "dev_mean"),
        )
        .where(r.plan_id == plan_id, r.stage == stage)
        .group_by(r.task, r.variant_id)
    )
    if task is not None:
        agg = agg.where(r.task == task)
    sub = agg.subquery("agg")
    return (
        select(sub, Variant.label, Variant.is_baseline)
        .join(Variant, Variant.id == sub.c.variant_id)
        .order_by(sub.c.task, Variant.is_baseline.desc(), sub.c.variant_id)
    )


def _opt(value: Any) -> float | None:
    return None if value is None else float(value)


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def leaderboard(
    session: Session, plan_id: int, task: str | None = None, stage: str = JobStage.FINAL.value
) -> list[LeaderboardRow]:
    """Rows ordered by task, baseline first, then variant id. Empty when the plan has no results."""
    rows: list[LeaderboardRow] = []
    for rec in session.execute(_leaderboard_query(plan_id, task, stage)).mappings():
        n = int(rec["n"])
        acc_sd, acc_ci = mean_ci(n, rec["acc_mean"], rec["acc_ss"])
        f1_sd, f1_ci = mean_ci(n, rec["f1_mean"], rec["f1_ss"])
        _, gh_ci = mean_ci(n, rec["gh_mean"], rec["gh_ss"])
        rows.append(
            LeaderboardRow(
                plan_id=plan_id,
                task=rec["task"],
                variant_id=int(rec["variant_id"]),
                label=rec["label"],
                is_baseline=bool(rec["is_baseline"]),
                n=n,
                accuracy_mean=float(rec["acc_mean"]),
                accuracy_sd=acc_sd,
                accuracy_ci=acc_ci,
                f1_mean=float(rec["f1_mean"]),
                f1_sd=f1_sd,
                f1_ci=f1_ci,
                peak_memory_allocated_mean=_opt(rec["alloc_mean"]),
                peak_memory_reserved_mean=_opt(rec["reserved_mean"]),
                peak_rss_mean=_opt(rec["rss_mean"]),
                gpu_hours_mean=float(rec["gh_mean"]),
                gpu_hours_sum=float(rec["gh_sum"]),
                gpu_hours_ci=gh_ci,
                wall_time_mean=float(rec["wall_mean"]),
                forward_passes_mean=float(rec["fwd_mean"]),
                final_loss_mean=_opt(rec["loss_mean"]),
                convergence_step_mean=_opt(rec["conv_mean"]),
                dev_accuracy_mean=_opt(rec["dev_mean"]),
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
    "CurvePoint",
    "LeaderboardRow",
    "curve_names",
    "leaderboard",
    "leaderboard_tasks",
    "mean_ci",
    "metric_curves",
    "t_quantile_975",
]
