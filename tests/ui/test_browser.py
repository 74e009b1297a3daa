"""A real browser session: Debian's chromium (playwright) against ``zolab ui`` on a free local port,
at 1440x900 and at 1280x720.

Uploads the LM-planner seed plan 000 (the repository's verbatim copy, HTML wrapper and all), checks
the five ablations and their statuses, launches it with a tiny CPU baseline that tunes lr on a
2-point grid, selects a queued job in the job table and cancels then retries it, waits for the
runs, selects a leaderboard row for its drill-down, downloads the CSV, and checks that nothing
overflows the window (no horizontal page scroll, tables without a horizontal scrollbar, legends
below plots that keep their width). Screenshots of every step go to ``tests/ui/artifacts/``
(``<width>x<height>-NN-<page>.png``). Any Streamlit exception box fails the test.
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
SEED_000 = REPO / "tests" / "reliability" / "fixtures" / "seed_000.md"  # verbatim LM-planner output
VIEWPORTS = [(1440, 900), (1280, 720)]
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
tuning:
  trials: 2
  sampler: grid
  pruner: none
  steps: 4
  space:
    lr: {choices: [1.0e-3, 1.0e-2]}
"""
N_VARIANTS = 9      # seed 000 against this baseline: baseline + 8 ablation variants
N_JOBS = N_VARIANTS * (2 + 1)  # 2 trials and 1 final seed each


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
        yield {"url": f"http://127.0.0.1:{port}", "db": f"sqlite:///{db}", "tmp": tmp_path, "env": env}
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
    finished = sum(n for st, n in counts.items() if st in ("succeeded", "failed", "cancelled", "diverged"))
    return finished, sum(counts.values())


def _no_overflow(page, what: str, tables: tuple[int, ...] | None = None) -> None:
    """Nothing wider than the window: no horizontal page scroll, no table (every table, or the
    ``tables``-th ones in page order) with a horizontal scrollbar."""
    page_w = page.evaluate("document.documentElement.scrollWidth")
    view_w = page.evaluate("window.innerWidth")
    assert page_w <= view_w, f"{what}: page is {page_w} px wide in a {view_w} px window"
    grids = page.evaluate("""() => [...document.querySelectorAll('[data-testid=stDataFrame]')].map(
        t => { const e = t.querySelector('.dvn-scroller'); return e ? [e.scrollWidth, e.clientWidth] : null; })""")
    grids = [g for i, g in enumerate(grids) if g is not None and (tables is None or i in tables)]
    if tables is not None:
        assert len(grids) == len(tables), f"{what}: found {len(grids)} of the tables {tables}"
    wide = [g for g in grids if g[0] > g[1] + 2]
    assert not wide, f"{what}: {len(wide)} table(s) scroll sideways: {wide}"


def _plots(page) -> list[dict]:
    """Each Plotly chart on the page: its plot-area width and where its legend sits."""
    return page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')].map(p => ({
        plot_w: p._fullLayout._size.w, width: p._fullLayout.width,
        legend_y: p._fullLayout.showlegend ? p._fullLayout.legend.y : null,
        orientation: p._fullLayout.legend ? p._fullLayout.legend.orientation : null}))""")


def _click_row(page, nth_table: int, row: int) -> None:
    """Tick the selection box of ``row`` (0-based) in the ``nth_table``-th table (glide grid: a canvas)."""
    _settle(page)
    grid = page.locator("[data-testid=stDataFrame]").nth(nth_table)
    grid.scroll_into_view_if_needed()
    box = grid.bounding_box()
    header, height = 35, 35  # Streamlit's default header and row heights
    page.mouse.click(box["x"] + 14, box["y"] + header + height * row + height / 2)
    _settle(page)


def _shot(page, size: tuple[int, int], n: int, name: str) -> None:
    """A screenshot of the whole page at this width: Streamlit scrolls inside its main section, so the
    window is made as tall as that section for the shot (the width, which decides the layout, stays)."""
    height = page.evaluate("document.querySelector('[data-testid=stMain]').scrollHeight")
    page.set_viewport_size({"width": size[0], "height": max(size[1], height)})
    page.wait_for_timeout(500)
    page.screenshot(path=ARTIFACTS / f"{size[0]}x{size[1]}-{n:02d}-{name}.png")
    page.set_viewport_size({"width": size[0], "height": size[1]})
    page.wait_for_timeout(300)


def _hold_workers(db_url: str) -> None:
    """Register a worker that runs nothing, so Launch starts none and the queue stays as enqueued
    until the test starts a real one (the job selection needs jobs that are still queued)."""
    from zolab.db.models import Worker
    from zolab.db.session import dispose_engines, session_scope

    with session_scope(db_url) as s:
        s.add(Worker(id="browser-test:0:hold", host="browser-test", pid=0))
    dispose_engines()


def _start_worker(server: dict) -> subprocess.Popen:
    """A real worker for plan 1 (exits when the queue is drained), in the server's process group."""
    log = open(server["tmp"] / "worker.log", "wb")  # noqa: SIM115  (closed with the process)
    return subprocess.Popen([sys.executable, "-m", "zolab", "worker", "--plan", "1", "--db", server["db"]],
                            env=server["env"], stdout=log, stderr=subprocess.STDOUT, cwd=server["tmp"])


