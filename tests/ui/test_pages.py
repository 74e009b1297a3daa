"""Headless page tests (Streamlit AppTest) on a seeded DB: what each page shows and what its
buttons change in the database. One test (or more) per page behaviour: opening on the newest plan
with results and keeping it across pages, percent cells and hidden empty columns, charts that keep
a variant's colour, selection-driven cancel/retry, the variant drill-down, tuning trials, and the
launch confirmation."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pytest

from tests.ui.seeding import TRACEBACK, seed_plan
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
    assert list(table["ablation"]) == ["Backpropagation instead of MeZO", "Full-parameter MeZO (no LoRA)"]
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


OVERRIDE_PLAN = b"""\
zolab: 1
name: override
baseline: {method: mezo, model: tiny-opt, steps: 4, device: cpu}
tasks: [synthetic-sentiment]
seeds: [1]
ablations:
  - name: Cheaper step
    ablated_part: optimization method
    action: REPLACE
    replacement: [SGD]
  - name: More sampled directions
    ablated_part: number of sampled directions
    action: REPLACE
    replacement: [4]
"""


def test_resolution_override_changes_component_before_saving(page, sqlite_url):
    at = page("plans")
    at.file_uploader(key="plan_file").upload("override.yaml", OVERRIDE_PLAN).run()
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
    """The quickstart plan tunes first: launching enqueues the first trials of each study (2 in
    flight per study) and the zero-shot row's final seeds; the estimate names its device."""
    started = []
    monkeypatch.setattr("zolab.ui.actions.start_workers", lambda plan_id, n=1: started.append(plan_id) or n)
    at = page("plans")
    at.file_uploader(key="plan_file").upload("quickstart.yaml", QUICKSTART.read_bytes()).run()
    at.button(key="save_plan").click().run()
    _no_exceptions(at)
    # 4 variants (baseline, zero-shot, 2 ablations); 3 trained x (4 trials + 3 seeds) + 3 zero-shot seeds,
    # the same in the upload preview and for the stored plan
    assert [m.value for m in at.metric if m.label == "Jobs"] == ["24", "24"]
    assert "Est. CPU-hours on this machine" in [m.label for m in at.metric]
    assert _count(sqlite_url, Job) == 0
    assert not [c for c in at.checkbox if c.key == "confirm_launch"]  # within budget: no confirmation
    at.button(key="launch").click().run()
    _no_exceptions(at)
    with session_scope(sqlite_url) as s:
        jobs = s.query(Job).all()
        assert {j.status for j in jobs} == {"queued"}
        assert sorted((j.stage, j.variant.label) for j in jobs).count(("final", "zero-shot")) == 3
        assert len([j for j in jobs if j.stage == "tune"]) == 3 * 2
    assert len(started) == 1  # no worker was running: one started
    assert any("Enqueued 9 job(s)" in s.value for s in at.success)
    at.button(key="launch").click().run()  # idempotent
    assert _count(sqlite_url, Job) == 9


TINY_PLAN = """\
zolab: 1
name: {name}
baseline: {{method: mezo, model: tiny-opt, steps: {steps}, device: {device}}}
tasks: [synthetic-sentiment]
seeds: [1]
{budget}
ablations:
  - name: SGD
    ablated_part: optimization method
    action: REPLACE
    replacement: [SGD]
"""


@pytest.mark.parametrize("steps,device,budget,reason", [
    (4, "cpu", "budget: {gpu_hours: 0.000001}", "exceeds the plan's budget"),
    (50_000_000, "cuda", "", "H100 GPU-hours and the plan sets no budget (above 10 GPU-hours needs a confirmation)"),
])
def test_launch_asks_for_confirmation_over_budget_or_above_10_hours(page, sqlite_url, monkeypatch, steps, device,
                                                                    budget, reason):
    from zolab.platform.upload import upload_plan

    monkeypatch.setattr("zolab.ui.actions.start_workers", lambda plan_id, n=1: n)
    upload_plan(TINY_PLAN.format(name="costly", steps=steps, device=device, budget=budget), filename="costly.yaml",
                url=sqlite_url)
    at = page("plans")
    _no_exceptions(at)
    assert any(reason in w.value.replace("\\", "") for w in at.warning), [w.value for w in at.warning]  # md-escaped
    assert next(b for b in at.button if b.key == "launch").disabled  # no launch before the confirmation
    at.checkbox(key="confirm_launch").check().run()
    _no_exceptions(at)
    assert not next(b for b in at.button if b.key == "launch").disabled
    at.button(key="launch").click().run()
    _no_exceptions(at)
    assert _count(sqlite_url, Job) == 2  # baseline + SGD, one seed each
    assert any("Enqueued 2 job(s)" in s.value for s in at.success)


