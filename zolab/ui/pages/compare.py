"""Compare: pick variants; bars with error bars per plan metric, accuracy vs memory with the
Pareto front, loss and dev-accuracy curves over steps, GPU hours per variant."""

from __future__ import annotations

import streamlit as st

from zolab.ui import charts, data
from zolab.ui.widgets import empty_state, plan_picker

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
tasks = list(dict.fromkeys(r.task for r in rows_all))
c1, c2 = st.columns([3, 1])
chosen = c1.multiselect("Variants", list(labels), default=list(labels), format_func=lambda i: labels[i],
                        key="cmp_variants")
task = c2.selectbox("Task", ["(all tasks)", *tasks], key="cmp_task")
rows = [r for r in rows_all if r.variant_id in chosen and (task == "(all tasks)" or r.task == task)]
if not rows:
    empty_state("Pick at least one variant with results.")
    st.stop()

metrics = [m for m in data.plan_metrics(plan_id) if m in charts.METRICS] or ["accuracy", "f1", "peak_memory",
                                                                              "gpu_hours"]
st.subheader("Metrics the plan asked for")
cols = st.columns(2)
for i, metric in enumerate(metrics):
    cols[i % 2].plotly_chart(charts.metric_bars(rows, metric), key=f"bars_{metric}")

st.subheader("Accuracy vs memory")
if any(r.peak_memory is not None for r in rows):
    st.plotly_chart(charts.accuracy_memory_scatter(rows), key="pareto")
else:
    st.info("No memory measurements for these runs.")

st.subheader("Curves over training steps")
points = data.curves(chosen, task=None if task == "(all tasks)" else task)
if points.empty:
    st.info("No curve points recorded for these variants.")
else:
    names = sorted(points["name"].unique())
    cols = st.columns(2)
    for i, name in enumerate(names):
        cols[i % 2].plotly_chart(charts.curve_figure(points, name, labels), key=f"curve_{name}")

st.subheader("Compute")
st.plotly_chart(charts.gpu_hours_bars(rows), key="gpu_hours")
