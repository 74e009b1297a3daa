"""The leaderboard board from the database: paired differences, Holm, ranking, dead columns, exports."""

from __future__ import annotations

import csv
import io
import re

import pytest
from scipy import stats as st

from tests.platform._boards import ACCURACY, SEEDS, seed_fixed_plan
from zolab.db.repo.leaderboard import aggregates
from zolab.db.session import session_scope
from zolab.platform import board_format as bf
from zolab.platform.leaderboard import load_board, pareto_front
from zolab.platform.lookup import NotFound
from zolab.platform.stats import holm


def _diffs(label):
    return [ACCURACY[label][s] - ACCURACY["baseline"][s] for s in SEEDS if s in ACCURACY[label]]


def test_paired_moments_in_sql_pair_by_seed(db_url):
    fixed = seed_fixed_plan(db_url)
    with session_scope(db_url) as s:
        cells = {c.variant_id: c for c in aggregates(s, fixed.plan_id)}
    base = cells[fixed.variant_ids["baseline"]]
    assert base.is_baseline and base.paired == {} and base.n == 3
    for label in ("fo-adam", "eps 0.1", "one-seed"):
        c = cells[fixed.variant_ids[label]]
        d = _diffs(label)
        m = c.paired["accuracy"]
        assert m.n == len(d)                      # one-seed pairs on seed 1 only
        assert m.mean == pytest.approx(sum(d) / len(d), abs=1e-12)
        assert m.sum_sq == pytest.approx(sum(x * x for x in d), abs=1e-12)
        assert c.paired["f1"].mean == pytest.approx(m.mean, abs=1e-12)   # F1 = accuracy - 0.05
    assert cells[fixed.variant_ids["zo-broken"]].diverged == 1
    assert cells[fixed.variant_ids["fo-adam"]].metrics["method_memory"].mean == 4_000_000


def test_board_cells_match_scipy_and_holm(db_url):
    fixed = seed_fixed_plan(db_url)
    board = load_board(db_url, fixed.plan_id)
    (tb,) = board.tasks
    # Holm family: every variant with >= 2 paired seeds (one-seed has 1: outside the family)
    family = ["fo-adam", "eps 0.1", "zo-broken"]
    refs = {lab: st.ttest_rel([ACCURACY[lab][s] for s in SEEDS], [ACCURACY["baseline"][s] for s in SEEDS])
            for lab in family}
    want_holm = dict(zip(family, holm([float(refs[lab].pvalue) for lab in family])))
    assert tb.family_size == {"accuracy": 3, "f1": 3}
    for lab in family:
        d = tb.row(lab).cells["accuracy"].delta
        ci = refs[lab].confidence_interval(0.95)
        assert d.n == 3
        assert d.p == pytest.approx(float(refs[lab].pvalue), rel=1e-6)
        assert (d.low, d.high) == (pytest.approx(float(ci.low), rel=1e-6), pytest.approx(float(ci.high), rel=1e-6))
        assert d.p_holm == pytest.approx(want_holm[lab], rel=1e-6)
    spec = next(c for c in tb.columns if c.key == "accuracy")
    # fo-adam: +7.0 pts [+2.7, +11.3]; its interval excludes 0 but Holm over 3 comparisons keeps p > 0.05
    assert want_holm["fo-adam"] > 0.05
    assert bf.delta_text(spec, tb.row("fo-adam").cells["accuracy"].delta, board.alpha) == "+7.0 pts [+2.7, +11.3] *"
    assert bf.delta_text(spec, tb.row("eps 0.1").cells["accuracy"].delta, board.alpha) == "+1.0 pts [-3.3, +5.3]"
    assert bf.delta_text(spec, tb.row("one-seed").cells["accuracy"].delta, board.alpha) == \
        "+10.0 pts (1 paired seed: no interval)"
    assert bf.mean_ci_text(spec, tb.row("baseline").cells["accuracy"].summary) == "70.0 ± 5.0"
    assert bf.mean_ci_text(spec, tb.row("one-seed").cells["accuracy"].summary) == "80.0 (1 seed)"


def test_holm_marker_when_the_family_is_small(db_url):
    """With fo-adam the only comparison of its family (m = 1), Holm changes nothing: * and †."""
    from zolab.db.models import Result, Variant

    fixed = seed_fixed_plan(db_url)
    with session_scope(db_url) as s:  # keep baseline and fo-adam only
        for lab in ("eps 0.1", "zo-broken", "one-seed"):
            s.query(Result).filter(Result.variant_id == fixed.variant_ids[lab]).delete()
            s.query(Variant).filter(Variant.id == fixed.variant_ids[lab]).delete()
    board = load_board(db_url, fixed.plan_id)
    (tb,) = board.tasks
    assert tb.family_size["accuracy"] == 1
    spec = tb.columns[0]
    assert bf.delta_text(spec, tb.row("fo-adam").cells["accuracy"].delta, board.alpha) == "+7.0 pts [+2.7, +11.3] *†"