# ---------------------------------------------------------------- plan choice across pages
def test_pages_open_on_the_newest_plan_with_results_and_keep_the_choice(page, sqlite_url):
    from streamlit.testing.v1 import AppTest

    old = _seed(sqlite_url, name="older with results")
    _seed(sqlite_url, name="newer, no results", missing={(v, t, s) for v in range(3) for t in ("sst2", "rte")
                                                           for s in (13, 21, 42)}, rng_seed=1)
    for name, key in (("leaderboard", "lb_plan"), ("compare", "cmp_plan")):
        at = page(name)
        _no_exceptions(at)
        assert at.selectbox(key=key).value == old.plan_id, name
        assert "(no results yet)" in at.selectbox(key=key).format_func(old.plan_id + 1)
    # the choice made on one page is the choice on the next, and it is in the URL
    at = AppTest.from_file(str(REPO / "zolab" / "ui" / "app.py"), default_timeout=90)
    at.switch_page(str(REPO / "zolab" / "ui" / "pages" / "leaderboard.py")).run()
    assert at.selectbox(key="lb_plan").value == old.plan_id
    at.selectbox(key="lb_plan").set_value(old.plan_id + 1).run()
    _no_exceptions(at)
    assert at.query_params["plan"] in (str(old.plan_id + 1), [str(old.plan_id + 1)])
    at.switch_page(str(REPO / "zolab" / "ui" / "pages" / "compare.py")).run()
    _no_exceptions(at)
    assert at.selectbox(key="cmp_plan").value == old.plan_id + 1
    at.switch_page(str(REPO / "zolab" / "ui" / "pages" / "jobs.py")).run()
    assert at.selectbox(key="jobs_plan").value == old.plan_id + 1


# ---------------------------------------------------------------- leaderboard
def _ci_text(vals: list[float]) -> str:
    mean = statistics.fmean(vals)
    ci = t_quantile_975(len(vals) - 1) * statistics.stdev(vals) / math.sqrt(len(vals))
    return f"{100 * mean:.1f} ± {100 * ci:.1f}"


def _paired_text(base: dict[int, float], mine: dict[int, float]) -> tuple[str, bool]:
    """``+6.0 pts [-1.2, +13.2]`` (+ `` *`` when it excludes 0) from scipy's paired t-interval."""
    from scipy import stats

    seeds = sorted(set(base) & set(mine))
    d = [100 * (mine[s] - base[s]) for s in seeds]
    mean, half = statistics.fmean(d), stats.t.ppf(0.975, len(d) - 1) * statistics.stdev(d) / math.sqrt(len(d))
    lo, hi = mean - half, mean + half
    return f"{mean:+.1f} pts [{lo:+.1f}, {hi:+.1f}]", lo > 0 or hi < 0


def _boards(at) -> list:
    """The leaderboard tables (one per task), in page order."""
    return [d.value for d in at.dataframe if (d.key or "").startswith("leaderboard_table_")]


