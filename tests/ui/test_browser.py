"""A real browser session: Debian's chromium (playwright) against ``zolab ui`` on a free local port.

Uploads the LM-planner seed plan 000 (``../shared/seeds/000_*.txt``, else the project's copy of it),
checks the five ablations and their statuses, launches it with a tiny CPU baseline, waits for the
runs, reads the leaderboard and saves a screenshot of every page under ``tests/ui/artifacts/``.
Any Streamlit exception box fails the test.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
SEED_000 = [*sorted((REPO.parent / "shared" / "seeds").glob("000_*.txt")),
            REPO / "tests" / "platform" / "fixtures" / "planner_000.md"]
EXPECTED = {  # seed 000's five ablations and how they resolve (DESIGN.md "Components")
    "Ablation of Zeroth-Order Optimization Method": "resolved",
    "Ablation of Memory-Efficient Implementation": "resolved",
    "Ablation of Parameter-Efficient Tuning Techniques": "inverted",
    "Ablation of Non-Differentiable Objective Optimization": "inverted",
    "Ablation of Theoretical Assumptions": "resolved",
}
TINY_BASELINE = """\
zolab: 1
baseline:
  method: mezo
  model: tiny-opt
  lr: 1.0e-3
  eps: 1.0e-3
  steps: 4
  batch_size: 4
  eval_every: 2
  checkpoint_every: 2
  train_size: 16
  dev_size: 8
  test_size: 16
  max_length: 32
  device: cpu
tasks: [synthetic-sentiment]
seeds: [1]
metrics: [accuracy, f1, peak_memory, wall_time]
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"zolab ui exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError("zolab ui did not become healthy")


@pytest.fixture
def server(tmp_path):
    """``zolab ui`` on a free port with a temp SQLite DB and the tiny baseline offered."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: install Debian's chromium (.ci/run does: apt-get install chromium)")
    baselines = tmp_path / "baselines"
    baselines.mkdir()
    (baselines / "tiny-cpu.yaml").write_text(TINY_BASELINE)
    db = tmp_path / "ui.db"
    port = _free_port()
    env = {**os.environ, "ZOLAB_BASELINES": str(baselines), "ZOLAB_HOME": str(tmp_path / "home"),
           "ZOLAB_DB": f"sqlite:///{db}"}
    with open(tmp_path / "server.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "zolab", "ui", "--port", str(port), "--db", str(db)],
                                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
                                start_new_session=True)
    try:
        _wait_healthy(port, proc)
        yield {"url": f"http://127.0.0.1:{port}", "db": f"sqlite:///{db}", "tmp": tmp_path}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and the workers it started (same session)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        if ARTIFACTS.exists():
            shutil.copy(tmp_path / "server.log", ARTIFACTS / "server.log")


def _no_exception_box(page) -> None:
    boxes = page.locator("[data-testid=stException]")
    assert boxes.count() == 0, boxes.first.inner_text()


def _settle(page) -> None:
    """Wait until Streamlit has finished the current script run."""
    page.wait_for_timeout(300)
    page.locator("[data-testid=stStatusWidget]").wait_for(state="detached", timeout=120_000)


def _cells(page, nth: int = 0) -> list[str]:
    grid = page.locator("[data-testid=stDataFrame]").nth(nth)
    grid.locator("[role=gridcell]").first.wait_for(state="attached", timeout=60_000)
    return [t.strip() for t in grid.locator("[role=gridcell]").all_text_contents()]


def _goto(page, title: str) -> None:
    page.locator("[data-testid=stSidebarNav] a").filter(has_text=title).click()
    page.get_by_role("heading", name=title).first.wait_for(timeout=60_000)
    _settle(page)


def _jobs_done(db_url: str) -> tuple[int, int]:
    from zolab.db.repo.jobs import status_counts
    from zolab.db.session import dispose_engines, session_scope

    with session_scope(db_url) as s:
        counts = status_counts(s)
    dispose_engines()
    finished = sum(n for st, n in counts.items() if st in ("succeeded", "failed", "cancelled"))
    return finished, sum(counts.values())


def test_upload_launch_and_read_leaderboard_in_chromium(server):
    from playwright.sync_api import sync_playwright

    seed = next(p for p in SEED_000 if p.exists())
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "failure.png").unlink(missing_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        try:
            page.goto(server["url"])
            page.get_by_role("heading", name="Plans").first.wait_for(timeout=60_000)
            _settle(page)
            _no_exception_box(page)
            page.screenshot(path=ARTIFACTS / "01-plans-empty.png", full_page=True)

            # upload seed 000 with the tiny CPU baseline
            page.locator("input[type=file]").set_input_files(str(seed))
            page.locator("[data-testid=stSelectbox]").filter(has_text="Baseline for JSONL").click()
            page.get_by_role("option", name="tiny-cpu.yaml").click()
            page.get_by_role("button", name="Save plan").wait_for(timeout=60_000)
            _settle(page)
            _no_exception_box(page)
            cells = _cells(page, 0)
            for name, status in EXPECTED.items():
                assert name in cells, cells
                assert cells[cells.index(name) + 4] == status, (name, cells[cells.index(name):][:6])
            page.screenshot(path=ARTIFACTS / "02-plans-resolution.png", full_page=True)

            page.get_by_role("button", name="Save plan").click()
            page.get_by_text("Saved as plan #1.").wait_for(timeout=60_000)
            launch = page.get_by_role("button", name="Launch", exact=True)
            launch.wait_for(timeout=60_000)
            _settle(page)
            launch.click()
            page.get_by_text("Enqueued 9 job(s)").wait_for(timeout=120_000)
            _no_exception_box(page)
            page.screenshot(path=ARTIFACTS / "03-plans-launched.png", full_page=True)

            _goto(page, "Jobs")
            _no_exception_box(page)
            page.screenshot(path=ARTIFACTS / "04-jobs-running.png", full_page=True)
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                done, total = _jobs_done(server["db"])
                if total and done == total:
                    break
                time.sleep(2)
            assert total == 9 and done == total, f"{done}/{total} jobs finished in time"
            page.wait_for_timeout(3000)  # one live refresh of the job table
            _no_exception_box(page)
            page.screenshot(path=ARTIFACTS / "05-jobs-finished.png", full_page=True)

            _goto(page, "Leaderboard")
            _no_exception_box(page)
            board = _cells(page, 0)
            assert "synthetic-sentiment" in board and "baseline" in board, board[:40]
            assert "★ baseline" in board
            page.screenshot(path=ARTIFACTS / "06-leaderboard.png", full_page=True)

            _goto(page, "Compare")
            page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
            _no_exception_box(page)
            page.screenshot(path=ARTIFACTS / "07-compare.png", full_page=True)

            _goto(page, "Tuning")
            _no_exception_box(page)
            page.screenshot(path=ARTIFACTS / "08-tuning.png", full_page=True)
        except BaseException:
            page.screenshot(path=ARTIFACTS / "failure.png", full_page=True)
            raise
        finally:
            browser.close()
