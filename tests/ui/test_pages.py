"""Headless page tests (Streamlit AppTest) on a seeded DB: what each page shows and what its
buttons change in the database."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pytest

from tests.ui.seeding import seed_plan
from zolab.db.models import Job, JobStatus, Plan
from zolab.db.repo.leaderboard import t_quantile_975
from zolab.db.session import session_scope

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "ablations" / "quickstart.yaml"
EVIL = "<script>alert(1)</script> **bold** [x](http://e.vil)"


def _no_exceptions(at) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _count(url: str, model) -> int:
    with session_scope(url) as s:
        return s.query(model).count()


def _seed(url: str, **kw):
    with session_scope(url) as s:
        return seed_plan(s, **kw)


def frame(at, column: str):
    """The first table on the page that has ``column`` (AppTest keeps no keys on dataframes)."""
    for df in at.dataframe:
        if column in df.value.columns:
            return df.value
    raise AssertionError(f"no table with a {column!r} column; tables: {[list(d.value.columns) for d in at.dataframe]}")


def _all_text(at) -> list[tuple[str, str]]:
    """(element type, shown value) for every text-bearing element of the page."""
    out = []
    for kind in ("markdown", "caption", "text", "code", "error", "warning", "info", "success", "title",
                 "subheader", "header"):
        for el in getattr(at, kind):
            out.append((kind, str(el.value)))
    return out


# ---------------------------------------------------------------- empty states
@pytest.mark.parametrize("name", ["plans", "jobs", "leaderboard", "compare", "tuning"])
def test_empty_db_pages_say_what_to_do(page, name):
    at = page(name)
    _no_exceptions(at)
    shown = " ".join(v for _, v in _all_text(at))
    assert "zolab" in shown  # every empty state names the next command
    if name != "tuning":
        assert "zolab plan upload ablations/quickstart.yaml" in shown or "Launch" in shown or "upload" in shown


def test_app_router_lists_five_pages(page):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "zolab" / "ui" / "app.py"), default_timeout=90)
    at.run()
    _no_exceptions(at)
    assert at.title[0].value == "Plans"
    at.switch_page(str(REPO / "zolab" / "ui" / "pages" / "leaderboard.py")).run()
    _no_exceptions(at)
    assert at.title[0].value == "Leaderboard"


# ---------------------------------------------------------------- upload flow
def test_upload_valid_plan_saves_it(page, sqlite_url):
    at = page("plans")
    at.file_uploader(key="plan_file").upload("quickstart.yaml", QUICKSTART.read_bytes()).run()
    _no_exceptions(at)
    table = frame(at, "explanation")
    assert list(table["ablation"]) == ["Larger perturbation", "More sampled directions",
                                       "Backpropagation instead of MeZO", "Naive ZO-SGD without in-place perturbation",
                                       "Full-parameter MeZO (no LoRA)"]
    assert set(table["status"]) == {"resolved"}
    assert _count(sqlite_url, Plan) == 0  # preview writes nothing
    at.button(key="save_plan").click().run()
    _no_exceptions(at)
    assert _count(sqlite_url, Plan) == 1
    assert any("Saved as plan #" in s.value for s in at.success)
    plans = frame(at, "ablations")
    assert list(plans["name"]) == ["quickstart"]


def test_upload_invalid_plan_shows_located_error_and_writes_nothing(page, sqlite_url):
    bad = QUICKSTART.read_text().replace("action: REPLACE", "action: REPLAEC", 1).encode()
    at = page("plans")
    at.file_uploader(key="plan_file").upload("bad.yaml", bad).run()
    _no_exceptions(at)
    assert at.error and "nothing was saved" in at.error[0].value
    issues = frame(at, "message")
    expected_line = bad.decode().splitlines().index("    action: REPLAEC") + 1
    assert issues["line"].iloc[0] == expected_line
    assert "ablations[0].action" in issues["field"].iloc[0]
    assert not [b for b in at.button if b.key == "save_plan"]
    assert _count(sqlite_url, Plan) == 0


def test_upload_refuses_wrong_type(page, sqlite_url):
    at = page("plans")
    # the browser filters by type; a renamed binary still arrives: refused with the file named
    at.file_uploader(key="plan_file").upload("plan.yaml", b"\x00\x01\x02binary").run()
    _no_exceptions(at)
    assert at.error
    assert "binary" in frame(at, "message")["message"].iloc[0]
    assert _count(sqlite_url, Plan) == 0


def test_resolution_override_changes_component_before_saving(page, sqlite_url):
    at = page("plans")
    at.file_uploader(key="plan_file").upload("quickstart.yaml", QUICKSTART.read_bytes()).run()
    table = frame(at, "explanation")
    assert table["component"].iloc[1] == "n_samples"
    # the user says ablation 2 is about the perturbation scale instead
    at.selectbox(key="override_1").set_value("eps").run()
    _no_exceptions(at)
    table = frame(at, "explanation")
    assert table["component"].iloc[1] == "eps"
    assert bool(table["overridden"].iloc[1]) is True
    at.button(key="save_plan").click().run()
    _no_exceptions(at)
    with session_scope(sqlite_url) as s:
        plan = s.query(Plan).one()
        abl = sorted(plan.ablations, key=lambda a: a.position)[1]
        assert abl.component == "eps" and abl.overridden


def test_launch_creates_jobs(page, sqlite_url, monkeypatch):
    started = []
    monkeypatch.setattr("zolab.ui.actions.start_workers", lambda plan_id, n=1: started.append(plan_id) or n)
    at = page("plans")
    at.file_uploader(key="plan_file").upload("quickstart.yaml", QUICKSTART.read_bytes()).run()
    at.button(key="save_plan").click().run()
    _no_exceptions(at)
    assert at.metric[1].value == "21"  # 7 variants (baseline, zero-shot, 5 ablations) x 1 task x 3 seeds
    assert _count(sqlite_url, Job) == 0
    at.button(key="launch").click().run()
    _no_exceptions(at)
    with session_scope(sqlite_url) as s:
        jobs = s.query(Job).all()
        assert len(jobs) == 21 and {j.status for j in jobs} == {"queued"}
    assert len(started) == 1  # no worker was running: one started
    assert any("Enqueued 21 job(s)" in s.value for s in at.success)
    at.button(key="launch").click().run()  # idempotent
    assert _count(sqlite_url, Job) == 21


# ---------------------------------------------------------------- leaderboard
def test_leaderboard_values_equal_fixture_aggregates(page, sqlite_url):
    seeded = _seed(sqlite_url, missing={(2, "sst2", 42)})
    at = page("leaderboard")
    _no_exceptions(at)
    board = frame(at, "accuracy ±95% CI")
    assert len(board) == 6
    for _, row in board.iterrows():
        vid = int(row["variant id"])
        vals = [r["accuracy"] for r in seeded.results if r["variant_id"] == vid and r["task"] == row["task"]]
        assert row["seeds"] == len(vals)
        assert row["accuracy"] == pytest.approx(statistics.fmean(vals))
        ci = t_quantile_975(len(vals) - 1) * statistics.stdev(vals) / math.sqrt(len(vals))
        assert row["accuracy ±95% CI"] == pytest.approx(ci)
        assert (row["baseline"] != "") == (vid == seeded.baseline_id)
        mem = [r["peak_memory_allocated"] for r in seeded.results if r["variant_id"] == vid and r["task"] == row["task"]]
        assert row["peak mem allocated (GiB)"] == pytest.approx(statistics.fmean(mem) / 1024**3)
    base = board[board["baseline"] != ""].set_index("task")["accuracy"]
    for _, row in board.iterrows():
        assert row["Δ accuracy"] == pytest.approx(row["accuracy"] - base[row["task"]])
    csv = at.get("download_button")[0]
    assert csv is not None
    at.selectbox(key="lb_task").set_value("rte").run()
    assert set(frame(at, "accuracy ±95% CI")["task"]) == {"rte"}


# ---------------------------------------------------------------- compare
def test_compare_renders_charts_for_chosen_variants(page, sqlite_url):
    import json

    seeded = _seed(sqlite_url)
    at = page("compare")
    _no_exceptions(at)
    chosen = seeded.variant_ids[:2]
    at.multiselect(key="cmp_variants").set_value(chosen).run()
    _no_exceptions(at)
    charts = at.get("plotly_chart")
    figs = {c.proto.id if hasattr(c.proto, "id") else i: json.loads(c.proto.spec) for i, c in enumerate(charts)}
    assert len(charts) == 4 + 1 + 2 + 1  # 4 plan metrics, pareto, 2 curves, GPU hours
    labels = {seeded.labels[v] for v in chosen}
    for fig in figs.values():
        shown = {x for trace in fig["data"] for x in (trace.get("x") or []) if isinstance(x, str)}
        shown |= {t.get("name", "").split(" · ")[0] for t in fig["data"]}
        assert seeded.labels[seeded.variant_ids[2]] not in shown
    bars = next(f for f in figs.values() if f["layout"]["title"]["text"].startswith("accuracy ("))
    assert set(bars["data"][0]["x"]) == labels
    assert bars["data"][0]["error_y"]["visible"] is True
    titles = [f["layout"]["yaxis"]["title"]["text"] for f in figs.values()]
    assert "peak memory (GiB)" in titles and "GPU hours (h, all seeds)" in titles


def test_pareto_front():
    from zolab.ui.charts import pareto_front

    pts = [(2.0, 0.8), (1.0, 0.7), (3.0, 0.75), (1.5, 0.85), (1.0, 0.6)]
    assert pareto_front(pts) == [1, 3]
    assert pareto_front([]) == []


# ---------------------------------------------------------------- jobs
def test_jobs_cancel_and_retry_change_states(page, sqlite_url):
    seeded = _seed(sqlite_url, missing={(1, "sst2", 13)}, tasks=("sst2",))
    with session_scope(sqlite_url) as s:
        queued = s.query(Job).filter_by(status="queued").one().id
    at = page("jobs")
    _no_exceptions(at)
    table = frame(at, "attempts")
    assert len(table) == len(seeded.job_ids)
    at.number_input(key="action_job_id").set_value(queued).run()
    at.button(key="cancel_job").click().run()
    _no_exceptions(at)
    with session_scope(sqlite_url) as s:
        assert s.get(Job, queued).status == JobStatus.CANCELLED.value
    at.button(key="retry_job").click().run()
    _no_exceptions(at)
    with session_scope(sqlite_url) as s:
        assert s.get(Job, queued).status == JobStatus.QUEUED.value
    # illegal: a succeeded job cannot be cancelled; the refusal is shown, the state kept
    done = next(j for j in seeded.job_ids if j != queued)
    at.number_input(key="action_job_id").set_value(done).run()
    at.button(key="cancel_job").click().run()
    _no_exceptions(at)
    assert at.error
    with session_scope(sqlite_url) as s:
        assert s.get(Job, done).status == JobStatus.SUCCEEDED.value
    # filter by state
    at.multiselect(key="jobs_states").set_value(["queued"]).run()
    assert list(frame(at, "attempts")["id"]) == [queued]


# ---------------------------------------------------------------- escaping
@pytest.mark.parametrize("name", ["plans", "jobs", "leaderboard", "compare"])
def test_plan_text_is_never_rendered_as_markdown_or_html(page, sqlite_url, name):
    _seed(sqlite_url, name=EVIL, labels=(EVIL, "ok variant"))
    at = page(name)
    _no_exceptions(at)
    for kind, value in _all_text(at):
        if kind in ("text", "code"):
            continue  # shown verbatim by Streamlit
        assert "<script>" not in value, (kind, value)
        assert "**bold**" not in value, (kind, value)
    assert not any("<script>" in (el.label or "") for el in at.selectbox)
    # ...while the name is still shown, as plain text (a selectbox option or a table cell)
    options = [str(o) for sb in at.selectbox for o in sb.options]
    assert any(EVIL in o for o in options), options


# ---------------------------------------------------------------- tuning
def test_tuning_page_shows_a_study(page, sqlite_url):
    import optuna

    from zolab.ui import data

    study = optuna.create_study(study_name="p1:v1:sst2", storage=data._storage(sqlite_url), direction="maximize")
    study.optimize(lambda t: -((t.suggest_float("lr", 1e-7, 1e-5, log=True) - 1e-6) ** 2)
                   - (t.suggest_float("eps", 1e-4, 1e-2, log=True) - 1e-3) ** 2, n_trials=6)
    at = page("tuning")
    _no_exceptions(at)
    assert list(frame(at, "study")["study"]) == ["p1:v1:sst2"]
    assert frame(at, "study")["trials"].iloc[0] == 6
    best = frame(at, "lr")
    assert best["lr"].iloc[0] == pytest.approx(study.best_params["lr"])
    assert len(at.get("plotly_chart")) == 3  # history, importances, slice


# ---------------------------------------------------------------- small units
def test_upload_checks_type_and_size():
    from zolab.platform.errors import PlanError
    from zolab.platform.parsers.source import MAX_BYTES
    from zolab.ui.actions import check_upload

    check_upload("plan.yaml", 10)
    check_upload("seed.txt", MAX_BYTES)
    with pytest.raises(PlanError, match="unsupported file type .exe") as err:
        check_upload("evil.exe", 10)
    assert err.value.file == "evil.exe"
    with pytest.raises(PlanError, match="limited to"):
        check_upload("big.yaml", MAX_BYTES + 1)


def test_ui_command_binds_localhost_headless():
    from typer.testing import CliRunner

    from zolab.cli import app
    from zolab.cli.ui_cmds import APP, streamlit_command

    cmd = streamlit_command(8600, "127.0.0.1")
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4] == str(APP) and Path(cmd[4]).exists()
    opts = dict(zip(cmd[5::2], cmd[6::2]))
    assert opts["--server.address"] == "127.0.0.1" and opts["--server.port"] == "8600"
    assert opts["--server.headless"] == "true" and opts["--browser.gatherUsageStats"] == "false"
    out = CliRunner().invoke(app, ["ui", "--help"])
    assert out.exit_code == 0 and "127.0.0.1" in out.output


def test_ui_command_refuses_a_bad_database(tmp_path):
    from typer.testing import CliRunner

    from zolab.cli import app

    out = CliRunner().invoke(app, ["ui", "--db", "nosuchdriver://x/y"])
    assert out.exit_code != 0
    assert "error" in out.output.lower()
