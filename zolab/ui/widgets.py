"""Small display helpers shared by the pages: safe text, empty states, the plan picker, tables.

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


#: where the chosen plan is kept: session state (across pages) and the URL (across reloads, shareable)
PLAN_STATE = "selected_plan_id"
PLAN_QUERY = "plan"


def _query_plan() -> int | None:
    raw = st.query_params.get(PLAN_QUERY)
    return int(raw) if raw is not None and str(raw).isdigit() else None


def initial_plan(ids: Sequence[int], with_results: Sequence[int] = ()) -> int:
    """The plan a page opens on: the one in the URL, else the one chosen on another page, else the
    newest plan with results, else the newest plan (``ids`` newest first)."""
    for candidate in (_query_plan(), st.session_state.get(PLAN_STATE)):
        if candidate in ids:
            return candidate
    return next((i for i in with_results if i in ids), ids[0])


def remember_plan(plan_id: int) -> None:
    """Keep ``plan_id`` as the chosen plan for every page and in the URL."""
    st.session_state[PLAN_STATE] = plan_id
    if _query_plan() != plan_id:
        st.query_params[PLAN_QUERY] = str(plan_id)


def plan_picker(key: str = "plan_id", label: str = "Plan") -> int | None:
    """A selectbox of stored plans (newest first) that opens on :func:`initial_plan` and remembers the
    choice across pages; plans without results say so in their option."""
    plans = data.plans()
    if not plans:
        no_plans()
        return None
    names = {p.id: p.name for p in plans}
    ids = list(names)
    done = set(data.plans_with_results())
    # the widget always shows the remembered plan: a choice made here is remembered by the callback
    # before this rerun, one made on another page by that page's picker
    st.session_state[key] = initial_plan(ids, [i for i in ids if i in done])
    chosen = st.selectbox(label, ids, key=key, on_change=lambda: remember_plan(st.session_state[key]),
                          format_func=lambda i: f"#{i} · {names[i]}" + ("" if i in done else " (no results yet)"))
    remember_plan(chosen)
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
