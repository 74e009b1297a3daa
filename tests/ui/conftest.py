"""Fixtures for the dashboard tests: a seeded SQLite DB (``ZOLAB_DB`` points at it) and an AppTest
runner per page file. Streamlit caches are cleared between tests so no test sees another's data."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

UI_DIR = Path(__file__).resolve().parents[2] / "zolab" / "ui"


@pytest.fixture(autouse=True)
def _fresh_streamlit_caches() -> Iterator[None]:
    import streamlit as st

    st.cache_data.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture
def page(sqlite_url: str) -> Callable[[str], object]:
    """``page("jobs")`` -> an AppTest of ``zolab/ui/pages/jobs.py`` on the test DB, already run."""
    from streamlit.testing.v1 import AppTest

    def make(name: str, run: bool = True):
        at = AppTest.from_file(str(UI_DIR / "pages" / f"{name}.py"), default_timeout=90)
        if run:
            at.run()
        return at

    return make
