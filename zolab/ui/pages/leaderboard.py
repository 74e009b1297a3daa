"""Leaderboard: per plan and task, one row per variant with mean and 95% CI over seeds,
memory, GPU hours and deltas vs the baseline; sortable; CSV download."""

from __future__ import annotations

import streamlit as st

from zolab.ui import data
from zolab.ui.widgets import empty_state, plan_picker

st.title("Leaderboard")
plan_id = plan_picker("lb_plan")
if plan_id is None:
    st.stop()
tasks = data.leaderboard_tasks(plan_id)
if not tasks:
    empty_state("No finished results for this plan yet. Launch it on the Plans page and watch the Jobs page, or run",
                f"zolab run {plan_id}")
    st.stop()
task = st.selectbox("Task", ["(all tasks)", *tasks], key="lb_task")
rows = data.leaderboard(plan_id, None if task == "(all tasks)" else task)
frame = data.leaderboard_frame(rows)
num = {"format": "%.4f"}
st.dataframe(
    frame, hide_index=True, width="stretch", key="leaderboard_table",
    column_config={
        **{c: st.column_config.NumberColumn(c, **num) for c in
           ("accuracy", "accuracy ±95% CI", "Δ accuracy", "F1", "F1 ±95% CI", "Δ F1",
            "GPU hours (mean)", "GPU hours (total)", "Δ GPU hours")},
        **{c: st.column_config.NumberColumn(c, format="%.2f") for c in
           ("peak mem allocated (GiB)", "peak mem reserved (GiB)", "peak RSS (GiB)", "Δ peak mem (GiB)",
            "wall time (s)")},
    },
)
st.caption("Means over finished seeds; ± is the 95% Student-t half-width (blank for one seed). "
           "Δ columns are differences from the baseline row of the same task. Click a header to sort.")
st.download_button("Download CSV", frame.to_csv(index=False).encode(), file_name=f"zolab-plan{plan_id}-leaderboard.csv",
                   mime="text/csv", key="lb_csv")