def test_ranking_diverged_last_and_dead_columns_dropped(db_url):
    fixed = seed_fixed_plan(db_url)
    (tb,) = load_board(db_url, fixed.plan_id).tasks
    assert [r.label for r in tb.rows] == ["baseline", "one-seed", "fo-adam", "eps 0.1", "zo-broken"]
    broken = tb.row("zo-broken")
    assert broken.diverged and broken.diverged_seeds == 1
    assert bf.label_text(broken) == "zo-broken [diverged 1/3]"
    dropped = {d.key: d.reason for d in tb.dropped}
    assert set(dropped) == {"peak_memory_allocated", "peak_memory_reserved", "gpu_hours"}
    assert "CPU runs hold no GPU" in dropped["gpu_hours"] and "no CUDA runs" in dropped["peak_memory_allocated"]
    assert tb.shown == ["accuracy", "f1", "method_memory", "peak_rss", "wall_time"]
    assert tb.primary_memory() == "method_memory"
    notes = " ".join(bf.task_notes(load_board(db_url, fixed.plan_id), tb))
    assert "family: per task, per metric" in notes and "m=3 for accuracy" in notes
    assert "not shown: GPU peak allocated" in notes and "diverged k/n" in notes


def test_gpu_runs_keep_gpu_columns_and_use_allocated_memory(db_url):
    fixed = seed_fixed_plan(db_url, cpu=False)
    (tb,) = load_board(db_url, fixed.plan_id).tasks
    assert tb.dropped == []
    assert tb.primary_memory() == "peak_memory_allocated"


def test_pareto_front_only_beyond_noise(db_url):
    fixed = seed_fixed_plan(db_url)
    (tb,) = load_board(db_url, fixed.plan_id).tasks
    front = pareto_front(tb)
    # method memory is the same every seed (interval of width 0): its differences are real;
    # fo-adam's paired accuracy interval excludes 0. Diverged and one-seed rows are left out.
    assert front.x == "method_memory" and front.x_separates and front.y_separates
    assert front.labels == ["fo-adam", "eps 0.1"]
    # RSS differs by a few MiB from seed to seed and not between variants: within noise
    rss = pareto_front(tb, x="peak_rss")
    assert rss.labels == [] and not rss.x_separates and "within run-to-run noise" in rss.note


def test_unknown_plan_and_task_are_errors(db_url):
    fixed = seed_fixed_plan(db_url)
    with pytest.raises(NotFound, match="no plan with id 999"):
        load_board(db_url, 999)
    with pytest.raises(NotFound, match=r"plan \d+ has no task 'rte' \(its tasks: sst2\)"):
        load_board(db_url, fixed.plan_id, task="rte")


def test_exports_markdown_latex_csv(sqlite_url):
    fixed = seed_fixed_plan(sqlite_url, extra_task="rte")
    board = load_board(sqlite_url, fixed.plan_id)
    assert [t.task for t in board.tasks] == ["rte", "sst2"]
    md = bf.render(board, "markdown")
    assert "| fo-adam | 3 | 77.0 ± 2.5 | +7.0 pts [+2.7, +11.3] * |" in md
    assert md.count("### plan") == 2 and "|:---|---:|" in md
    tex = bf.render(board, "latex")
    assert r"\begin{tabular}" in tex and r"\toprule" in tex and r"77.0 $\pm$ 2.5" in tex
    assert r"$+7.0$ [$+2.7$, $+11.3$]$^{*}$" in tex and "diverged 1/3" in tex
    rows = list(csv.DictReader(io.StringIO(bf.render(board, "csv"))))
    fo = next(r for r in rows if r["variant"] == "fo-adam")
    assert fo["accuracy (%) mean"] == "77.0" and fo["Δ accuracy (pts)"] == "7.0"
    assert fo["Δ accuracy low"] == "2.7" and fo["Δ accuracy excludes 0"] == "True"
    assert fo["method memory (MiB) mean"] == "3.8"
    # no 17-digit floats anywhere
    assert not re.search(r"\d\.\d{6,}", bf.render(board, "csv"))
    rte_base = next(r for r in rows if r["task"] == "rte")
    assert rte_base["variant"] == "baseline" and rte_base["Δ accuracy (pts)"] == ""
    with pytest.raises(ValueError, match="unknown format"):
        bf.render(board, "html")


def test_seed_values_for_drill_downs(db_url):
    from zolab.db.repo.leaderboard import seed_values

    fixed = seed_fixed_plan(db_url)
    with session_scope(db_url) as s:
        acc = seed_values(s, fixed.plan_id, "accuracy")
        mem = seed_values(s, fixed.plan_id, "method_memory", task="sst2")
    assert acc[("sst2", fixed.variant_ids["fo-adam"])] == pytest.approx(ACCURACY["fo-adam"])
    assert acc[("sst2", fixed.variant_ids["one-seed"])] == pytest.approx({1: 0.80})
    assert set(mem[("sst2", fixed.variant_ids["baseline"])].values()) == {1_000_000.0}
