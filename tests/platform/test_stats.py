"""zolab.platform.stats against scipy on fixed numbers, and Holm against a hand-computed example."""

from __future__ import annotations

import math

import pytest
from scipy import stats as st

from zolab.platform.stats import (
    family_size,
    holm,
    mean_ci,
    mean_ci_from_moments,
    paired_diff,
    paired_diff_from_moments,
    t_quantile,
    with_holm,
)

#: (baseline, variant) per seed: accuracies as a run stores them (fractions)
CASES = [
    ([0.70, 0.72, 0.68], [0.78, 0.77, 0.76]),
    ([0.70, 0.72, 0.68], [0.69, 0.74, 0.70]),
    ([0.51, 0.62, 0.55, 0.58, 0.60], [0.60, 0.61, 0.66, 0.59, 0.71]),
    ([0.9, 0.8], [0.7, 0.75]),
]


def _moments(diffs):
    n = len(diffs)
    return n, math.fsum(diffs) / n, math.fsum(d * d for d in diffs)


@pytest.mark.parametrize("base,var", CASES)
def test_paired_interval_and_p_match_scipy_ttest_rel(base, var):
    ref = st.ttest_rel(var, base)
    ci = ref.confidence_interval(0.95)
    got = paired_diff(base, var)
    assert got.n == len(base)
    assert got.mean == pytest.approx(sum(v - b for b, v in zip(base, var)) / len(base), rel=1e-12)
    assert got.t == pytest.approx(float(ref.statistic), rel=1e-9)
    assert got.p == pytest.approx(float(ref.pvalue), rel=1e-9)
    assert (got.low, got.high) == (pytest.approx(float(ci.low), rel=1e-9), pytest.approx(float(ci.high), rel=1e-9))
    assert got.excludes_zero == (ref.pvalue < 0.05)
    # the database's moments give the same numbers
    again = paired_diff_from_moments(*_moments([v - b for b, v in zip(base, var)]))
    assert again.low == pytest.approx(got.low, rel=1e-9, abs=1e-12)
    assert again.high == pytest.approx(got.high, rel=1e-9, abs=1e-12)
    assert again.p == pytest.approx(got.p, rel=1e-7)


def test_the_first_case_by_hand():
    # diffs 0.08, 0.05, 0.08: mean 0.07, sd sqrt(0.0003) = 0.017320508, se = 0.01, t = 7, df 2
    d = paired_diff([0.70, 0.72, 0.68], [0.78, 0.77, 0.76])
    assert d.mean == pytest.approx(0.07)
    assert d.sd == pytest.approx(math.sqrt(0.0003))
    assert d.t == pytest.approx(7.0)
    assert d.high - d.mean == pytest.approx(4.302652729911275 * 0.01)
    assert d.excludes_zero


def test_t_quantile_is_scipy_ppf():
    for df in (1, 2, 3, 4, 9, 29, 30, 31, 100):
        assert t_quantile(df) == pytest.approx(float(st.t.ppf(0.975, df)), rel=1e-12)
        assert t_quantile(df, 0.9) == pytest.approx(float(st.t.ppf(0.95, df)), rel=1e-12)
    with pytest.raises(ValueError):
        t_quantile(0)
    with pytest.raises(ValueError):
        t_quantile(3, 1.0)


def test_mean_ci_matches_scipy_t_interval():
    vals = [0.785, 0.6, 0.92, 0.81]
    lo, hi = st.t.interval(0.95, len(vals) - 1, loc=st.tmean(vals), scale=st.sem(vals))
    got = mean_ci(vals)
    assert (got.low, got.high) == (pytest.approx(lo, rel=1e-12), pytest.approx(hi, rel=1e-12))
    n, mean, ss = len(vals), sum(vals) / len(vals), sum(v * v for v in vals)
    moments = mean_ci_from_moments(n, mean, ss)
    assert moments.half == pytest.approx(got.half, rel=1e-9)
    one = mean_ci([0.5])
    assert one.mean == 0.5 and one.half is None and one.low is None
    assert mean_ci([]).mean is None and mean_ci_from_moments(0, None, None).n == 0


def test_fewer_than_two_paired_seeds_give_no_interval():
    one = paired_diff([0.7], [0.75])
    assert one.n == 1 and one.mean == pytest.approx(0.05)
    assert one.low is None and one.p is None and not one.excludes_zero and not one.has_interval
    assert one.reason == "1 paired seed: no interval"
    none = paired_diff([], [])
    assert none.mean is None and none.reason == "no paired seeds"
    assert paired_diff_from_moments(1, 0.05, 0.0025).reason == "1 paired seed: no interval"
    assert paired_diff_from_moments(0, None, None).reason == "no paired seeds"
    with pytest.raises(ValueError, match="pair them by seed"):
        paired_diff([0.1, 0.2], [0.3])


@pytest.mark.filterwarnings("ignore:Precision loss")
def test_zero_spread_follows_scipy():
    same = paired_diff([0.7, 0.8, 0.9], [0.7, 0.8, 0.9])
    assert (same.low, same.high, same.p) == (0.0, 0.0, 1.0) and not same.excludes_zero
    shift = paired_diff([0.5, 0.5, 0.5], [0.75, 0.75, 0.75])     # exact in binary: sd exactly 0
    ref = st.ttest_rel([0.75] * 3, [0.5] * 3)
    assert shift.p == float(ref.pvalue) == 0.0
    assert shift.low == shift.high == 0.25 and shift.excludes_zero


def test_holm_against_a_hand_computed_example():
    # sorted: 0.005 x4 = 0.02; 0.01 x3 = 0.03; 0.03 x2 = 0.06; 0.04 x1 = 0.04 -> max(0.06, 0.04) = 0.06
    p = [0.01, 0.04, 0.03, 0.005]
    assert holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # None is outside the family: m = 2 here
    assert holm([0.02, None, 0.04]) == [pytest.approx(0.04), None, pytest.approx(0.04)]
    assert holm([0.6, 0.7]) == [1.0, 1.0]           # capped at 1
    assert holm([]) == []


def test_holm_matches_scipy_where_scipy_has_it():
    """scipy has no Holm; its Bonferroni bound (m p) is Holm's first step and an upper bound."""
    p = [0.001, 0.2, 0.013, 0.04, 0.5]
    adj = holm(p)
    assert adj[0] == pytest.approx(5 * 0.001)
    assert all(a <= min(1.0, 5 * x) + 1e-15 for a, x in zip(adj, p))
    assert all(a >= x for a, x in zip(adj, p))


def test_with_holm_sets_adjusted_p_and_significance():
    diffs = [paired_diff(b, v) for b, v in CASES[:3]] + [paired_diff([0.7], [0.8])]
    adjusted = with_holm(diffs)
    assert family_size(adjusted) == 3
    want = holm([d.p for d in diffs])
    assert [d.p_holm for d in adjusted] == want
    assert adjusted[-1].p_holm is None and not adjusted[-1].significant_holm()
    assert adjusted[0].significant_holm() == (want[0] < 0.05)
