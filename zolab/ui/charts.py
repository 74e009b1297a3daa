"""Plotly figures for the Compare page and the variant drill-down, from leaderboard rows and curves.

Pure functions (data in, figure out) so tests can check what is drawn without a browser. The
rules every figure follows:

* one colour per variant everywhere: :func:`variant_colors` maps a plan's variant ids to colours
  once, and every figure takes that map (a variant never changes colour between charts);
* the legend sits below the plot (a side legend squeezes the plot to ~100 px at 1280 px);
* axes fit the metric: accuracy, F1 and dev accuracy are percentages on 0-100 %, memory and
  times start at 0, loss may be drawn on a log axis;
* the baseline is a dashed line on the bars, so "better than the baseline" reads at a glance;
* curves show the mean over seeds with a band from the lowest to the highest seed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from zolab.db.repo.leaderboard import LeaderboardRow

GiB = 1024**3
#: distinct colours, in order; variant i of a plan (by id) gets PALETTE[i % len]
PALETTE: tuple[str, ...] = (*qualitative.D3, *qualitative.Dark2)
#: line styles that tell tasks apart on curve plots (colour already tells the variant)
TASK_DASHES = ("solid", "dot", "dash", "longdash", "dashdot")
LEGEND_BELOW = {"orientation": "h", "yanchor": "top", "y": -0.22, "xanchor": "left", "x": 0.0}
PERCENT_AXIS = {"range": [0, 100], "ticksuffix": " %"}


def variant_colors(variant_ids: Sequence[int]) -> dict[int, str]:
    """A stable colour per variant: the plan's variants sorted by id, in palette order."""
    return {vid: PALETTE[i % len(PALETTE)] for i, vid in enumerate(sorted(dict.fromkeys(variant_ids)))}


