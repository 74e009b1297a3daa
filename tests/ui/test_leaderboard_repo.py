"""The SQL leaderboard equals aggregates computed in Python from the seeded rows, on every backend."""

from __future__ import annotations

import math
import statistics

import pytest

from tests.ui.seeding import seed_plan
from zolab.db.repo.leaderboard import (
    curve_names,
    leaderboard,
    leaderboard_tasks,
    mean_ci,
    metric_curves,
    t_quantile_975,
)


def _expected(results, variant_id, task, key):
    vals = [r[key] for r in results if r["variant_id"] == variant_id and r["task"] == task]
    mean = statistics.fmean(vals)
    if len(vals) < 2:
        return len(vals), mean, None
    sd = statistics.stdev(vals)
    return len(vals), mean, t_quantile_975(len(vals) - 1) * sd / math.sqrt(len(vals))


def test_t_quantiles_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    for df in list(range(1, 40)) + [50, 100, 1000, 10**6]:
        assert t_quantile_975(df) == pytest.approx(stats.t.ppf(0.975, df), abs=6e-4)
    with pytest.raises(ValueError):
        t_quantile_975(0)


def test_mean_ci_known_values():
    # values 1, 2, 3: mean 2, sd 1, CI = 4.303 / sqrt(3)
    sd, ci = mean_ci(3, 2.0, 14.0)
    assert sd == pytest.approx(1.0)
    assert ci == pytest.approx(4.303 / math.sqrt(3))
    assert mean_ci(1, 0.5, 0.25) == (None, None)
    assert mean_ci(3, 0.1, 3 * 0.1 * 0.1 - 1e-18)[0] == 0.0  # clamped, not NaN


def test_leaderboard_matches_python_aggregates(db_session):
    seeded = seed_plan(db_session, missing={(1, "rte", 42), (2, "rte", 21), (2, "rte", 42)})
    seed_plan(db_session, name="other plan", rng_seed=1)  # must not leak into the first plan
    db_session.commit()

    rows = leaderboard(db_session, seeded.plan_id)
    assert len(rows) == 6
    assert [r.task for r in rows] == ["rte"] * 3 + ["sst2"] * 3
    assert [r.is_baseline for r in rows] == [True, False, False] * 2
    for row in rows:
        assert row.label == seeded.labels[row.variant_id]
        n, acc_mean, acc_ci = _expected(seeded.results, row.variant_id, row.task, "accuracy")
        _, f1_mean, f1_ci = _expected(seeded.results, row.variant_id, row.task, "f1")
        assert row.n == n
        assert row.accuracy_mean == pytest.approx(acc_mean, rel=1e-9)
        assert row.f1_mean == pytest.approx(f1_mean, rel=1e-9)
        if n == 1:
            assert row.accuracy_ci is None and row.f1_ci is None
        else:
            assert row.accuracy_ci == pytest.approx(acc_ci, rel=1e-6)
            assert row.f1_ci == pytest.approx(f1_ci, rel=1e-6)
        mine = [r for r in seeded.results if r["variant_id"] == row.variant_id and r["task"] == row.task]
        assert row.gpu_hours_sum == pytest.approx(sum(r["gpu_hours"] for r in mine))
        assert row.gpu_hours_mean == pytest.approx(statistics.fmean(r["gpu_hours"] for r in mine))
        assert row.wall_time_mean == pytest.approx(statistics.fmean(r["wall_time_s"] for r in mine))
        assert row.peak_memory_allocated_mean == pytest.approx(
            statistics.fmean(r["peak_memory_allocated"] for r in mine))
        assert row.peak_memory_reserved_mean == pytest.approx(
            statistics.fmean(r["peak_memory_reserved"] for r in mine))
        assert row.peak_rss_mean is None
        assert row.peak_memory == row.peak_memory_allocated_mean

    # counts where seeds are missing
    by_key = {(r.task, r.variant_id): r for r in rows}
    assert by_key[("rte", seeded.variant_ids[1])].n == 2
    assert by_key[("rte", seeded.variant_ids[2])].n == 1
    # deltas vs the baseline of the same task
    for task in ("rte", "sst2"):
        base = by_key[(task, seeded.baseline_id)]
        assert base.delta_accuracy == 0.0
        for vid in seeded.variant_ids[1:]:
            row = by_key[(task, vid)]
            assert row.delta_accuracy == pytest.approx(row.accuracy_mean - base.accuracy_mean)
            assert row.delta_f1 == pytest.approx(row.f1_mean - base.f1_mean)
            assert row.delta_peak_memory == pytest.approx(row.peak_memory - base.peak_memory)
            assert row.delta_gpu_hours == pytest.approx(row.gpu_hours_mean - base.gpu_hours_mean)