def test_leaderboard_values_equal_fixture_aggregates(page, sqlite_url):
    seeded = _seed(sqlite_url, missing={(2, "sst2", 42)})
    at = page("leaderboard")
    _no_exceptions(at)
    tables = _boards(at)
    assert len(tables) == 2  # one per task (rte, sst2), each headed by its task
    assert [h.value for h in at.subheader][:2] == ["Task rte", "Task sst2"]
    for task, board in zip(("rte", "sst2"), tables):
        assert len(board) == 3
        assert board["variant"].iloc[0] == "★ " + seeded.labels[seeded.baseline_id]  # baseline first
        base = {r["seed"]: r["accuracy"] for r in seeded.results
                if r["variant_id"] == seeded.baseline_id and r["task"] == task}
        for _, row in board.iterrows():
            label = row["variant"].removeprefix("★ ")
            vid = next(v for v, lab in seeded.labels.items() if lab == label)
            mine = {r["seed"]: r["accuracy"] for r in seeded.results if r["variant_id"] == vid and r["task"] == task}
            assert row["seeds"] == str(len(mine))
            assert row["accuracy (%)"] == _ci_text(list(mine.values()))   # one "mean ± CI" cell, percent
            if vid != seeded.baseline_id:
                text, excludes = _paired_text(base, mine)                 # paired over the common seeds
                assert row["Δ accuracy vs baseline"].startswith(text)
                assert row["Δ accuracy vs baseline"].split("]")[1].strip().startswith("*") == excludes
    # GPU runs: CPU memory has no value, so it is not a column and a note says why
    assert "peak RSS" not in tables[0].columns
    notes = " ".join(c.value for c in at.caption)
    assert "Holm" in notes and "paired t" in notes  # captions are markdown-escaped (plan labels in them)
    assert at.get("download_button")[0].label == "Download CSV"
    assert [b.label for b in at.get("download_button")] == ["Download CSV", "Markdown", "LaTeX"]
    at.selectbox(key="lb_task").set_value("rte").run()
    assert len(_boards(at)) == 1 and len(_boards(at)[0]) == 3
    assert not [h for h in at.subheader if h.value.startswith("Task ")]
    assert any(c.value.startswith("Task rte") for c in at.caption)  # one task: named once, not per row


def test_leaderboard_csv_export_is_the_cli_export(page, sqlite_url):
    """The CSV the page offers is ``zolab leaderboard --format csv``'s, rounded as shown."""
    import csv
    import io

    from typer.testing import CliRunner

    from zolab.cli import app

    seeded = _seed(sqlite_url, tasks=("sst2",))
    out = CliRunner().invoke(app, ["leaderboard", str(seeded.plan_id), "--format", "csv", "--db", sqlite_url])
    assert out.exit_code == 0, out.output
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    base = [r["accuracy"] for r in seeded.results if r["variant_id"] == seeded.baseline_id]
    first = next(r for r in rows if r["baseline"] == "True")
    assert float(first["accuracy (%) mean"]) == round(100 * statistics.fmean(base), 1)
    assert all(len(r["accuracy (%) mean"].split(".")[-1]) <= 1 for r in rows)  # no 17-digit floats
    from zolab.platform import board_format as bf
    from zolab.ui import data

    at = page("leaderboard")
    _no_exceptions(at)
    assert bf.render(data.board(seeded.plan_id), "csv") == out.stdout


def test_cpu_plan_hides_gpu_columns_and_says_why(page, sqlite_url):
    _seed(sqlite_url, cpu=True, tasks=("sst2",))
    at = page("leaderboard")
    _no_exceptions(at)
    board = _boards(at)[0]
    more = frame(at, "peak RSS (process)")  # under "More measurements"
    assert [e.label for e in at.expander] == ["More measurements: peak RSS (process), wall time (s)"]
    shown = " ".join([*board.columns, *more.columns])
    assert "GPU" not in shown and "allocated" not in shown
    assert "peak RSS" in " ".join(more.columns) and list(more["variant"]) == list(board["variant"])
    notes = " ".join(c.value for c in at.caption)
    assert "not shown" in notes and "GPU hours" in notes


def test_diverged_rows_come_last_with_a_mark_and_their_own_colour(page, sqlite_url):
    from zolab.db.models import Result
    from zolab.ui.tables import DIVERGED_BG

    seeded = _seed(sqlite_url, tasks=("sst2",))
    bad = seeded.variant_ids[2]  # the best variant by accuracy in the fixture
    with session_scope(sqlite_url) as s:
        s.query(Result).filter(Result.variant_id == bad, Result.seed == 13).update({"diverged": True})
    at = page("leaderboard")
    _no_exceptions(at)
    board = _boards(at)[0]
    assert board["variant"].iloc[-1] == f"{seeded.labels[bad]} [diverged 1/3]"
    styled = next(d for d in at.dataframe if d.key == "leaderboard_table_0")
    assert DIVERGED_BG.lstrip("#").lower() in str(styled.proto).lower()
    assert any("diverged k/n" in c.value for c in at.caption)


