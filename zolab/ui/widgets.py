"""Small display helpers shared by the pages: safe text, empty states, the plan picker.

Plan-derived text (names, ablation text, error messages) may contain markdown or HTML. Streamlit
renders markdown in ``st.markdown``/``st.error``/``st.info`` and widget labels, so such text goes
through :func:`md_escape` there, or is shown with ``st.text``/``st.code``/``st.dataframe``, which
never interpret it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import streamlit as st

from zolab.ui import data

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&=])")


def md_escape(text: object) -> str:
    """Backslash-escape every markdown/HTML-significant character, so text renders literally."""
    return _MD_SPECIAL.sub(r"\\\1", str(text))


def plain(value: object) -> None:
    """Show text exactly as given (no markdown, no HTML): for plan-derived text."""
    st.text(str(value))


def empty_state(message: str, command: str | None = None) -> None:
    """Say there is nothing to show and what to do next (``message`` is our own text)."""
    st.info(message, icon=":material/info:")
    if command:
        st.code(command, language="bash")


def no_plans() -> None:
    empty_state("No plans yet: upload one on the Plans page, or run", "zolab plan upload ablations/quickstart.yaml")


def plan_picker(key: str = "plan_id") -> int | None:
    """A selectbox of stored plans (newest first); remembers the choice across pages."""
    plans = data.plans()
    if not plans:
        no_plans()
        return None
    names = {p.id: p.name for p in plans}
    ids = list(names)
    current = st.session_state.get("selected_plan_id")
    index = ids.index(current) if current in ids else 0
    chosen = st.selectbox("Plan", ids, index=index, key=key, format_func=lambda i: f"#{i} · {names[i]}")
    st.session_state["selected_plan_id"] = chosen
    return chosen


def issues_frame(issues: Sequence[object]):
    """PlanError issues as a table (line, column, field, message): shown as plain text cells."""
    import pandas as pd

    return pd.DataFrame(
        [{"file": getattr(i, "file", None) or "", "line": getattr(i, "line", None),
          "column": getattr(i, "column", None), "field": getattr(i, "field", None) or "",
          "message": getattr(i, "message", str(i))} for i in issues],
        columns=["file", "line", "column", "field", "message"],
    )
