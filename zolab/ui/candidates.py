"""The candidate picker: one click chooses how an ambiguous or unresolved ablation is read.

The resolver stores, for each ablation it could not settle, up to three candidate readings with
the changes each would run. :func:`candidate_picker` shows them as buttons under the resolution
table; a click records ``{ablation name: component}`` in the page's overrides (the same mapping
the "Override a component" selectboxes and the CLI's ``--set-component`` fill) and reruns, so the
plan is resolved again with that pick before it is saved. Kept apart from ``pages/plans.py`` so the
page's other parts can change without touching it.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping, Sequence
from typing import Any

import streamlit as st

from zolab.ui.widgets import md_escape, plain

#: the session-state key the Plans page keeps its overrides under
OVERRIDES_KEY = "overrides"
PENDING = ("ambiguous", "unresolved")


def button_key(index: int, component: str) -> str:
    """The key of the button that picks ``component`` for the ablation at ``index`` (0-based)."""
    return f"pick_{index}_{component}"


def override_key(index: int) -> str:
    """The key of the Plans page's "Override a component" selectbox for the ablation at ``index``."""
    return f"override_{index}"


def candidate_picker(ablations: Sequence[Any], resolutions: Sequence[Any], overrides: MutableMapping[str, str],
                     selectbox_key: Callable[[int], str] = override_key) -> int:
    """Buttons for the candidates of every pending ablation; returns how many ablations are pending.

    ``ablations`` are the plan's Ablation models, ``resolutions`` the resolver's answers for them.
    A pick also sets the page's override selectbox (``selectbox_key``) so the two agree after the
    rerun. Plan-derived text is escaped in labels and shown with ``st.text`` elsewhere.
    """
    pending = [(i, ab, res) for i, (ab, res) in enumerate(zip(ablations, resolutions)) if res.status in PENDING]
    if not pending:
        return 0
    st.markdown("**Ablations waiting for a pick** (stored but not run until you choose a reading)")
    for i, ab, res in pending:
        plain(f"{i + 1}. {ab.name} [{res.status}]: {res.explanation}")
        if not res.candidates:
            plain("   no reading can run: fix the ablation's text, or set its component below")
            continue
        columns = st.columns(len(res.candidates))
        for column, cand in zip(columns, res.candidates):
            runs = ", ".join(label for label, _ in cand.changes)
            label = f"Use {cand.component}: {runs}"
            if column.button(md_escape(label), key=button_key(i, cand.component), help=md_escape(cand.why)):
                overrides[ab.name] = cand.component
                st.session_state[OVERRIDES_KEY] = dict(overrides)
                st.session_state[selectbox_key(i)] = cand.component
                st.rerun()
    return len(pending)
