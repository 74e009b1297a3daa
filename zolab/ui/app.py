"""zolab dashboard entry point: only the router (``st.navigation``); each page is its own file."""

from pathlib import Path

import streamlit as st

PAGES = Path(__file__).resolve().parent / "pages"

st.set_page_config(page_title="zolab", page_icon=":material/science:", layout="wide")
# narrower side padding than Streamlit's 5rem: at 1280 px the tables get ~100 px more room
st.html("<style>[data-testid=stMainBlockContainer]{padding-left:2rem;padding-right:2rem}</style>")
page = st.navigation(
    [
        st.Page(PAGES / "plans.py", title="Plans", icon=":material/description:", default=True),
        st.Page(PAGES / "jobs.py", title="Jobs", icon=":material/play_circle:"),
        st.Page(PAGES / "leaderboard.py", title="Leaderboard", icon=":material/leaderboard:"),
        st.Page(PAGES / "compare.py", title="Compare", icon=":material/bar_chart:"),
        st.Page(PAGES / "tuning.py", title="Tuning", icon=":material/tune:"),
    ]
)
page.run()