def test_leaderboard_filters_task_and_stage(db_session):
    seeded = seed_plan(db_session, tasks=("sst2", "rte"), cpu=True)
    db_session.commit()
    rows = leaderboard(db_session, seeded.plan_id, task="sst2")
    assert {r.task for r in rows} == {"sst2"} and len(rows) == 3
    assert all(r.peak_memory_allocated_mean is None and r.peak_rss_mean > 0 for r in rows)
    assert rows[1].delta_peak_memory == pytest.approx(rows[1].peak_rss_mean - rows[0].peak_rss_mean)
    assert leaderboard(db_session, seeded.plan_id, stage="tune") == []
    assert leaderboard(db_session, seeded.plan_id + 999) == []
    assert leaderboard_tasks(db_session, seeded.plan_id) == ["rte", "sst2"]


def test_leaderboard_without_baseline_results_has_no_deltas(db_session):
    seeded = seed_plan(db_session, tasks=("sst2",), seeds=(1,),
                       missing={(0, "sst2", 1)}, curves=False)
    db_session.commit()
    rows = leaderboard(db_session, seeded.plan_id)
    assert [r.is_baseline for r in rows] == [False, False]
    assert all(r.delta_accuracy is None and r.n == 1 and r.accuracy_ci is None for r in rows)


def test_metric_curves_by_variant_and_job(db_session):
    seeded = seed_plan(db_session, tasks=("sst2",), seeds=(1, 2))
    db_session.commit()
    vid = seeded.variant_ids[1]
    points = metric_curves(db_session, variant_ids=[vid], names=["train_loss"])
    assert {p.variant_id for p in points} == {vid}
    assert {p.name for p in points} == {"train_loss"}
    assert len(points) == 2 * 5  # two seeds x steps 0, 25, ..., 100
    steps = [p.step for p in points if p.seed == 1]
    assert steps == sorted(steps) == [0, 25, 50, 75, 100]
    one_job = metric_curves(db_session, job_ids=[seeded.job_ids[0]])
    assert {p.job_id for p in one_job} == {seeded.job_ids[0]}
    assert {p.name for p in one_job} == {"train_loss", "dev_accuracy"}
    assert metric_curves(db_session) == []
    assert curve_names(db_session, [vid]) == ["dev_accuracy", "train_loss"]


def test_paired_moments_read_results_once_in_seed_order(sqlite_url):
    """The paired differences come from a window over (task, seed) fed by the (plan, stage, task, seed)
    index: results are read once, never searched again per row (a self-join took minutes at 100k)."""
    from zolab.db.repo.leaderboard import _aggregates_query
    from zolab.db.session import session_scope

    with session_scope(sqlite_url) as s:
        sql = str(_aggregates_query(1, None, "final", True).compile(compile_kwargs={"literal_binds": True}))
        plan = [row[3] for row in s.connection().exec_driver_sql("EXPLAIN QUERY PLAN " + sql)]
    reads = [p for p in plan if "results" in p]
    assert reads == ["SEARCH results USING INDEX ix_results_plan_stage_task_seed (plan_id=? AND stage=?)"], plan