# ---------------------------------------------------------------- drill-down
def test_drilldown_shows_config_diff_seed_values_curves_and_job_log(page, sqlite_url):
    seeded = _seed(sqlite_url, tasks=("sst2",), configs=({"method": "mezo", "lr": 1e-6},
                                                        {"method": "fo-sgd", "lr": 1e-3},
                                                        {"method": "mezo", "lr": 1e-6, "peft": "lora"}),
                   failed={(1, "sst2", 42)})
    fo = seeded.variant_ids[1]
    at = page("leaderboard")
    _no_exceptions(at)
    # a row selected in the leaderboard picks the variant for the drill-down
    board = _boards(at)[0]
    row = list(board["variant"]).index(seeded.labels[fo])
    at.session_state["leaderboard_table_0"] = {"selection": {"rows": [row], "columns": [], "cells": []}}
    at.run()
    _no_exceptions(at)
    assert at.selectbox(key="drill_variant").value == fo
    diff = frame(at, "this variant")
    assert dict(zip(diff["field"], zip(diff["baseline"], diff["this variant"]))) == {
        "lr": ("1e-06", "0.001"), "method": ("mezo", "fo-sgd")}
    seeds = frame(at, "baseline accuracy (%)")
    mine = {r["seed"]: r["accuracy"] for r in seeded.results if r["variant_id"] == fo}
    base = {r["seed"]: r["accuracy"] for r in seeded.results if r["variant_id"] == seeded.baseline_id}
    assert sorted(seeds["seed"]) == sorted(mine) == [13, 21]  # seed 42 failed: no result
    for _, row in seeds.iterrows():
        assert row["accuracy (%)"] == pytest.approx(100 * mine[row["seed"]])
        assert row["Δ vs baseline (pts)"] == pytest.approx(100 * (mine[row["seed"]] - base[row["seed"]]))
    curves = [c for c in at.get("plotly_chart") if c.proto.id and "drill_curve" in c.proto.id]
    assert len(curves) == 2
    import json

    loss = next(json.loads(c.proto.spec) for c in curves if "train_loss" in c.proto.id)
    assert {t["name"] for t in loss["data"] if t.get("mode") == "lines"} == {"seed 13", "seed 21"}
    # the job log opens on the failed job: its events and the tail of its traceback
    failed = at.selectbox(key="drill_job")
    assert "failed" in failed.format_func(failed.value)
    events = frame(at, "message")
    assert list(events["to"]) == ["queued", "running", "failed"]
    assert set(events["worker"]) == {"", "testhost:4242"}
    tail = next(c.value for c in at.code if "CUDA out of memory" in c.value)
    assert tail.splitlines() == TRACEBACK.splitlines()[-30:]
    # the selectbox still changes the variant after a table selection
    at.selectbox(key="drill_variant").set_value(seeded.baseline_id).run()
    _no_exceptions(at)
    assert at.selectbox(key="drill_variant").value == seeded.baseline_id
    assert any("This is the baseline." in c.value for c in at.caption)


# ---------------------------------------------------------------- compare
def _figures(at) -> dict[str, dict]:
    import json

    return {c.proto.id.split("-")[-1] if c.proto.id else str(i): json.loads(c.proto.spec)
            for i, c in enumerate(at.get("plotly_chart"))}


def _trace_colors(fig: dict, label: str) -> set[str]:
    out = set()
    for t in fig["data"]:
        name = t.get("name", "").split(" · ")[0]
        if name == label:
            out.add((t.get("marker") or {}).get("color") or (t.get("line") or {}).get("color"))
    return out - {None}