def _rgba(color: str, alpha: float) -> str:
    color = color.lstrip("#")
    r, g, b = (int(color[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def _layout(fig: go.Figure, title: str, height: int = 420) -> go.Figure:
    fig.update_layout(title=title, legend=LEGEND_BELOW, height=height, margin={"l": 60, "r": 20, "t": 60, "b": 40})
    return fig


@dataclass(frozen=True)
class MetricSpec:
    """How to draw one plan metric: value and CI half-width from a row (in display units), axis."""

    title: str
    value: Callable[[LeaderboardRow], float | None]
    ci: Callable[[LeaderboardRow], float | None]
    percent: bool = False        # 0-100 % axis

    def axis(self) -> dict:
        return dict(PERCENT_AXIS) if self.percent else {"rangemode": "tozero"}


def _pct(v: float | None) -> float | None:
    return None if v is None else 100.0 * v


METRICS: dict[str, MetricSpec] = {
    "accuracy": MetricSpec("test accuracy (%)", lambda r: _pct(r.accuracy_mean), lambda r: _pct(r.accuracy_ci), True),
    "f1": MetricSpec("macro F1 (%)", lambda r: _pct(r.f1_mean), lambda r: _pct(r.f1_ci), True),
    "peak_memory": MetricSpec("peak memory (GiB)",
                              lambda r: None if r.peak_memory is None else r.peak_memory / GiB, lambda r: None),
    "gpu_hours": MetricSpec("GPU hours per run (h)", lambda r: r.gpu_hours_mean, lambda r: r.gpu_hours_ci),
    "wall_time": MetricSpec("wall time per run (s)", lambda r: r.wall_time_mean, lambda r: None),
    "convergence": MetricSpec("steps to 90% of final dev accuracy (steps)",
                              lambda r: r.convergence_step_mean, lambda r: None),
}


def has_values(rows: Sequence[LeaderboardRow], metric: str) -> bool:
    """False when every row's value is missing, or zero for GPU hours (runs on CPU): such a chart
    would be empty, and the page says why instead of drawing it."""
    vals = [METRICS[metric].value(r) for r in rows]
    vals = [v for v in vals if v is not None]
    if metric == "gpu_hours":
        return any(v > 0 for v in vals)
    return bool(vals)


def metric_bars(rows: Sequence[LeaderboardRow], metric: str, colors: Mapping[int, str]) -> go.Figure:
    """Bars per variant (its colour) with 95% CI error bars, one panel per task, the baseline's
    value as a dashed line across each panel."""
    spec = METRICS[metric]
    tasks = list(dict.fromkeys(r.task for r in rows))
    fig = make_subplots(rows=1, cols=len(tasks), shared_yaxes=True, subplot_titles=tasks if len(tasks) > 1 else None,
                        horizontal_spacing=0.04)
    shown: set[int] = set()
    for col, task in enumerate(tasks, start=1):
        for r in (r for r in rows if r.task == task):
            value, ci = spec.value(r), spec.ci(r)
            fig.add_bar(name=r.label, x=[r.label], y=[value], marker_color=colors.get(r.variant_id),
                        legendgroup=str(r.variant_id), showlegend=r.variant_id not in shown,
                        error_y={"type": "data", "array": [ci or 0.0], "visible": ci is not None},
                        row=1, col=col)
            shown.add(r.variant_id)
            if r.is_baseline and value is not None:
                fig.add_hline(y=value, line_dash="dash", line_color="#555", row=1, col=col,
                              annotation_text="baseline", annotation_position="top left")
    fig.update_yaxes(title_text=spec.title, row=1, col=1)
    fig.update_yaxes(**spec.axis())
    fig.update_xaxes(showticklabels=False)  # the legend below names each bar's variant
    return _layout(fig, spec.title)


#: bars of variants with a diverged seed (their mean includes a blown-up run)
DIVERGED_COLOR = "#b0b0b0"


def delta_bars(board: Any, tb: Any, key: str, colors: Mapping[int, str]) -> go.Figure:
    """Who beats the baseline, by how much: per variant the paired difference from the baseline
    (percentage points for accuracy / F1) with its t-interval as the error bar, ``*`` / ``†`` on the
    bars whose interval excludes 0 / that survive Holm; diverged variants grey and hatched."""
    from zolab.platform import board_format as bf
    from zolab.platform.leaderboard import METRICS as BOARD_METRICS

    spec = BOARD_METRICS[key]
    scale = spec.scale if spec.unit == "%" else 1.0
    fig = go.Figure()
    for r in tb.rows:
        d = r.cells[key].delta if key in r.cells else None
        if r.is_baseline or d is None or d.mean is None:
            continue
        mean = d.mean * scale
        err = {"type": "data", "symmetric": False, "visible": d.has_interval,
               "array": [(d.high - d.mean) * scale if d.has_interval else 0.0],
               "arrayminus": [(d.mean - d.low) * scale if d.has_interval else 0.0]}
        marker = {"color": DIVERGED_COLOR, "pattern": {"shape": "/"}} if r.diverged else {
            "color": colors.get(r.variant_id)}
        fig.add_bar(name=bf.label_text(r), x=[bf.label_text(r)], y=[mean], marker=marker, error_y=err,
                    text=[bf.markers(d, board.alpha)], textposition="outside",
                    hovertext=[bf.delta_text(spec, d, board.alpha)], hoverinfo="text")
    fig.add_hline(y=0, line_color="#555", annotation_text=f"baseline ({tb.baseline})", annotation_position="top left")
    unit = " (pts)" if spec.unit == "%" else ""
    fig.update_yaxes(title_text=f"Δ {spec.label} vs baseline{unit}", zeroline=True)
    fig.update_xaxes(showticklabels=False)
    title = f"Δ {spec.label} vs the baseline, paired 95% interval ({tb.task})"
    return _layout(fig, title)


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


def accuracy_memory_scatter(rows: Sequence[LeaderboardRow], colors: Mapping[int, str]) -> go.Figure:
    """Accuracy (%) vs peak memory per variant (its colour) and task (marker), with each task's
    Pareto front as a dashed grey line."""
    fig = go.Figure()
    usable = [r for r in rows if r.peak_memory is not None]
    symbols = ("circle", "diamond", "square", "triangle-up", "cross")
    for ti, task in enumerate(dict.fromkeys(r.task for r in usable)):
        mine = [r for r in usable if r.task == task]
        pts = [(r.peak_memory / GiB, 100.0 * r.accuracy_mean) for r in mine]
        for r, (x, y) in zip(mine, pts):
            fig.add_scatter(name=f"{r.label} · {task}", mode="markers", x=[x], y=[y], legendgroup=str(r.variant_id),
                            marker={"color": colors.get(r.variant_id), "size": 11, "symbol": symbols[ti % len(symbols)]},
                            error_y={"type": "data", "array": [_pct(r.accuracy_ci) or 0.0]})
        front = pareto_front(pts)
        fig.add_scatter(name=f"Pareto front ({task})", mode="lines", line={"dash": "dash", "color": "#777"},
                        x=[pts[i][0] for i in front], y=[pts[i][1] for i in front])
    fig.update_xaxes(title_text="peak memory (GiB)", rangemode="tozero")
    fig.update_yaxes(title_text="test accuracy (%)", **PERCENT_AXIS)
    return _layout(fig, "accuracy vs peak memory")


def is_percent_curve(name: str) -> bool:
    return "accuracy" in name or name.endswith("f1")


def curve_figure(points: pd.DataFrame, name: str, labels: Mapping[int, str], colors: Mapping[int, str], *,
                 log_y: bool = False, group: str = "variant_id") -> go.Figure:
    """Curve ``name`` over steps: per variant (or per seed with ``group="seed"``) the mean over the
    group's runs, with a band from the lowest to the highest run at each step."""
    fig = go.Figure()
    mine = points[points["name"] == name]
    scale = 100.0 if is_percent_curve(name) else 1.0
    tasks = list(dict.fromkeys(mine["task"]))
    for (key, task), grp in mine.groupby([group, "task"], sort=False):
        by_step = grp.groupby("step")["value"]
        mean, low, high = by_step.mean() * scale, by_step.min() * scale, by_step.max() * scale
        steps = mean.index.tolist()
        vid = int(grp["variant_id"].iloc[0])
        color = colors.get(int(key)) if group == "variant_id" else colors.get(int(key), colors.get(vid))
        label = labels.get(int(key), str(key))
        trace_name = label if len(tasks) == 1 else f"{label} · {task}"
        if grp["job_id"].nunique() > 1:  # a band needs more than one run
            fig.add_scatter(x=steps + steps[::-1], y=high.tolist() + low.tolist()[::-1], fill="toself",
                            fillcolor=_rgba(color or "#888888", 0.15), line={"width": 0}, hoverinfo="skip",
                            legendgroup=f"{key}:{task}", showlegend=False, name=f"{trace_name} range")
        fig.add_scatter(name=trace_name, mode="lines", x=steps, y=mean.tolist(), legendgroup=f"{key}:{task}",
                        line={"color": color, "dash": TASK_DASHES[tasks.index(task) % len(TASK_DASHES)]})
    fig.update_xaxes(title_text="training step")
    if scale != 1.0:
        fig.update_yaxes(title_text=f"{name} (%)", **PERCENT_AXIS)
    else:
        fig.update_yaxes(title_text=name + (" (log scale)" if log_y else ""), type="log" if log_y else "linear")
    what = "mean over seeds, band: lowest to highest seed" if group == "variant_id" else "one line per seed"
    return _layout(fig, f"{name} ({what})")


def seed_colors(seeds: Sequence[int]) -> dict[int, str]:
    """Colours for the per-seed lines of one variant's drill-down."""
    return {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(sorted(dict.fromkeys(seeds)))}


__all__ = [
    "DIVERGED_COLOR",
    "METRICS",
    "PALETTE",
    "MetricSpec",
    "accuracy_memory_scatter",
    "curve_figure",
    "delta_bars",
    "has_values",
    "is_percent_curve",
    "metric_bars",
    "pareto_front",
    "seed_colors",
    "variant_colors",
]
