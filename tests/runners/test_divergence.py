"""Divergence: the rule (window-mean train loss > 10x its first value; non-finite dev scores), the
runner stopping early with diverged=True and a reason, and NaN losses still failing as before."""

from __future__ import annotations

import math

import pytest
import torch

from tests.runners.test_train import SMALL
from zolab.runners.config import RunConfig
from zolab.runners.divergence import WINDOW, DivergenceMonitor, watch_scores
from zolab.runners.errors import NonFiniteLossError
from zolab.runners.reporter import JobCancelled, MemoryReporter
from zolab.runners.train import run


def test_smoothed_loss_is_the_window_mean_and_the_first_value_is_the_first_loss():
    mon = DivergenceMonitor()
    assert mon.update(1, 1.0) is None and mon.first == 1.0
    # one spike of 50 is smoothed away: mean of (1, 50) = 25.5 > 10 -> diverged; (1, 18) = 9.5 -> not
    quiet = DivergenceMonitor()
    quiet.update(1, 1.0)
    assert quiet.update(2, 18.0) is None and quiet.smoothed == 9.5
    found = mon.update(2, 50.0)
    assert found is not None and found.step == 2 and "25.5" in found.reason and "10x its first value 1" in found.reason
    assert mon.update(3, 1e9) is None and mon.found is found  # the first divergence is kept


def test_window_forgets_old_losses():
    mon = DivergenceMonitor()
    for step in range(1, 40):
        mon.update(step, 1.0 if step <= 20 else 5.0)
    assert len(mon.recent) == WINDOW and mon.smoothed == 5.0 and mon.found is None
    for step in range(40, 40 + WINDOW):
        mon.update(step, 10.5)
    assert mon.found is not None and mon.found.step == 39 + WINDOW  # the window is all 10.5 only then


def test_negative_losses_never_diverge_and_nan_is_not_divergence():
    acc = DivergenceMonitor()  # objective accuracy: loss = -accuracy in [-1, 0]
    for step, v in enumerate([-0.5, -0.01, 0.0, -0.9], 1):
        assert acc.update(step, v) is None
    mon = DivergenceMonitor()
    mon.update(1, 1.0)
    assert mon.update(2, math.nan) is None and mon.update(3, math.inf) is None and mon.found is None


def test_non_finite_dev_metric_diverges():
    mon = DivergenceMonitor()
    assert mon.check_eval(10, "dev accuracy", 0.5) is None
    assert "nan" in mon.check_eval(20, "dev accuracy", math.nan).reason
    other = DivergenceMonitor()
    assert "not finite" in other.check_eval(5, "dev accuracy", 0.5, scores_finite=False).reason


def test_state_round_trip():
    mon = DivergenceMonitor()
    for step, v in enumerate([2.0, 3.0, 4.0], 1):
        mon.update(step, v)
    again = DivergenceMonitor()
    again.load(mon.state())
    assert (again.first, list(again.recent)) == (2.0, [2.0, 3.0, 4.0])


def test_watch_scores_sees_non_finite_logits():
    lin = torch.nn.Linear(3, 2)
    lm = torch.nn.Module()
    lm.head = lin
    lm.get_output_embeddings = lambda: lin
    with watch_scores(lm) as w:
        lin(torch.ones(1, 3))
    assert w.finite
    with watch_scores(lm) as w:
        lin(torch.tensor([[math.inf, 0.0, 0.0]]))
    assert not w.finite


@pytest.mark.parametrize("method", ["mezo", "fo-sgd"])
def test_huge_lr_run_diverges_and_stops_early(method):
    lr = 1.0 if method == "mezo" else 50.0
    rep = MemoryReporter()
    res = run(RunConfig(method=method, lr=lr, steps=60, eval_every=20, **SMALL), rep)
    assert res.diverged
    step = res.extra["diverged_at_step"]
    assert res.steps == step < 60 and len(rep.progress_calls) == step  # stopped at the divergent step
    assert "exceeds 10x its first value" in res.extra["diverged_reason"]
    losses = [v for _, v in rep.series("train_loss")]
    first = losses[0]
    assert sum(losses[-WINDOW:]) / len(losses[-WINDOW:]) > 10 * first  # the curve shows why
    assert math.isfinite(res.accuracy)


def test_healthy_run_does_not_diverge():
    res = run(RunConfig(method="mezo", lr=1e-3, steps=30, eval_every=10, **SMALL))
    assert not res.diverged and res.steps == 30 and "diverged_reason" not in res.extra


def test_non_finite_dev_scores_diverge_the_run(monkeypatch):
    """A dev evaluation whose logits are NaN (argmax still returns a number) ends the run diverged."""
    from zolab.runners import train as train_mod

    real = train_mod.evaluate

    def poisoned(model, scorer, examples, batch_size):
        head = model.get_output_embeddings()
        handle = head.register_forward_pre_hook(lambda m, args: (args[0] * math.nan, *args[1:]))
        try:
            return real(model, scorer, examples, batch_size)
        finally:
            handle.remove()

    rep = MemoryReporter()
    cfg = RunConfig(method="mezo", lr=1e-3, steps=20, eval_every=5, **SMALL)
    calls = {"n": 0}

    def second_eval_poisoned(model, scorer, examples, batch_size):
        calls["n"] += 1
        fn = poisoned if calls["n"] == 4 else real  # dev@0, test@0, dev@5, dev@10 (poisoned)
        return fn(model, scorer, examples, batch_size)

    monkeypatch.setattr(train_mod, "evaluate", second_eval_poisoned)
    res = run(cfg, rep)
    assert res.diverged and res.extra["diverged_at_step"] == 10 and res.steps == 10
    assert "label-word scores are not finite" in res.extra["diverged_reason"]


def test_nan_loss_still_fails_as_before(monkeypatch):
    """NaN is not divergence: the ZO optimizer raises NonFiniteLossError (the worker fails the job)."""
    from zolab.runners import objectives

    ce = objectives.OBJECTIVES["ce"]
    calls = {"n": 0}

    def poisoned(ll, lengths, labels):
        calls["n"] += 1
        return ce(ll, lengths, labels) * (math.nan if calls["n"] > 4 else 1.0)

    monkeypatch.setitem(objectives.OBJECTIVES, "ce", poisoned)
    with pytest.raises(NonFiniteLossError) as err:
        run(RunConfig(method="mezo", lr=1e-3, steps=10, **SMALL))
    assert err.value.step == 3


def test_divergence_state_survives_resume(tmp_path):
    """The first loss a resumed run compares against is the original run's (carried in the checkpoint)."""
    cfg = RunConfig(method="mezo", lr=1e-3, steps=8, checkpoint_every=4, **SMALL)
    stopped = MemoryReporter(stop_at=4)
    with pytest.raises(JobCancelled):
        run(cfg, stopped)
    state = stopped.checkpoints[-1].rng_state["divergence"]
    first = stopped.progress_calls[0][2]
    assert state["first"] == pytest.approx(first) and len(state["recent"]) == 4
    resumed = run(cfg, MemoryReporter(), resume=stopped.checkpoints[-1])
    assert not resumed.diverged