def test_compare_renders_charts_for_chosen_variants(page, sqlite_url):
    seeded = _seed(sqlite_url)
    at = page("compare")
    _no_exceptions(at)
    chosen = seeded.variant_ids[:2]
    at.multiselect(key="cmp_variants").set_value(chosen).run()
    _no_exceptions(at)
    everything = list(_figures(at).values())
    deltas = [f for f in everything if f["layout"]["title"]["text"].startswith("Δ ")]
    figs = [f for f in everything if f not in deltas]
    assert len(deltas) == 2 * 2  # accuracy and F1 differences, per task (every variant, whatever is picked)
    assert len(figs) == 3 + 1 + 2 + 1  # accuracy, F1, peak memory; Pareto; 2 curves; GPU hours
    labels = {seeded.labels[v] for v in chosen}
    for fig in figs:
        shown = {t.get("name", "").split(" · ")[0] for t in fig["data"]}
        assert seeded.labels[seeded.variant_ids[2]] not in shown
        assert fig["layout"]["legend"]["orientation"] == "h" and fig["layout"]["legend"]["y"] < 0  # below
    bars = next(f for f in figs if f["layout"]["title"]["text"].startswith("test accuracy"))
    assert {t["name"] for t in bars["data"]} == labels
    assert all(t["error_y"]["visible"] for t in bars["data"])
    assert bars["layout"]["yaxis"]["range"] == [0, 100]  # percent axis
    hlines = [sh for sh in bars["layout"]["shapes"] if sh.get("line", {}).get("dash") == "dash"]
    for task, line in zip(sorted(seeded.tasks), hlines):  # one panel per task, in task order
        base = [r["accuracy"] for r in seeded.results if r["variant_id"] == seeded.baseline_id and r["task"] == task]
        assert line["y0"] == pytest.approx(100 * statistics.fmean(base))
    # one colour per variant, the same on every chart
    for label in labels:
        seen = set().union(*(_trace_colors(f, label) for f in figs))
        assert len(seen) == 1, (label, seen)
    assert len({next(iter(set().union(*(_trace_colors(f, lab) for f in figs)))) for lab in labels}) == 2
    titles = [f["layout"]["yaxis"]["title"]["text"] for f in figs]
    assert "peak memory (GiB)" in titles and "GPU hours per run (h)" in titles
    # the differences: the paired interval as an asymmetric error bar around the mean difference
    from scipy import stats as sps

    acc = next(f for f in deltas if f["layout"]["title"]["text"].startswith("Δ accuracy") and "(rte)" in
               f["layout"]["title"]["text"])
    base = {r["seed"]: r["accuracy"] for r in seeded.results if r["variant_id"] == seeded.baseline_id
            and r["task"] == "rte"}
    for trace in acc["data"]:
        vid = next(v for v, lab in seeded.labels.items() if lab == trace["name"])
        d = [100 * (r["accuracy"] - base[r["seed"]]) for r in seeded.results if r["variant_id"] == vid
             and r["task"] == "rte"]
        half = sps.t.ppf(0.975, len(d) - 1) * statistics.stdev(d) / math.sqrt(len(d))
        assert trace["y"][0] == pytest.approx(statistics.fmean(d))
        assert trace["error_y"]["array"][0] == pytest.approx(half) == trace["error_y"]["arrayminus"][0]
        assert trace["text"][0].startswith("*") == (abs(statistics.fmean(d)) > half)
        if trace["name"] in labels:  # the same colour as on the other charts
            assert _trace_colors(acc, trace["name"]) == set().union(*(_trace_colors(f, trace["name"]) for f in figs))
    # curves: a band (lowest to highest seed) behind each mean line; log scale on demand
    loss = next(f for f in figs if f["layout"]["title"]["text"].startswith("train_loss"))
    assert [t.get("fill") for t in loss["data"]].count("toself") == 2 * 2  # 2 variants x 2 tasks
    at.toggle(key="cmp_log").set_value(True).run()
    loss = next(f for f in _figures(at).values() if f["layout"]["title"]["text"].startswith("train_loss"))
    dev = next(f for f in _figures(at).values() if f["layout"]["title"]["text"].startswith("dev_accuracy"))
    assert loss["layout"]["yaxis"]["type"] == "log" and dev["layout"]["yaxis"]["range"] == [0, 100]


def test_compare_on_cpu_says_why_charts_are_missing(page, sqlite_url):
    _seed(sqlite_url, cpu=True, curves=False)
    at = page("compare")
    _no_exceptions(at)
    captions = " ".join(c.value for c in at.caption)
    assert "every run was on CPU" in captions and "no curve points were recorded" in captions
    titles = [f["layout"]["title"]["text"] for f in _figures(at).values()]
    assert not [t for t in titles if t.startswith("GPU hours")]
    assert any(t.startswith("wall time per run") for t in titles)


def test_pareto_front():
    from zolab.ui.charts import pareto_front

    pts = [(2.0, 0.8), (1.0, 0.7), (3.0, 0.75), (1.5, 0.85), (1.0, 0.6)]
    assert pareto_front(pts) == [1, 3]
    assert pareto_front([]) == []


