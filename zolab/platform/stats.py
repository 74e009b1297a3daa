"""Statistics for leaderboards: Student-t intervals, paired differences over seeds, Holm correction.

Pure functions over numbers (scipy for the t distribution); no database, no formatting. Why paired:
two variants run with the same seed see the same data sample (``sample_splits`` and every task
loader draw from the seed alone, so the test set is identical and the train set is identical at
equal sizes). The seed-to-seed spread of the data sample is then shared by both, and the difference
per seed removes it: the paired t-interval is far narrower than comparing two independent means.

Inputs come either as values (``paired_diff([...], [...])``) or as moments the database aggregated
(``paired_diff_from_moments(n, mean, sum_sq)``): both give the same numbers as
``scipy.stats.ttest_rel`` and ``scipy.stats.t.ppf`` (the tests check it on fixed numbers).

Conventions: ``confidence`` 0.95 two-sided; fewer than 2 values or pairs give no interval and no
p-value (``None``) and a ``reason`` that says so; a zero spread gives the degenerate interval
``[d, d]`` with p = 0 (d != 0) or 1 (d == 0), as scipy's t statistic is then infinite or undefined.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from scipy import stats as _st

DEFAULT_CONFIDENCE = 0.95
DEFAULT_ALPHA = 0.05


@functools.lru_cache(maxsize=1024)
def t_quantile(df: int, confidence: float = DEFAULT_CONFIDENCE) -> float:
    """Two-sided Student-t quantile ``t_{(1+confidence)/2, df}`` (scipy.stats.t.ppf; cached: a board
    asks for the same few df hundreds of times)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return float(_st.t.ppf(0.5 + confidence / 2.0, df))


def _sd_from_moments(n: int, mean: float, sum_sq: float) -> float:
    """Sample standard deviation from count, mean and sum of squares (rounding below 0 clamped)."""
    return math.sqrt(max((sum_sq - n * mean * mean) / (n - 1), 0.0))


@dataclass(frozen=True)
class MeanCI:
    """Mean of ``n`` values with its Student-t interval (``half`` None when n < 2)."""

    n: int
    mean: float | None
    sd: float | None = None
    half: float | None = None
    confidence: float = DEFAULT_CONFIDENCE

    @property
    def low(self) -> float | None:
        return None if self.half is None or self.mean is None else self.mean - self.half

    @property
    def high(self) -> float | None:
        return None if self.half is None or self.mean is None else self.mean + self.half


def mean_ci_from_moments(n: int, mean: float | None, sum_sq: float | None,
                         confidence: float = DEFAULT_CONFIDENCE) -> MeanCI:
    """MeanCI from SQL aggregates (count, avg, sum of squares)."""
    if n < 1 or mean is None:
        return MeanCI(0, None, confidence=confidence)
    if n < 2 or sum_sq is None:
        return MeanCI(n, float(mean), confidence=confidence)
    sd = _sd_from_moments(n, float(mean), float(sum_sq))
    return MeanCI(n, float(mean), sd, t_quantile(n - 1, confidence) * sd / math.sqrt(n), confidence)


def mean_ci(values: Sequence[float], confidence: float = DEFAULT_CONFIDENCE) -> MeanCI:
    """MeanCI of plain values."""
    vals = [float(v) for v in values]
    if not vals:
        return MeanCI(0, None, confidence=confidence)
    mean = math.fsum(vals) / len(vals)
    if len(vals) < 2:
        return MeanCI(1, mean, confidence=confidence)
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in vals) / (len(vals) - 1))
    return MeanCI(len(vals), mean, sd, t_quantile(len(vals) - 1, confidence) * sd / math.sqrt(len(vals)),
                  confidence)


