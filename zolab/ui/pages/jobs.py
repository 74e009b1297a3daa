"""Jobs: the live queue (an auto-refreshing fragment) with start, end, duration and worker per job,
filters, and cancel / retry of the rows selected in the table.

While rows are selected the table stops refreshing and keeps the same jobs in the same places, so
the buttons act on exactly the jobs the user sees highlighted (a state change under a filter would
otherwise move rows under the selection).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone

import streamlit as st

from zolab.db.repo.dashboard import job_status_values
from zolab.ui import actions, data, tables
from zolab.ui.widgets import PLAN_STATE, empty_state, md_escape, no_plans, remember_plan

REFRESH_S = 2.0

st.title("Jobs")
plans = data.plans()
if not plans:
    no_plans()
    st.stop()

names = {p.id: p.name for p in plans}
options = [None, *names]
if "jobs_plan" not in st.session_state or st.session_state["jobs_plan"] not in options:
    st.session_state["jobs_plan"] = st.session_state.get(PLAN_STATE) if st.session_state.get(PLAN_STATE) in names else None
c1, c2, c3 = st.columns(3)
plan_id = c1.selectbox("Plan", options, format_func=lambda i: "all plans" if i is None else f"#{i} · {names[i]}",
                       key="jobs_plan")
if plan_id is not None:
    remember_plan(plan_id)
statuses = c2.multiselect("State", job_status_values(), key="jobs_states")
variant_ids = None
if plan_id is not None:
    variants = {v.id: v.label for v in data.variants(plan_id)}
    picked = c3.multiselect("Variant", list(variants), format_func=lambda i: variants[i], key="jobs_variants")
    variant_ids = picked or None

# a new filter is a new table (and an empty selection)
TABLE = "jobs_table_" + hashlib.sha1(repr((plan_id, statuses, variant_ids)).encode()).hexdigest()[:10]
IDS = TABLE + ":ids"


def _selected_rows() -> list[int]:
    """Row positions selected in the current table (its widget state; a dict in tests)."""
    state = st.session_state.get(TABLE)
    return list(state["selection"]["rows"]) if state else []


has_selection = bool(_selected_rows())
live = st.toggle("Live refresh", value=True, key="jobs_live",
                 help="Pauses while rows are selected, so the selection stays on the same jobs.")


def _act(verb: str, job_ids: list[int]) -> None:
    """Cancel or retry each job; one line for what changed and one per refusal (the queue's reason)."""
    fn = actions.cancel if verb == "cancel" else actions.retry
    done, refused = [], []
    for job_id in job_ids:
        try:
            done.append(f"{job_id} → {fn(job_id)}")
        except Exception as exc:  # noqa: BLE001  (illegal transitions are the user's to read)
            refused.append(f"job {job_id}: {exc}")
    if done:
        st.session_state["jobs_flash"] = f"{verb.capitalize()}: job " + ", ".join(done) + "."
    st.session_state["jobs_refused"] = refused
    st.rerun()  # redraw the table with the new states, then the messages


@st.fragment(run_every=REFRESH_S if live and not has_selection else None)
def job_table() -> None:
    rows_selected = _selected_rows()
    frozen = st.session_state.get(IDS) if rows_selected else None
    if frozen:  # the same jobs in the same order as when the user selected (fresh states)
        fresh = {r.id: r for r in data.jobs(job_ids=frozen)}
        rows = [fresh[i] for i in frozen if i in fresh]
    else:
        rows = data.jobs(plan_id=plan_id, statuses=statuses or None, variant_ids=variant_ids)
    st.session_state[IDS] = [r.id for r in rows]
    if bool(rows_selected) != has_selection:  # selection started or cleared: switch live refresh
        st.rerun()

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
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    # only the error column comes and goes: the others stay put while jobs start and end
    # only the error column comes and goes: the others stay put while jobs start and end
    frame, hidden = tables.drop_empty(tables.jobs_frame(rows, now), keep=[c for c in tables.JOB_COLUMNS if c != "error"])
    one_task = frame["task"].nunique() == 1
    if one_task:  # named once below instead of in every row (the table fits 1280 px)
        frame = frame.drop(columns=["task"])
    st.dataframe(
        frame, hide_index=True, width="stretch", key=TABLE, placeholder="", on_select="rerun", selection_mode="multi-row",
        column_config={
            "id": st.column_config.NumberColumn("id", width=45, pinned=True),
            "variant": st.column_config.TextColumn("variant", width=140, pinned=True),
            "task": st.column_config.TextColumn("task", width=110),
            "seed": st.column_config.NumberColumn("seed", width=45),
            "stage": st.column_config.TextColumn("stage", width=65),
            "status": st.column_config.TextColumn("status", width=80),
            "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent",
                                                        width=80),
            "loss": st.column_config.NumberColumn("loss", format="%.4g", width=55),
            "attempts": st.column_config.TextColumn("tries", width=55, help="attempts / allowed"),
            "start (UTC)": st.column_config.DatetimeColumn("start", format="HH:mm:ss", width=70,
                                                           help="first claim (UTC)"),
            "end (UTC)": st.column_config.DatetimeColumn("end", format="HH:mm:ss", width=70, help="UTC"),
            "duration (s)": st.column_config.NumberColumn("time (s)", format="%.1f", width=65,
                                                          help="from the first claim to the end (or now)"),
            "worker": st.column_config.TextColumn("worker", width=90, help="host:pid of the worker that ran it"),
            "error": st.column_config.TextColumn("error", width=200, help="the error's last line (full text in "
                                                 "the Leaderboard page's variant details)"),
        },
    )
    notes = [f"Task {rows[0].task}."] if one_task else []
    notes += [f"Showing the first {data.JOB_LIMIT} jobs."] if len(rows) >= data.JOB_LIMIT else []
    if sentence := tables.hidden_sentence(hidden):
        notes.append(sentence)
    if notes:
        st.caption(" ".join(notes))

    selected = [rows[i].id for i in rows_selected if i < len(rows)]
    st.caption(("Selected: job " + ", ".join(map(str, selected)) + ". Live refresh is paused.") if selected
               else "Select rows (the boxes at the left of the table) to cancel or retry them.")
    b1, b2, _ = st.columns([2, 2, 5])
    if b1.button(f"Cancel {len(selected)} selected", key="cancel_selected", disabled=not selected):
        _act("cancel", selected)
    if b2.button(f"Retry {len(selected)} selected", key="retry_selected", disabled=not selected):
        _act("retry", selected)
    if "jobs_flash" in st.session_state:
        st.success(st.session_state.pop("jobs_flash"))
    for line in st.session_state.pop("jobs_refused", []):
        st.error(md_escape(line))


job_table()