# ---------------------------------------------------------------- jobs
def _select(at, prefix: str, rows: list[int]):
    table = next(d for d in at.dataframe if d.key and d.key.startswith(prefix))
    at.session_state[table.key] = {"selection": {"rows": rows, "columns": [], "cells": []}}
    return at.run()


def test_jobs_table_has_times_and_worker(page, sqlite_url):
    _seed(sqlite_url, tasks=("sst2",), missing={(1, "sst2", 13)})
    at = page("jobs")
    _no_exceptions(at)
    table = frame(at, "attempts")
    done = table[table["status"] == "succeeded"]
    assert set(done["duration (s)"]) == {60.0} and set(done["worker"]) == {"testhost:4242"}
    assert (done["end (UTC)"] - done["start (UTC)"]).dt.total_seconds().eq(60).all()
    queued = table[table["status"] == "queued"].iloc[0]
    assert queued["worker"] == "" and math.isnan(queued["duration (s)"])
    assert list(table["id"]) == sorted(table["id"])  # id order: rows keep their place under a selection
    assert "error" not in table.columns  # no job has an error: hidden, and said
    assert any("error (no job has an error)" in c.value for c in at.caption)


def test_jobs_cancel_and_retry_the_selected_rows(page, sqlite_url):
    seeded = _seed(sqlite_url, missing={(1, "sst2", 13), (2, "sst2", 13)}, tasks=("sst2",))
    with session_scope(sqlite_url) as s:
        queued = sorted(j.id for j in s.query(Job).filter_by(status="queued"))
    at = page("jobs")
    _no_exceptions(at)
    ids = list(frame(at, "attempts")["id"])
    assert len(ids) == len(seeded.job_ids)
    assert next(b for b in at.button if b.key == "cancel_selected").disabled  # nothing selected yet
    _select(at, "jobs_table_", [ids.index(q) for q in queued])
    _no_exceptions(at)
    assert any(f"Selected: job {queued[0]}, {queued[1]}" in c.value for c in at.caption)
    at.button(key="cancel_selected").click().run()
    _no_exceptions(at)
    with session_scope(sqlite_url) as s:
        assert {s.get(Job, q).status for q in queued} == {JobStatus.CANCELLED.value}
    assert any(f"Cancel: job {queued[0]} → cancelled" in m.value for m in at.success)
    at.button(key="retry_selected").click().run()
    _no_exceptions(at)
    with session_scope(sqlite_url) as s:
        assert {s.get(Job, q).status for q in queued} == {JobStatus.QUEUED.value}
    # illegal: a succeeded job cannot be cancelled; the refusal is shown, the state kept
    done = next(j for j in seeded.job_ids if j not in queued)
    _select(at, "jobs_table_", [ids.index(done)])
    at.button(key="cancel_selected").click().run()
    _no_exceptions(at)
    assert at.error and f"job {done}" in at.error[0].value
    with session_scope(sqlite_url) as s:
        assert s.get(Job, done).status == JobStatus.SUCCEEDED.value
    # filter by state (a new filter is a new table, with no selection)
    at.multiselect(key="jobs_states").set_value(["queued"]).run()
    assert list(frame(at, "attempts")["id"]) == queued
    assert next(b for b in at.button if b.key == "cancel_selected").disabled


def test_a_selection_keeps_its_jobs_when_states_change_under_a_filter(page, sqlite_url):
    """Rows selected under a state filter stay the same jobs even when one leaves the filter's state."""
    _seed(sqlite_url, missing={(1, "sst2", 13), (2, "sst2", 13)}, tasks=("sst2",))
    with session_scope(sqlite_url) as s:
        queued = sorted(j.id for j in s.query(Job).filter_by(status="queued"))
    at = page("jobs")
    at.multiselect(key="jobs_states").set_value(["queued"]).run()
    _select(at, "jobs_table_", [1])                       # the second queued job
    from zolab.ui import actions

    actions.cancel(queued[0])                             # the first leaves "queued" meanwhile
    at.run()
    assert list(frame(at, "attempts")["id"]) == queued    # frozen: same jobs, same places
    at.button(key="cancel_selected").click().run()
    with session_scope(sqlite_url) as s:
        assert s.get(Job, queued[1]).status == JobStatus.CANCELLED.value


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
    studies = frame(at, "variant · task")
    assert list(studies["variant · task"]) == ["p1:v1:sst2"]  # no zolab attributes: the study's own name
    assert studies["complete"].iloc[0] == 6
    best = next(d.value for d in at.dataframe if sorted(d.value.columns) == sorted(study.best_params))
    assert best["lr"].iloc[0] == pytest.approx(study.best_params["lr"])
    trials = frame(at, "dev accuracy (%)")
    assert list(trials["state"]) == ["complete"] * 6
    assert trials["dev accuracy (%)"].max() == pytest.approx(100 * study.best_value)
    assert len(at.get("plotly_chart")) == 3  # history, importances (6 >= 5 completed), slice


