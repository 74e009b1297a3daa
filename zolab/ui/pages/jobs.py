"""Jobs: the live queue (auto-refreshing fragment), filters, per-job progress/loss/attempts/error,
cancel and retry."""

from __future__ import annotations

import streamlit as st

from zolab.db.repo.dashboard import job_status_values
from zolab.ui import actions, data
from zolab.ui.widgets import empty_state, md_escape, no_plans

REFRESH_S = 2.0

st.title("Jobs")
plans = data.plans()
if not plans:
    no_plans()
    st.stop()

names = {p.id: p.name for p in plans}
c1, c2, c3 = st.columns(3)
plan_id = c1.selectbox("Plan", [None, *names], format_func=lambda i: "all plans" if i is None else f"#{i} · {names[i]}",
                       key="jobs_plan")
statuses = c2.multiselect("State", job_status_values(), key="jobs_states")
variant_ids = None
if plan_id is not None:
    variants = {v.id: v.label for v in data.variants(plan_id)}
    picked = c3.multiselect("Variant", list(variants), format_func=lambda i: variants[i], key="jobs_variants")
    variant_ids = picked or None
live = st.toggle("Live refresh", value=True, key="jobs_live")


@st.fragment(run_every=REFRESH_S if live else None)
def job_table() -> None:
    rows = data.jobs(plan_id=plan_id, statuses=statuses or None, variant_ids=variant_ids)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.status] = counts.get(r.status, 0) + 1
    cols = st.columns(len(job_status_values()) + 1)
    for col, status in zip(cols, job_status_values()):
        col.metric(status, counts.get(status, 0))
    cols[-1].metric("workers", data.active_workers())
    if not rows:
        empty_state("No jobs match. Launch a plan on the Plans page, or run", "zolab run <plan id>")
        return
    st.dataframe(
        data.jobs_frame(rows), hide_index=True, width="stretch", key="jobs_table",
        column_config={
            "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent"),
            "loss": st.column_config.NumberColumn("loss", format="%.4f"),
        },
    )


job_table()

st.subheader("Cancel or retry a job")
c1, c2, c3 = st.columns([2, 1, 1])
job_id = c1.number_input("Job id", min_value=1, step=1, value=None, key="action_job_id")
if c2.button("Cancel job", key="cancel_job", disabled=job_id is None):
    try:
        st.success(f"Job {int(job_id)} is now {actions.cancel(int(job_id))}.")
    except Exception as exc:  # noqa: BLE001  (illegal transitions are the user's to read)
        st.error(md_escape(exc))
if c3.button("Retry job", key="retry_job", disabled=job_id is None):
    try:
        st.success(f"Job {int(job_id)} is now {actions.retry(int(job_id))}.")
    except Exception as exc:  # noqa: BLE001
        st.error(md_escape(exc))
