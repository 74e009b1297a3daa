"""Plotly figures for the compare page, built from leaderboard rows and curve points.

Pure functions (data in, figure out) so tests can check what is drawn without a browser:
the Pareto front, the bars and their error bars, axis titles with units.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd
import plotly.graph_objects as go

from zolab.db.repo.leaderboard import LeaderboardRow

GiB = 1024**3


@dataclass(frozen=True)
class MetricSpec:
    """How to draw one plan metric: value and CI half-width from a row, axis title with unit."""

    title: str
    value: Callable[[LeaderboardRow], float | None]
    ci: Callable[[LeaderboardRow], float | None]


METRICS: dict[str, MetricSpec] = {
    "accuracy": MetricSpec("accuracy (fraction correct)", lambda r: r.accuracy_mean, lambda r: r.accuracy_ci),
    "f1": MetricSpec("macro F1", lambda r: r.f1_mean, lambda r: r.f1_ci),
    "peak_memory": MetricSpec("peak memory (GiB)",
                              lambda r: None if r.peak_memory is None else r.peak_memory / GiB, lambda r: None),
    "gpu_hours": MetricSpec("GPU hours per run (h)", lambda r: r.gpu_hours_mean, lambda r: r.gpu_hours_ci),
    "wall_time": MetricSpec("wall time per run (s)", lambda r: r.wall_time_mean, lambda r: None),
    "convergence": MetricSpec("steps to 90% of final dev accuracy (steps)",
                              lambda r: r.convergence_step_mean, lambda r: None),
}


def metric_bars(rows: Sequence[LeaderboardRow], metric: str) -> go.Figure:
    """Grouped bars: x = variant, one bar group per task, error bars = 95% CI over seeds."""
    spec = METRICS[metric]
    fig = go.Figure()
    for task in dict.fromkeys(r.task for r in rows):
        mine = [r for r in rows if r.task == task]
        cis = [spec.ci(r) for r in mine]
        fig.add_bar(
            name=task, x=[r.label for r in mine], y=[spec.value(r) for r in mine],
            error_y={"type": "data", "array": [c or 0.0 for c in cis], "visible": any(c for c in cis)},
        )
    fig.update_layout(barmode="group", title=spec.title, xaxis_title="variant", yaxis_title=spec.title,
                      legend_title="task")
    return fig


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (lower memory x, higher accuracy y),
    ordered by memory. Ties on both keep the first."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best_y = [], float("-inf")
    for i in order:
        if points[i][1] > best_y:
            front.append(i)
            best_y = points[i][1]
    return front


def accuracy_memory_scatter(rows: Sequence[LeaderboardRow]) -> go.Figure:
    """Accuracy vs peak memory per variant and task, with the Pareto front drawn as a line."""
    fig = go.Figure()
    usable = [r for r in rows if r.peak_memory is not None]
    for task in dict.fromkeys(r.task for r in usable):
        mine = [r for r in usable if r.task == task]
        pts = [(r.peak_memory / GiB, r.accuracy_mean) for r in mine]
        fig.add_scatter(
            name=task, mode="markers+text", x=[p[0] for p in pts], y=[p[1] for p in pts],
            text=[r.label for r in mine], textposition="top center",
            error_y={"type": "data", "array": [r.accuracy_ci or 0.0 for r in mine]},
        )
        front = pareto_front(pts)
        fig.add_scatter(name=f"Pareto front ({task})", mode="lines", line={"dash": "dash"},
                        x=[pts[i][0] for i in front], y=[pts[i][1] for i in front])
    fig.update_layout(title="accuracy vs peak memory", xaxis_title="peak memory (GiB)",
                      yaxis_title="accuracy (fraction correct)")
    return fig


def curve_figure(points: pd.DataFrame, name: str, labels: dict[int, str]) -> go.Figure:
    """One line per variant: the mean over its seeds of curve ``name`` at each step."""
    fig = go.Figure()
    mine = points[points["name"] == name]
    for (vid, task), grp in mine.groupby(["variant_id", "task"], sort=False):
        mean = grp.groupby("step")["value"].mean()
        fig.add_scatter(name=f"{labels.get(int(vid), vid)} · {task}", mode="lines",
                        x=mean.index.tolist(), y=mean.tolist())
    fig.update_layout(title=f"{name} (mean over seeds)", xaxis_title="training step (steps)", yaxis_title=name)
    return fig


def gpu_hours_bars(rows: Sequence[LeaderboardRow]) -> go.Figure:
    """Total GPU hours spent per variant (all finished seeds, stacked by task)."""
    fig = go.Figure()
    for task in dict.fromkeys(r.task for r in rows):
        mine = [r for r in rows if r.task == task]
        fig.add_bar(name=task, x=[r.label for r in mine], y=[r.gpu_hours_sum for r in mine])
    fig.update_layout(barmode="stack", title="GPU hours per variant", xaxis_title="variant",
                      yaxis_title="GPU hours (h, all seeds)", legend_title="task")
    return fig
