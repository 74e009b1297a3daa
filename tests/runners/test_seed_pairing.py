"""Why the leaderboard pairs variants by seed: a run's data sample depends on its seed alone.

Two variants of a plan with the same seed see the same test set (and the same dev and train sets
at equal sizes), whatever their method, learning rate, perturbation or PEFT; another seed draws
another sample. The same seed's difference between variants therefore cancels the sample.
"""

from __future__ import annotations

from zolab.runners.config import RunConfig
from zolab.runners.reporter import NullReporter
from zolab.runners.train import _Run

BASE = RunConfig(model="tiny-opt", steps=2, train_size=40, dev_size=16, test_size=24, batch_size=4, max_length=24,
                 device="cpu", seed=13)


def _splits(cfg: RunConfig):
    r = _Run(cfg, NullReporter())
    return (r.splits.train, r.splits.dev, r.splits.test), [r.schedule.batch(t) for t in range(3)]


def test_same_seed_same_sample_whatever_the_variant():
    (train, dev, test), batches = _splits(BASE)
    for variant in (BASE.replace(method="fo-adam", lr=1e-3), BASE.replace(eps=0.1, n_samples=3),
                    BASE.replace(peft="lora"), BASE.replace(in_place=False), BASE.replace(objective="f1")):
        (t2, d2, te2), b2 = _splits(variant)
        assert (t2, d2, te2) == (train, dev, test), variant
        assert b2 == batches                                    # the same batch at every step, too
    # a train-size ablation changes the train set only: the test set (what is compared) stays
    (t3, d3, te3), _ = _splits(BASE.replace(train_size=20))
    assert te3 == test and d3 == dev and t3 != train


def test_another_seed_another_sample():
    (_, _, test), _ = _splits(BASE)
    (_, _, other), _ = _splits(BASE.replace(seed=21))
    assert other != test
