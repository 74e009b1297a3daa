"""The per-variant drill-down under the leaderboard: what this variant changes against the baseline
(config diff and Optuna's tuned params), its value on every seed next to the baseline's on the same
seed, its curves seed by seed, and the log of one of its jobs (state changes and the error's tail).

A row selected in the leaderboard table picks the variant (:func:`choose`); the selectbox can
change it afterwards, and keeps it across reruns.
"""

from __future__ import annotations

import streamlit as st

from zolab.ui import charts, data, tables
from zolab.ui.widgets import plain

KEY = "drill_variant"
_APPLIED = "_drill_applied_selection"
ERROR_TAIL_LINES = 30


def choose(variant_id: int) -> None:
    """Show ``variant_id`` (a new table selection wins over the selectbox, an old one does not)."""
    if st.session_state.get(_APPLIED) != variant_id:
        st.session_state[KEY] = variant_id
        st.session_state[_APPLIED] = variant_id


def show(plan_id: int, task: str | None) -> None:
    variants = data.variants(plan_id)
    if not variants:
        return
    by_id = {v.id: v for v in variants}
    base = next((v for v in variants if v.is_baseline), variants[0])
    st.subheader("Variant details")
    if st.session_state.get(KEY) not in by_id:
        st.session_state[KEY] = next((v.id for v in variants if not v.is_baseline), base.id)
    vid = st.selectbox("Variant", list(by_id), key=KEY,
                       format_func=lambda i: ("★ " if by_id[i].is_baseline else "") + by_id[i].label)
    v = by_id[vid]

    left, right = st.columns(2)
    with left:
        st.markdown("**What it changes against the baseline**")
        diff = tables.config_diff(base.config, v.config)
        if v.id == base.id:
            st.caption("This is the baseline.")
        elif diff.empty:
            st.caption("Same configuration as the baseline.")
        else:
            st.dataframe(diff, hide_index=True, width="stretch", key="drill_diff")
        if v.ablations:
            plain("Serves: " + "; ".join(map(str, v.ablations)))
    with right:
        if v.tuned_params:
            st.markdown("**Tuned by Optuna** (the final seeds run with these instead)")
            st.dataframe(tables.tuned_frame(v.tuned_params), hide_index=True, width="stretch", key="drill_tuned")
        else:
            st.caption("Not tuned: the final seeds run with the configuration as planned.")

    st.markdown("**Per seed, against the baseline on the same seed**")
    results = [r for r in data.seed_results([v.id, base.id]) if task is None or r.task == task]
    mine = [r for r in results if r.variant_id == v.id]
    if not mine:
        st.caption("No finished seed yet.")
    else:
        frame, _ = tables.drop_empty(tables.seeds_frame(mine, [r for r in results if r.variant_id == base.id]))
        if frame["task"].nunique() == 1:
            frame = frame.drop(columns=["task"])
        st.dataframe(frame, hide_index=True, width="stretch", key="drill_seeds", placeholder="",
                     column_config={c: st.column_config.NumberColumn(c, format="%.1f") for c in frame.columns
                                    if c.endswith(("(%)", "(pts)", "(s)"))})

    points = data.curves([v.id], task=task)
    if points.empty:
        st.caption("No curve points recorded for this variant.")
    else:
        log_loss = st.toggle("Log scale for loss", key="drill_log")
        seeds = sorted(int(s) for s in points["seed"].unique())
        cols = st.columns(2)
        for i, name in enumerate(sorted(points["name"].unique())):
            fig = charts.curve_figure(points, name, {s: f"seed {s}" for s in seeds}, charts.seed_colors(seeds),
                                      log_y=log_loss and not charts.is_percent_curve(name), group="seed")
            cols[i % 2].plotly_chart(fig, key=f"drill_curve_{name}")
    _job_log(plan_id, v.id)


def _job_log(plan_id: int, variant_id: int) -> None:
    jobs = data.jobs(plan_id=plan_id, variant_ids=[variant_id])
    if not jobs:
        return
    st.markdown("**Job log**")
    # the jobs worth reading first: failed / diverged / cancelled, then the rest by id
    order = sorted(jobs, key=lambda j: (j.status not in ("failed", "diverged", "cancelled"), j.id))
    names = {j.id: f"job {j.id} · {j.task} · seed {j.seed} · {j.stage}"
             + (f" #{j.trial_number}" if j.trial_number is not None else "") + f" · {j.status}" for j in order}
    job_id = st.selectbox("Job", list(names), format_func=names.__getitem__, key="drill_job")
    st.dataframe(tables.events_frame(data.job_events([job_id])), hide_index=True, width="stretch",
                 key="drill_events")
    job = next(j for j in jobs if j.id == job_id)
    if job.error:
        lines = job.error.strip().splitlines()
        st.caption(f"Error (last {min(len(lines), ERROR_TAIL_LINES)} of {len(lines)} lines):")
        st.code("\n".join(lines[-ERROR_TAIL_LINES:]), language=None)
    else:
        st.caption("No error recorded for this job.")


__all__ = ["choose", "show"]
