"""Metrics against sklearn and by hand."""

from __future__ import annotations

import os
import random

import pytest
from sklearn.metrics import accuracy_score, f1_score

from zolab.runners.metrics import accuracy, convergence_step, loss_slope, macro_f1, peak_rss_bytes


@pytest.mark.parametrize("seed", range(25))
def test_macro_f1_and_accuracy_match_sklearn(seed):
    rng = random.Random(seed)
    k = rng.randint(2, 5)
    n = rng.randint(1, 60)
    gold = [rng.randrange(k) for _ in range(n)]
    pred = [rng.randrange(k) for _ in range(n)]
    assert macro_f1(pred, gold) == pytest.approx(f1_score(gold, pred, average="macro", zero_division=0))
    assert accuracy(pred, gold) == pytest.approx(accuracy_score(gold, pred))


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="2 predictions for 3 labels"):
        macro_f1([0, 1], [0, 1, 1])


def test_convergence_step_and_slope():
    curve = [(0, 0.5), (100, 0.6), (200, 0.75), (300, 0.8)]
    assert convergence_step(curve) == 200  # 0.9 * 0.8 = 0.72
    assert convergence_step([]) is None
    assert loss_slope([(0, 1.0), (10, 0.0), (20, -1.0)]) == pytest.approx(-0.1)
    assert loss_slope([(0, 1.0)]) is None


def _current_rss() -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmRSS:"))


def test_peak_rss_grows_with_allocation():
    before = peak_rss_bytes()
    # the high-water mark may sit well above today's RSS after earlier tests freed memory: climb past it
    headroom = max(0, before - _current_rss()) if os.path.exists("/proc/self/status") else 0
    blob = bytearray(headroom + 64 * 2**20)
    blob[:: 4096] = b"x" * len(blob[:: 4096])  # touch every page
    assert peak_rss_bytes() >= before + 48 * 2**20
