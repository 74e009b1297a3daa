"""Leaderboard: per plan and task, one row per variant (mean ± 95% CI over seeds, percentages,
differences from the baseline), empty columns hidden, CSV download; select a row (or pick a
variant) for its drill-down: config diff vs the baseline, per-seed values and curves, job logs."""

from __future__ import annotations

import streamlit as st

from zolab.ui import data, drilldown, tables
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
frame, hidden = tables.drop_empty(tables.leaderboard_frame(rows), keep=("variant id",))
one_task = frame["task"].nunique() == 1
if one_task:  # the task is named below the table instead of in every row
    frame = frame.drop(columns=["task"])
event = st.dataframe(
    frame, hide_index=True, width="stretch", key="leaderboard_table", placeholder="", on_select="rerun", selection_mode="single-row",
    column_order=[c for c in frame.columns if c != "variant id"],
    column_config={
        "variant": st.column_config.TextColumn("variant", pinned=True, width="medium",
                                               help="★ marks the baseline; select a row for its details"),
        "task": st.column_config.TextColumn("task", width="small"),
        **{c: st.column_config.TextColumn(c, alignment="right") for c in
           ("accuracy (%)", "Δ accuracy (pts)", "F1 (%)", "Δ F1 (pts)")},
        "seeds": st.column_config.NumberColumn("seeds", width="small"),
        **{c: st.column_config.NumberColumn(c, format="%.2f", width="small") for c in
           ("peak GPU mem (GiB)", "peak RSS (GiB)", "wall time (s)")},
        "GPU hours": st.column_config.NumberColumn("GPU hours", format="%.4f", width="small"),
    },
)
st.caption((f"Task {rows[0].task}. " if one_task else "")
           + "Means over finished seeds; ± is the 95% Student-t half-width (none for one seed). Δ columns are "
           "differences from the baseline (★) of the same task, in percentage points. Select a row for its details.")
if sentence := tables.hidden_sentence(hidden):
    st.caption(sentence)
st.download_button("Download CSV", tables.export_csv(tables.leaderboard_export(rows)),
                   file_name=f"zolab-plan{plan_id}-leaderboard.csv", mime="text/csv", key="lb_csv")

# ---------------------------------------------------------------- drill-down
selected = event["selection"]["rows"] if event is not None else []
if selected:
    drilldown.choose(int(frame.iloc[selected[0]]["variant id"]))
drilldown.show(plan_id, None if task == "(all tasks)" else task)
