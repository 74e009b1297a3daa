"""Compare: pick variants; per plan metric bars with 95% CIs and the baseline as a line, accuracy vs
memory with the Pareto front, loss and dev-accuracy curves over steps (mean and the spread over
seeds, loss optionally on a log axis), and compute. One colour per variant on every chart; a chart
with nothing to draw is replaced by a sentence that says why."""

from __future__ import annotations

import streamlit as st

from zolab.platform.leaderboard import pareto_front
from zolab.ui import charts, data
from zolab.ui.widgets import empty_state, md_escape, plan_picker

st.title("Compare variants")
plan_id = plan_picker("cmp_plan")
if plan_id is None:
    st.stop()
rows_all = data.leaderboard(plan_id)
if not rows_all:
    empty_state("Nothing to compare yet: this plan has no finished results. Launch it, or run",
                f"zolab run {plan_id}")
    st.stop()

labels = {r.variant_id: r.label for r in rows_all}
colors = charts.variant_colors([v.id for v in data.variants(plan_id)] or list(labels))
tasks = list(dict.fromkeys(r.task for r in rows_all))
c1, c2 = st.columns([3, 1])
chosen = c1.multiselect("Variants", list(labels), default=list(labels), format_func=lambda i: labels[i],
                        key="cmp_variants")
task = c2.selectbox("Task", ["(all tasks)", *tasks], key="cmp_task")
rows = [r for r in rows_all if r.variant_id in chosen and (task == "(all tasks)" or r.task == task)]
if not rows:
    empty_state("Pick at least one variant with results.")
    st.stop()


def _grid(figures: list[tuple[str, object]]) -> None:
    """Figures two to a row (each keyed, so reruns keep their zoom)."""
    cols = st.columns(2)
    for i, (key, fig) in enumerate(figures):
        cols[i % 2].plotly_chart(fig, key=key)


board = data.board(plan_id, None if task == "(all tasks)" else task)
st.subheader("Who beats the baseline")
deltas = [(f"delta_{key}_{i}", charts.delta_bars(board, tb, key, colors))
          for i, tb in enumerate(board.tasks) for key in ("accuracy", "f1")
          if tb.baseline is not None and key in tb.shown and len(tb.rows) > 1]
if deltas:
    _grid(deltas)
    st.caption("Bars: variant minus baseline, seed by seed (the same seed draws the same data), with the paired "
               "95% t-interval; * the interval excludes 0, † still significant after Holm's correction over the "
               "plan's variants. Grey hatched bars: a seed diverged. All variants are shown here, whatever is "
               "picked above.")
else:
    st.caption("Not drawn: no baseline result to compare with.")

asked = [m for m in data.plan_metrics(plan_id) if m in charts.METRICS] or ["accuracy", "f1", "peak_memory"]
st.subheader("Metrics the plan asked for")
drawn = [m for m in asked if m != "gpu_hours" and charts.has_values(rows, m)]
_grid([(f"bars_{m}", charts.metric_bars(rows, m, colors)) for m in drawn])
if missing := [charts.METRICS[m].title for m in asked if m not in drawn and m != "gpu_hours"]:
    st.caption("Not drawn, no run recorded a value: " + ", ".join(missing) + ".")

st.subheader("Accuracy vs memory")
fronts = [(tb, pareto_front(tb)) for tb in board.tasks]
noisy = [f.note for _, f in fronts if not f.labels and f.note]
if noisy:  # memory that does not separate the variants beyond their run-to-run spread: no front
    for note in noisy:
        st.caption(md_escape(note))
elif any(r.peak_memory is not None for r in rows):
    st.plotly_chart(charts.accuracy_memory_scatter(rows, colors), key="pareto")
else:
    st.caption("Not drawn: no run of these variants recorded its memory.")

st.subheader("Curves over training steps")
points = data.curves(chosen, task=None if task == "(all tasks)" else task)
if points.empty:
    st.caption("Not drawn: no curve points were recorded for these variants (zero-shot rows do not train).")
else:
    log_loss = st.toggle("Log scale for loss", key="cmp_log", help="Loss that blows up (divergence) flattens "
                         "every other curve on a linear axis.")
    names = sorted(points["name"].unique())
    _grid([(f"curve_{n}", charts.curve_figure(points, n, labels, colors,
                                              log_y=log_loss and not charts.is_percent_curve(n))) for n in names])

st.subheader("Compute")
if charts.has_values(rows, "gpu_hours"):
    st.plotly_chart(charts.metric_bars(rows, "gpu_hours", colors), key="gpu_hours")
elif "wall_time" in drawn:
    st.caption("No GPU hours to draw: every run was on CPU (wall time per run is drawn above).")
else:
    st.caption("No GPU hours to draw: every run was on CPU. Wall time per run instead:")
    st.plotly_chart(charts.metric_bars(rows, "wall_time", colors), key="wall_time")
