"""Tuning: the Optuna studies of the chosen plan, named by variant and task; per study its trials
(state, pruned ones as pruned with their step, dev accuracy, params, job), the best trial, the
history, and parameter importances once enough trials have completed to say anything."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from zolab.ui import data, tables
from zolab.ui.charts import LEGEND_BELOW
from zolab.ui.widgets import empty_state, md_escape, plain, plan_picker

#: parameter importances (fANOVA) from fewer completed trials than this are noise: not drawn
MIN_TRIALS_PER_PARAM = 2


def importance_minimum(n_params: int) -> int:
    """Completed trials needed before importances are drawn: 2 per tuned parameter plus 1, at least 5."""
    return max(5, MIN_TRIALS_PER_PARAM * n_params + 1)


st.title("Tuning")
studies = data.studies()
if not studies:
    empty_state("No Optuna studies yet. Add a `tuning:` section to a plan (see ablations/quickstart.yaml) "
                "and launch it; each variant x task gets a study here. From the shell:",
                "zolab run <plan id>")
    st.stop()

plan_id = plan_picker("tune_plan")
mine = [s for s in studies if s["attrs"].get("plan_id") == plan_id]
if not mine:
    others = [s for s in studies if s["attrs"].get("plan_id") is None]
    if not others:
        empty_state("This plan has no tuning studies (its plan file has no `tuning:` section, or it was not "
                    "launched yet). Pick another plan above.")
        st.stop()
    st.caption("This plan has no tuning studies; showing the studies that belong to no zolab plan.")
    mine = others


def label(s: dict) -> str:
    attrs = s["attrs"]
    return f"{attrs['variant']} · {attrs.get('task', '')}" if attrs.get("variant") else s["study"]


counts = data.study_counts(tuple(s["study"] for s in mine))
st.dataframe(
    pd.DataFrame([{"variant · task": label(s), "trials": f"{s['trials']}/{s['attrs'].get('trials', s['trials'])}",
                   **counts[s["study"]],
                   "best dev accuracy (%)": tables.pct(s["best value"])} for s in mine]),
    hide_index=True, width="stretch", key="studies",
    column_config={"variant · task": st.column_config.TextColumn(pinned=True, width="medium"),
                   "best dev accuracy (%)": st.column_config.NumberColumn(format="%.1f")},
)
by_name = {s["study"]: s for s in mine}
name = st.selectbox("Study", list(by_name), format_func=lambda n: label(by_name[n]), key="study")
st.caption(f"Optuna study {md_escape(name)} (for optuna-dashboard or `zolab tune-status`).")
study = data.load_study(name)
trials = study.trials
params = list(dict.fromkeys(p for t in trials for p in t.params))
st.subheader("Trials")
st.dataframe(tables.trials_frame(trials, data.trial_jobs(name), params), hide_index=True, width="stretch",
             key="trials", placeholder="", column_config={c: st.column_config.NumberColumn(format="%.1f")
                                          for c in ("dev accuracy (%)", "last reported (%)")})
complete = [t for t in trials if t.state.name == "COMPLETE"]
if not complete:
    empty_state("This study has no completed trial yet; its jobs are on the Jobs page.")
    st.stop()

import optuna.visualization as ov

st.subheader("Best trial")
plain(f"dev accuracy {100 * study.best_value:.1f} % (trial {study.best_trial.number}); the final seeds run with:")
st.dataframe(pd.DataFrame([study.best_params]), hide_index=True, key="best_params")
cols = st.columns(2)
history = ov.plot_optimization_history(study)
history.update_layout(legend=LEGEND_BELOW)
cols[0].plotly_chart(history, key="history")
needed = importance_minimum(len(params))
if len(complete) >= needed and study.best_params:
    try:
        cols[1].plotly_chart(ov.plot_param_importances(study), key="importances")
    except (ValueError, RuntimeError) as exc:  # e.g. a parameter with one value only
        cols[1].caption(f"Parameter importances unavailable: {exc}")
else:
    cols[1].caption(f"Parameter importances need at least {needed} completed trials ({MIN_TRIALS_PER_PARAM} per "
                    f"tuned parameter, plus 1); this study has {len(complete)}. Not drawn.")
if study.best_params:
    st.plotly_chart(ov.plot_slice(study), key="slice")
