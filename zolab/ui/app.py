"""zolab dashboard entry point: only the router (``st.navigation``); each page is its own file."""

from pathlib import Path

import streamlit as st

PAGES = Path(__file__).resolve().parent / "pages"

st.set_page_config(page_title="zolab", page_icon="🧪", layout="wide")
page = st.navigation(
    [
        st.Page(PAGES / "plans.py", title="Plans", icon="📋", default=True),
        st.Page(PAGES / "jobs.py", title="Jobs", icon="⚙️"),
        st.Page(PAGES / "leaderboard.py", title="Leaderboard", icon="🏆"),
        st.Page(PAGES / "compare.py", title="Compare", icon="📊"),
        st.Page(PAGES / "tuning.py", title="Tuning", icon="🎛️"),
    ]
)
page.run()