def _job_status(db_url: str, job_id: int) -> tuple[str, list[str]]:
    from zolab.db.repo.jobs import events_of, get_job
    from zolab.db.session import dispose_engines, session_scope

    with session_scope(db_url) as s:
        job = get_job(s, job_id)
        out = job.status, [e.message for e in events_of(s, job_id)]
    dispose_engines()
    return out


@pytest.mark.parametrize("size", VIEWPORTS, ids=[f"{w}x{h}" for w, h in VIEWPORTS])
def test_upload_launch_and_read_leaderboard_in_chromium(server, size):
    import csv
    import io
    import re

    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    tag = f"{size[0]}x{size[1]}"
    (ARTIFACTS / f"{tag}-failure.png").unlink(missing_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": size[0], "height": size[1]}, accept_downloads=True)
        try:
            page.goto(server["url"])
            page.get_by_role("heading", name="Plans").first.wait_for(timeout=60_000)
            _settle(page)
            _no_exception_box(page)
            _shot(page, size, 1, "plans-empty")

            # upload seed 000 with the tiny CPU baseline
            page.locator("input[type=file]").set_input_files(str(SEED_000))
            page.locator("[data-testid=stSelectbox]").filter(has_text="Baseline for JSONL").click()
            page.get_by_role("option", name="tiny-cpu.yaml").click()
            page.get_by_role("button", name="Save plan").wait_for(timeout=60_000)
            _settle(page)
            _no_exception_box(page)
            cells = _cells(page, 0)
            for name, status in EXPECTED.items():
                assert name in cells, cells
                assert cells[cells.index(name) + 4] == status, (name, cells[cells.index(name):][:6])
            _shot(page, size, 2, "plans-resolution")

            page.get_by_role("button", name="Save plan").click()
            page.get_by_text("Saved as plan #1.").wait_for(timeout=60_000)
            page.get_by_text("Est. CPU-hours on this machine").first.wait_for(timeout=60_000)  # names its device
            launch = page.get_by_role("button", name="Launch", exact=True)
            launch.wait_for(timeout=60_000)
            _settle(page)
            _hold_workers(server["db"])
            launch.click()
            page.get_by_text(f"Enqueued {N_VARIANTS * 2} job(s)").wait_for(timeout=120_000)  # the first trials
            _no_exception_box(page)
            _no_overflow(page, "plans", tables=(0, 2))  # the stored plans and the stored plan's ablations
            _shot(page, size, 3, "plans-launched")

            # jobs: select a queued row, cancel it, retry it (the buttons act on the selected job)
            _goto(page, "Jobs")
            _no_exception_box(page)
            _click_row(page, 0, 9)
            selected = page.get_by_text(re.compile(r"Selected: job \d+")).inner_text()
            job_id = int(re.search(r"Selected: job (\d+)", selected)[1])
            assert job_id == 10  # the 10th row of the id-ordered table
            _shot(page, size, 4, "jobs-selected")
            page.get_by_role("button", name="Cancel 1 selected").click()
            page.get_by_text(f"Cancel: job {job_id} → cancelled").wait_for(timeout=60_000)
            assert _job_status(server["db"], job_id)[0] == "cancelled"
            page.get_by_role("button", name="Retry 1 selected").click()
            page.get_by_text(f"Retry: job {job_id} → queued").wait_for(timeout=60_000)
            assert _job_status(server["db"], job_id) == ("queued", ["enqueued", "cancelled by ui",
                                                                    "retry requested by ui"])
            _no_exception_box(page)
            _no_overflow(page, "jobs")
            _click_row(page, 0, 9)  # focus the grid (after a rerun the first click only focuses it) ...
            page.keyboard.press("Escape")  # ... and clear the selection: live refresh resumes
            page.get_by_text("Select rows (the boxes at the left").wait_for(timeout=60_000)
            worker = _start_worker(server)
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                done, total = _jobs_done(server["db"])
                if total == N_JOBS and done == total:
                    break
                time.sleep(2)
            assert total == N_JOBS and done == total, f"{done}/{total} jobs finished in time"
            assert worker.wait(timeout=60) == 0
            page.wait_for_timeout(3000)  # one live refresh of the job table
            _no_exception_box(page)
            _shot(page, size, 5, "jobs-finished")

            # leaderboard: percent cells, a row selected for its drill-down, the CSV download
            _goto(page, "Leaderboard")
            _no_exception_box(page)
            board = _cells(page, 0)
            assert "★ baseline" in board, board[:40]
            page.get_by_text("Task synthetic-sentiment.", exact=True).wait_for(timeout=10_000)
            assert any(re.fullmatch(r"\d+\.\d (\(1 seed\)|± \d+\.\d)", c) for c in board), board[:40]  # percent
            assert any(re.fullmatch(r"[+-]\d+\.\d pts \(no interval\)", c) for c in board), board[:40]
            _no_overflow(page, "leaderboard")
            _shot(page, size, 6, "leaderboard")
            _click_row(page, 0, 1)
            page.get_by_role("heading", name="Variant details").wait_for(timeout=60_000)
            page.get_by_text("What it changes against the baseline").wait_for(timeout=60_000)
            page.get_by_text("Job log").wait_for(timeout=60_000)
            _no_exception_box(page)
            _no_overflow(page, "drill-down")
            _shot(page, size, 7, "leaderboard-drilldown")
            with page.expect_download() as info:
                page.get_by_role("button", name="Download CSV").click()
            rows = list(csv.DictReader(io.StringIO(Path(info.value.path()).read_text())))
            assert len(rows) == N_VARIANTS and rows[0]["variant"] == "baseline" and rows[0]["baseline"] == "True"
            for r in rows:
                assert 0 <= float(r["accuracy (%) mean"]) <= 100
                assert len(r["accuracy (%) mean"].split(".")[-1]) <= 1  # rounded as shown, no 17-digit floats

            _goto(page, "Compare")
            page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
            page.wait_for_timeout(1000)
            _no_exception_box(page)
            plots = _plots(page)
            assert plots and all(p["plot_w"] > 0.6 * p["width"] for p in plots), plots  # legends do not squeeze
            assert all(p["legend_y"] is None or (p["orientation"] == "h" and p["legend_y"] < 0) for p in plots)
            _no_overflow(page, "compare")
            _shot(page, size, 8, "compare")

            _goto(page, "Tuning")
            _no_exception_box(page)
            studies = _cells(page, 0)
            assert "baseline · synthetic-sentiment" in studies, studies[:20]  # named by variant, not zolab-p1-v1-...
            picker = page.locator("[data-testid=stSelectbox]").filter(has_text="Study").evaluate(
                "e => e.innerText + ' ' + [...e.querySelectorAll('input')].map(i => i.value).join(' ')")
            assert "baseline · synthetic-sentiment" in picker, picker
            trials = _cells(page, 1)
            assert "complete" in trials, trials[:20]
            _no_overflow(page, "tuning")
            _shot(page, size, 9, "tuning")
        except BaseException:
            page.screenshot(path=ARTIFACTS / f"{tag}-failure.png", full_page=True)
            raise
        finally:
            browser.close()