@dataclass(frozen=True)
class PairedDiff:
    """Variant minus baseline over ``n`` paired seeds: mean difference, t-interval, two-sided p.

    ``p_holm`` is filled by :func:`with_holm` for the family it belongs to (None until then, and
    for comparisons without a p-value). ``reason`` is set when there is no interval.
    """

    n: int
    mean: float | None
    sd: float | None = None
    low: float | None = None
    high: float | None = None
    t: float | None = None
    p: float | None = None
    p_holm: float | None = None
    confidence: float = DEFAULT_CONFIDENCE
    reason: str | None = None

    @property
    def has_interval(self) -> bool:
        return self.low is not None and self.high is not None

    @property
    def excludes_zero(self) -> bool:
        """The interval lies entirely above or entirely below 0 (uncorrected)."""
        return self.has_interval and (self.low > 0.0 or self.high < 0.0)  # type: ignore[operator]

    def significant_holm(self, alpha: float = DEFAULT_ALPHA) -> bool:
        """Still below ``alpha`` after the Holm correction of its family."""
        return self.p_holm is not None and self.p_holm < alpha


def _no_interval(n: int, mean: float | None, confidence: float) -> PairedDiff:
    reason = "no paired seeds" if n == 0 else "1 paired seed: no interval"
    return PairedDiff(n, mean, confidence=confidence, reason=reason)


def paired_diff_from_moments(n: int, mean: float | None, sum_sq: float | None,
                             confidence: float = DEFAULT_CONFIDENCE) -> PairedDiff:
    """Paired t-interval and p from the differences' count, mean and sum of squares."""
    if n < 2 or mean is None or sum_sq is None:
        return _no_interval(n, None if mean is None or n < 1 else float(mean), confidence)
    mean = float(mean)
    sd = _sd_from_moments(n, mean, float(sum_sq))
    return _paired(n, mean, sd, confidence)


def paired_diff(baseline: Sequence[float], variant: Sequence[float],
                confidence: float = DEFAULT_CONFIDENCE) -> PairedDiff:
    """``variant - baseline`` seed by seed (the two sequences are aligned by seed)."""
    if len(baseline) != len(variant):
        raise ValueError(f"{len(variant)} variant values for {len(baseline)} baseline values: pair them by seed")
    diffs = [float(v) - float(b) for b, v in zip(baseline, variant)]
    n = len(diffs)
    if n < 2:
        return _no_interval(n, diffs[0] if diffs else None, confidence)
    mean = math.fsum(diffs) / n
    sd = math.sqrt(math.fsum((d - mean) ** 2 for d in diffs) / (n - 1))
    return _paired(n, mean, sd, confidence)


def _paired(n: int, mean: float, sd: float, confidence: float) -> PairedDiff:
    se = sd / math.sqrt(n)
    if se == 0.0:
        return PairedDiff(n, mean, sd, mean, mean, None, 1.0 if mean == 0.0 else 0.0, confidence=confidence)
    half = t_quantile(n - 1, confidence) * se
    t = mean / se
    p = float(2.0 * _st.t.sf(abs(t), n - 1))
    return PairedDiff(n, mean, sd, mean - half, mean + half, t, p, confidence=confidence)


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm step-down adjusted p-values, in the input order; ``None`` entries are not in the family.

    Sorted ascending, ``p_(i)`` becomes ``max_{j<=i} min(1, (m - j + 1) p_(j))`` with m the number of
    p-values present: rejecting where the adjusted value is below alpha controls the family-wise
    error rate at alpha (Holm 1979).
    """
    present = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    m = len(present)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(present):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def with_holm(diffs: Sequence[PairedDiff]) -> list[PairedDiff]:
    """The same differences with ``p_holm`` set, the family being exactly ``diffs``."""
    adjusted = holm([d.p for d in diffs])
    return [replace(d, p_holm=a) for d, a in zip(diffs, adjusted)]


def family_size(diffs: Sequence[PairedDiff]) -> int:
    """How many comparisons of ``diffs`` carry a p-value (the m of the Holm correction)."""
    return sum(d.p is not None for d in diffs)


__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_CONFIDENCE",
    "MeanCI",
    "PairedDiff",
    "family_size",
    "holm",
    "mean_ci",
    "mean_ci_from_moments",
    "paired_diff",
    "paired_diff_from_moments",
    "t_quantile",
    "with_holm",
]