def _tuned_plan_with_study(url: str):
    """A seeded plan and a study named as zolab names them, with its trials tied to tune jobs:
    2 complete, 1 pruned at step 40 (its job cancelled by the pruner), 1 failed."""
    import optuna
    from optuna.trial import TrialState

    from zolab.db.models import Job
    from zolab.platform import tuning

    seeded = _seed(url, tasks=("sst2",))
    vid = seeded.variant_ids[1]
    name = tuning.study_name(seeded.plan_id, vid, "sst2")
    study = optuna.create_study(study_name=name, storage=tuning.storage_for(url), direction="maximize")
    for k, v in {"plan_id": seeded.plan_id, "variant_id": vid, "variant": seeded.labels[vid], "task": "sst2",
                 "trials": 6}.items():
        study.set_user_attr(k, v)
    outcomes = [(1e-3, 0.8, None), (1e-2, 0.9, None), (1e-1, None, "pruned"), (1.0, None, "fail")]
    dist = {"lr": optuna.distributions.FloatDistribution(1e-4, 10, log=True)}
    states = {None: TrialState.COMPLETE, "pruned": TrialState.PRUNED, "fail": TrialState.FAIL}
    with session_scope(url) as s:
        for n, (lr, value, how) in enumerate(outcomes):
            steps = {20: 0.5, 40: 0.4} if how == "pruned" else {20: 0.5}
            study.add_trial(optuna.trial.create_trial(params={"lr": lr}, distributions=dist, value=value,
                                                      state=states[how], intermediate_values=steps))
            status = {"pruned": "cancelled", "fail": "failed", None: "succeeded"}[how]
            error = {"pruned": "pruned at step 40 by the median pruner", "fail": "ValueError: loss is nan"}.get(how)
            s.add(Job(key=f"tune-{n}", plan_id=seeded.plan_id, variant_id=vid, task="sst2", seed=13, stage="tune",
                      study_name=name, trial_number=n, config={"lr": lr}, status=status, error=error))
    return seeded, vid, name


def test_tuning_page_names_studies_by_variant_and_lists_trials(page, sqlite_url):
    seeded, vid, name = _tuned_plan_with_study(sqlite_url)
    at = page("tuning")
    _no_exceptions(at)
    studies = frame(at, "variant · task")
    assert list(studies["variant · task"]) == [f"{seeded.labels[vid]} · sst2"]
    row = studies.iloc[0]
    assert (row["trials"], row["complete"], row["pruned"], row["failed"]) == ("4/6", 2, 1, 1)
    assert at.selectbox(key="study").format_func(name) == f"{seeded.labels[vid]} · sst2"
    trials = frame(at, "dev accuracy (%)")
    assert list(trials["state"]) == ["complete", "complete", "pruned at step 40 by the median pruner",
                                     "failed: ValueError: loss is nan"]
    assert list(trials["lr"]) == pytest.approx([1e-3, 1e-2, 1e-1, 1.0])
    assert trials["dev accuracy (%)"].iloc[:2].tolist() == pytest.approx([80.0, 90.0])
    assert trials["last reported (%)"].iloc[2] == pytest.approx(40.0)
    assert trials["job"].notna().all()
    # 2 completed trials are too few for importances: not drawn, and the page says how many are needed
    assert any("need at least 5 completed trials" in c.value and "this study has 2" in c.value for c in at.caption)
    assert not [c for c in at.get("plotly_chart") if c.proto.id and "importances" in c.proto.id]


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
