"""Tuning: Optuna studies of this database: history, parameter importances, slices, best params."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from zolab.ui import data
from zolab.ui.widgets import empty_state, plain

st.title("Tuning")
studies = data.studies()
if not studies:
    empty_state("No Optuna studies yet. Add a `tuning:` section to a plan (see ablations/quickstart.yaml) "
                "and launch it; each variant x task gets a study here. From the shell:",
                "zolab run <plan id>")
    st.stop()

st.dataframe(pd.DataFrame(studies), hide_index=True, width="stretch", key="studies")
name = st.selectbox("Study", [s["study"] for s in studies], key="study")
study = data.load_study(name)
complete = [t for t in study.trials if t.state.name == "COMPLETE"]
if not complete:
    empty_state("This study has no completed trial yet; its jobs are on the Jobs page.")
    st.stop()

import optuna.visualization as ov

st.subheader("Best trial")
plain(f"value {study.best_value:.6g} (trial {study.best_trial.number})")
st.dataframe(pd.DataFrame([study.best_params]), hide_index=True, key="best_params")
st.plotly_chart(ov.plot_optimization_history(study), key="history")
if len(complete) >= 2 and study.best_params:
    try:
        st.plotly_chart(ov.plot_param_importances(study), key="importances")
    except (ValueError, RuntimeError) as exc:  # e.g. a parameter with one value only
        st.info(f"Parameter importances unavailable: {exc}")
if study.best_params:
    st.plotly_chart(ov.plot_slice(study), key="slice")
