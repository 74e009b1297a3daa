"""Without ZOLAB_TEST_PG_URL the PostgreSQL half of the suite is deselected and said once, not per test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = ["tests/ui/test_leaderboard_repo.py::test_leaderboard_matches_python_aggregates",
         "tests/ui/test_leaderboard_repo.py::test_leaderboard_filters_task_and_stage",
         "tests/ui/test_leaderboard_repo.py::test_mean_ci_known_values"]


def test_postgres_reason_printed_once():
    env = {k: v for k, v in os.environ.items() if k != "ZOLAB_TEST_PG_URL"}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS],
                         check=False, cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=300)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert text.count("ZOLAB_TEST_PG_URL") == 1, text
    assert "2 PostgreSQL test(s) deselected" in text and "SKIPPED" not in text
    assert "3 passed" in text
