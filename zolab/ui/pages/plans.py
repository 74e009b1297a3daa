"""Plans: upload a plan file, see validation errors and how each ablation was understood,
override a resolution, save, preview the expansion and budget, launch. Plan list with job counts."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from zolab.platform.errors import PlanError
from zolab.ui import actions, data, tables
from zolab.ui.candidates import candidate_picker
from zolab.ui.widgets import issues_frame, md_escape, no_plans, plain, plan_picker, remember_plan

st.title("Plans")
if "flash" in st.session_state:  # a message from the action before the last rerun (our own text)
    st.success(st.session_state.pop("flash"))

# ---------------------------------------------------------------- plan list
plans = data.plans()
st.subheader("Stored plans")
if plans:
    st.dataframe(tables.plans_frame(plans, data.plans_with_results()), hide_index=True, width="stretch",
                 key="plan_list", column_config={
                     "id": st.column_config.NumberColumn(width=40),
                     "name": st.column_config.TextColumn(pinned=True, width=180),
                     "format": st.column_config.TextColumn(width=75), "file": st.column_config.TextColumn(width=120),
                     "created (UTC)": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm", width=120),
                     "ablations": st.column_config.NumberColumn(width=70),
                     "variants": st.column_config.NumberColumn(width=65),
                     "jobs": st.column_config.NumberColumn(width=45),
                     "job states": st.column_config.TextColumn(width=130),
                     "results": st.column_config.TextColumn(width=55)})
else:
    no_plans()

# ---------------------------------------------------------------- upload
st.subheader("Upload a plan")
uploaded = st.file_uploader(
    "Plan file (.yaml, .yml, .md, .jsonl, .txt)", type=list(actions.UPLOAD_TYPES), key="plan_file",
    help="YAML plans are complete; JSONL (AblationBench) and planner markdown take the baseline, "
         "tasks and seeds from the baseline chosen below.",
)
baselines = actions.baseline_files()
baseline_choice = st.selectbox(
    "Baseline for JSONL / markdown plans", ["(built-in default)"] + [p.name for p in baselines],
    key="baseline_choice",
)
col_t, col_s = st.columns(2)
tasks_text = col_t.text_input("Tasks (comma-separated, optional override)", key="tasks_override")
seeds_text = col_s.text_input("Seeds (comma-separated, optional override)", key="seeds_override")


def _split(text: str) -> list[str] | None:
    items = [t.strip() for t in text.split(",") if t.strip()]
    return items or None


def _show_plan_error(err: PlanError, what: str) -> None:
    st.error(f"{what}: {len(err.issues)} problem(s); nothing was saved.", icon=":material/block:")
    st.dataframe(issues_frame(err.issues), hide_index=True, width="stretch", key="plan_errors")


def _estimate_metrics(exp) -> None:
    """Variants, jobs, estimated hours (named by the device and card they assume) and peak memory,
    with the sentence that says what the estimate rests on."""
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Variants", len(exp.variants))
    c2.metric("Jobs", len(exp.jobs))
    c3.metric(f"Est. {exp.estimate_label}", f"{exp.total_hours:.3g}", help=exp.estimate_note)
    c4.metric("Est. peak memory (GiB)", f"{exp.max_memory_bytes / 1024**3:.2f}")
    st.caption(md_escape(f"Estimate: {exp.estimate_note}."))


def _upload_estimate(prepared) -> None:
    try:
        exp = actions.preview_expansion(prepared)
    except Exception as exc:  # noqa: BLE001  (an estimate that cannot be made is said, not raised)
        st.warning(f"No estimate: {md_escape(exc)}")
        return
    _estimate_metrics(exp)
    if exp.budget_gpu_hours is not None:
        (st.success if exp.within_budget else st.warning)(md_escape(exp.verdict()))


def _launch_controls(plan_id: int, exp) -> None:
    """The Launch button; above the budget, or above 10 GPU-hours with no budget, a confirmation first."""
    check = exp.launch_check()
    confirmed = True
    if check.needs_confirmation:
        st.warning(f"Launching needs your confirmation: {md_escape(check.reason)}.", icon=":material/warning:")
        confirmed = st.checkbox(f"Yes, launch {len(exp.jobs)} jobs (est. {exp.total_hours:.3g} "
                                f"{md_escape(exp.estimate_label)})", key="confirm_launch")
    if st.button("Launch", type="primary", key="launch", disabled=not confirmed):
        try:
            created, existing, started = actions.launch(plan_id, force=check.needs_confirmation)
        except Exception as exc:  # noqa: BLE001  (budget / DB refusals shown as one line)
            st.error(f"Launch refused: {md_escape(exc)}")
        else:
            st.success(f"Enqueued {created} job(s) ({existing} already queued or done); "
                       f"started {started} local worker(s). Watch them on the Jobs page.")


def _launch_section() -> None:
    plans = data.plans()
    if not plans:
        return
    st.subheader("Expansion and launch")
    plan_id = plan_picker("launch_plan", label="Plan to launch")
    abl = data.ablations(plan_id)
    if abl:
        st.dataframe(pd.DataFrame([{"ablation": a.name, "component": a.component or "",
                                    "status": a.status + (" (overridden)" if a.overridden else ""),
                                    "explanation": a.explanation} for a in abl]),
                     hide_index=True, width="stretch", key="stored_ablations", column_config={
                         "ablation": st.column_config.TextColumn(pinned=True, width="medium"),
                         "component": st.column_config.TextColumn(width="small"),
                         "status": st.column_config.TextColumn(width="small"),
                         "explanation": st.column_config.TextColumn(width="large")})
    try:
        exp = actions.expansion(plan_id)
    except Exception as exc:  # noqa: BLE001  (scheduler refusals are shown, not raised)
        st.error(f"Cannot expand this plan: {md_escape(exc)}")
        return
    _estimate_metrics(exp)
    (st.success if exp.within_budget else st.warning)(md_escape(exp.verdict()))
    if exp.skipped:
        st.dataframe(pd.DataFrame([{"skipped ablation": s.name, "status": s.status, "reason": s.reason}
                                   for s in exp.skipped]), hide_index=True, width="stretch", key="skipped")
    with st.expander("Jobs to run"):
        st.dataframe(pd.DataFrame([{"variant": j.variant_label, "task": j.task, "seed": j.seed, "stage": j.stage,
                                    f"est. {j.estimate.label}": j.estimate.hours,
                                    "est. memory (GiB)": j.estimate.memory_bytes / 1024**3}
                                   for j in exp.jobs]), hide_index=True, width="stretch", key="job_preview")
    _launch_controls(plan_id, exp)


if uploaded is not None:
    baseline = None
    if baseline_choice != "(built-in default)":
        baseline = next(p for p in baselines if p.name == baseline_choice)
    overrides: dict[str, str] = dict(st.session_state.get("overrides", {}))
    prepared = None
    try:
        seeds = [int(s) for s in _split(seeds_text) or []] or None
    except ValueError:
        st.error("Seeds must be whole numbers separated by commas.", icon=":material/block:")
    else:
        try:
            prepared = actions.prepare_upload(uploaded.getvalue(), uploaded.name, baseline=baseline,
                                              tasks=_split(tasks_text), seeds=seeds, overrides=overrides)
        except PlanError as err:
            _show_plan_error(err, "The plan is invalid")

    if prepared is not None:
        plan = prepared.plan
        st.success(f"Parsed {len(plan.ablations)} ablation(s) from a {prepared.format} plan.")
        plain(f"Plan name: {plan.name}")
        st.markdown("**How each ablation was understood**")
        table = pd.DataFrame(
            [{"ablation": a.name, "ablated part": a.ablated_part, "action": a.action.value,
              "component": r.component or "", "status": r.status, "confidence": round(r.confidence, 2),
              "variants": ", ".join(label for label, _ in r.variants), "explanation": r.explanation,
              "overridden": r.overridden}
             for a, r in zip(plan.ablations, prepared.resolutions)]
        )
        st.dataframe(table, hide_index=True, width="stretch", key="resolution_table")
        candidate_picker(plan.ablations, prepared.resolutions, overrides)

        with st.expander("Override a component", expanded=bool(prepared.unresolved)):
            choices = ["(automatic)", *actions.components()]
            for i, (a, r) in enumerate(zip(plan.ablations, prepared.resolutions)):
                current = overrides.get(a.name, "(automatic)")
                plain(f"{i + 1}. {a.name} [{r.status}]")
                pick = st.selectbox(f"Component for ablation {i + 1}", choices,
                                    index=choices.index(current) if current in choices else 0, key=f"override_{i}")
                if pick == "(automatic)":
                    overrides.pop(a.name, None)
                else:
                    overrides[a.name] = pick
            if overrides != st.session_state.get("overrides", {}):
                st.session_state["overrides"] = overrides
                st.rerun()

        _upload_estimate(prepared)

        for line in prepared.warnings:
            st.warning(md_escape(line))
        if prepared.unresolved:
            st.warning(f"{len(prepared.unresolved)} ablation(s) are unresolved or ambiguous: pick a reading "
                       "above, or save the plan as it is (they are stored and not run; the others run).")
        if st.button("Save plan", type="primary", key="save_plan"):
            try:
                plan_id, created = actions.save(prepared, allow_unresolved=True)
            except PlanError as err:
                _show_plan_error(err, "The plan was refused")
            else:
                remember_plan(plan_id)
                st.session_state["flash"] = (
                    f"Saved as plan #{plan_id}." if created
                    else f"This plan is already stored as plan #{plan_id}; nothing was written.")
                st.rerun()
else:
    st.session_state.pop("overrides", None)

# ---------------------------------------------------------------- preview + launch

_launch_section()
