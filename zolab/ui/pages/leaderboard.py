"""Leaderboard: per plan and task, one row per variant: mean ± 95% CI over seeds (percent), and the
paired difference from the baseline over the same seeds with its t-interval (``*``: excludes 0,
``†``: still significant after Holm), diverged variants last with their own colour; the notes
that say how to read it; CSV / Markdown / LaTeX exports (the same text as ``zolab leaderboard``).
Select a row (or pick a variant) for its drill-down: config diff vs the baseline, per-seed values
and curves, job logs."""

from __future__ import annotations

import streamlit as st

from zolab.platform import board_format as bf
from zolab.ui import data, drilldown, tables
from zolab.ui.widgets import empty_state, md_escape, plan_picker

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
chosen_task = None if task == "(all tasks)" else task
board = data.board(plan_id, chosen_task)

selected_variant = None
for i, tb in enumerate(board.tasks):
    if len(board.tasks) > 1:
        st.subheader(f"Task {md_escape(tb.task)}")
    frame, more, ids, diverged = tables.board_frame(board, tb)
    numeric = [c for c in frame.columns if c not in ("variant",)]
    event = st.dataframe(
        tables.style_diverged(frame, diverged), hide_index=True, width="stretch", key=f"leaderboard_table_{i}",
        on_select="rerun", selection_mode="single-row", row_height=35,
        column_config={
            "variant": st.column_config.TextColumn("variant", pinned=True, width=150,
                                                   help="★ the baseline; select a row for its details"),
            "seeds": st.column_config.TextColumn("seeds", width=50, alignment="right"),
            **{c: st.column_config.TextColumn(c, alignment="right",
                                              width=175 if c.startswith("Δ") else 125 if "memory" in c or
                                              "allocated" in c else 95) for c in numeric
               if c != "seeds"},
        },
    )
    if not more.empty:
        with st.expander("More measurements: " + ", ".join(c for c in more.columns if c != "variant")):
            st.dataframe(tables.style_diverged(more, diverged), hide_index=True, width="stretch",
                         key=f"leaderboard_more_{i}", column_config={
                             "variant": st.column_config.TextColumn("variant", pinned=True, width=170),
                             **{c: st.column_config.TextColumn(c, alignment="right") for c in more.columns
                                if c != "variant"}})
    if len(board.tasks) == 1:
        st.caption(f"Task {md_escape(tb.task)}.")
    for note in bf.task_notes(board, tb):
        st.caption(md_escape(note))
    rows = event["selection"]["rows"] if event is not None else []
    if rows:
        selected_variant = ids[rows[0]]

c1, c2, c3, _ = st.columns([1, 1, 1, 3])
stem = f"zolab-plan{plan_id}-leaderboard"
c1.download_button("Download CSV", bf.render(board, "csv").encode(), file_name=f"{stem}.csv", mime="text/csv",
                   key="lb_csv")
c2.download_button("Markdown", bf.render(board, "markdown").encode(), file_name=f"{stem}.md", mime="text/markdown",
                   key="lb_md")
c3.download_button("LaTeX", bf.render(board, "latex").encode(), file_name=f"{stem}.tex", mime="text/x-tex",
                   key="lb_tex")

# ---------------------------------------------------------------- drill-down
if selected_variant is not None:
    drilldown.choose(selected_variant)
drilldown.show(plan_id, chosen_task)
