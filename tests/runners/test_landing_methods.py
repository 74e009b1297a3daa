"""Every method lands where its formula does: tiny OPT in float64, one fixed batch, a few steps.

The live optimizer comes from ``build_optimizer`` (the path a run takes: param groups, lookahead,
estimator, one-point alias); the expected weights, projected gradients, reported losses, zo-cons
choices and momentum/Adam buffers come from :mod:`tests.runners.method_reference`, which draws z
and applies each update rule by hand.

Tolerance: float64 everywhere and bit-identical z, so the only differences are rounding. The live
run moves the weights in place (theta + eps z, -2 eps z, ... fused passes) where the reference
evaluates theta +- eps z directly; the losses then differ by ~1e-16 and the projected gradients by
~1e-16 / eps (eps = 1e-3). Weights must agree to 1e-11, or to 1e-10 of how far the tensor moved
when that is larger (one-point steps move a weight by ~3: its g is a difference of losses at two
different points, ~1e2; the rounding of g then shows at ~4e-12 relative, machine-dependent), and
projected gradients to 1e-9 relative. A wrong rule is off by O(1) of the move.
"""

from __future__ import annotations

import pytest
import torch

from tests.runners.method_reference import CASES, Problem, buffers, config, live_run, reference_run
from zolab.runners.optim import build_optimizer
from zolab.runners.optim.base import ZOOptimizer

WEIGHT_ATOL = 1e-11
WEIGHT_RTOL = 1e-10   # of the tensor's own move
GRAD_RTOL = 1e-9


@pytest.mark.parametrize(("method", "knobs", "steps"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_lands_where_the_formula_does(method, knobs, steps):
    cfg = config(method, steps, **knobs)
    problem, opt, losses = live_run(cfg, steps)
    ref = reference_run(Problem(), cfg, steps)
    start = Problem().weights()

    if isinstance(opt, ZOOptimizer):
        assert opt.settled                                       # the last step leaves theta itself
        assert [s for s, _ in opt.trajectory] == [s for step in ref.seeds for s in step]
        got = torch.tensor([g for _, g in opt.trajectory], dtype=torch.float64)
        want = torch.tensor([g for step in ref.grads for g in step], dtype=torch.float64)
        assert torch.allclose(got, want, rtol=GRAD_RTOL, atol=1e-12), (got - want).abs().max()
    assert losses == pytest.approx(ref.losses, rel=1e-12, abs=1e-13)

    weights = problem.weights()
    moved = max((weights[n] - start[n]).abs().max().item() for n in weights)
    if set(ref.choices) != {"stay"}:
        assert moved > 1e6 * WEIGHT_ATOL, moved                  # the test sees real steps
    for n in weights:
        err = (weights[n] - ref.theta[n]).abs().max().item()
        tensor_moved = (weights[n] - start[n]).abs().max().item()
        assert err <= max(WEIGHT_ATOL, WEIGHT_RTOL * tensor_moved), (n, err, tensor_moved)

    state = buffers(opt, problem)
    assert set(state) == set(ref.buffers)
    for key, by_name in ref.buffers.items():
        for n, want_buf in by_name.items():
            assert torch.allclose(state[key][n], want_buf, rtol=1e-9, atol=1e-12), (key, n)

    if method == "zo-cons":
        assert opt.choices == ref.choices
        if knobs["lr"] < 1:
            assert "minus" in ref.choices            # the branch that used to land at theta - 3 lr ghat
        else:
            assert set(ref.choices) == {"stay"}


def test_zo_cons_takes_the_plus_candidate_when_the_estimate_points_uphill():
    """A quadratic whose minimum lies along +z but whose forward estimate says "uphill" (eps > 2 delta):
    the plus candidate theta + lr ghat is the lowest, and the weights land exactly there."""
    from tests.runners.method_reference import stream_seed, z_of

    theta0 = torch.zeros(8, dtype=torch.float64)
    cfg = config("zo-cons", 1, lr=0.02, eps=5e-2, estimator="forward", weight_decay=0.0)
    z = z_of(theta0, stream_seed(cfg.seed, 0, 0), 0)
    delta = 1e-2
    target = theta0 + delta * z                          # L(theta + t z) = (t - delta)^2 |z|^2
    w = torch.nn.Parameter(theta0.clone())
    opt = build_optimizer(cfg, [("w", w)])
    loss = opt.step(lambda: ((w - target) ** 2).sum())
    g = ((cfg.eps - delta) ** 2 - delta**2) * float(z @ z) / cfg.eps     # = (eps - 2 delta) |z|^2 > 0
    assert opt.choices == ["plus"] and opt.trajectory[0][1] == pytest.approx(g, rel=1e-9)
    expect = theta0 + cfg.lr * g * z
    assert torch.allclose(w.detach(), expect, rtol=0, atol=1e-15)
    assert loss == pytest.approx(float(((expect - target) ** 2).sum()), rel=1e-12)


def test_one_point_rf_is_mezo_with_the_one_point_estimator():
    """The alias and the knob run the same operations: bit-identical weights and trajectories."""
    a_problem, a, _ = live_run(config("one-point-rf", 4, lr=1e-2), 4)
    b_problem, b, _ = live_run(config("mezo", 4, lr=1e-2, estimator="one-point"), 4)
    assert a.trajectory == b.trajectory and a.estimator == b.estimator == "one-point"
    assert all(torch.equal(x, y) for x, y in zip(a_problem.weights().values(), b_problem.weights().values()))
    with pytest.raises(ValueError, match="one-point-rf is mezo with estimator one-point"):
        live_run(config("one-point-rf", 1, lr=1e-2, estimator="forward"), 1)
