"""Every method decreases the loss on a small problem; forward counts; hyperparameter checks; param groups."""

from __future__ import annotations

import pytest
import torch

from tests.runners.problems import Regression, fo_closure, optimizer_for
from zolab.runners.config import RunConfig
from zolab.runners.errors import NonFiniteLossError
from zolab.runners.optim import OPTIMIZERS, ZOSGD, build_optimizer, param_groups
from zolab.runners.optim.zo import OnePointRF, ZOAdam, ZOMomentum

# (method, knobs, steps): lrs chosen for the 9-parameter regression
CASES = [
    ("mezo", dict(lr=2e-2), 300),
    ("zo-sgd", dict(lr=2e-2, n_samples=4), 150),
    ("zo-momentum", dict(lr=5e-3, momentum=0.8), 300),
    ("zo-adam", dict(lr=5e-2), 300),
    ("zo-sign", dict(lr=1e-2), 300),
    ("zo-cons", dict(lr=2e-2), 300),
    ("forward-grad", dict(lr=2e-2), 300),
    ("one-point-rf", dict(lr=1e-3, eps=1e-2), 600),
    ("fo-sgd", dict(lr=5e-2, momentum=0.5), 100),
    ("fo-adam", dict(lr=5e-2), 100),
]


def test_every_method_has_a_case():
    assert {m for m, _, _ in CASES} == set(OPTIMIZERS)


@pytest.mark.parametrize(("method", "knobs", "steps"), CASES, ids=[c[0] for c in CASES])
def test_method_decreases_the_loss(method, knobs, steps):
    model = Regression(seed=1)
    opt = optimizer_for(model, method=method, **knobs)
    with torch.no_grad():
        start = model().item()
    closure = fo_closure(model, opt) if getattr(opt, "needs_grad", False) else model
    for _ in range(steps):
        opt.step(closure)
    with torch.no_grad():
        end = model().item()
    assert end < 0.3 * start, (start, end)


@pytest.mark.parametrize(("method", "per_step"), [("mezo", 2), ("zo-cons", 5), ("forward-grad", 1), ("one-point-rf", 1)])
def test_forwards_per_step_are_counted(method, per_step):
    model = Regression()
    opt = optimizer_for(model, method=method, lr=1e-3)
    for _ in range(10):
        opt.step(model)
    assert model.calls == 10 * per_step == 10 * opt.forwards_per_step


def test_n_samples_costs_2q_forwards():
    model = Regression()
    opt = optimizer_for(model, lr=1e-3, n_samples=3)
    opt.step(model)
    assert model.calls == 6
    assert len(opt.trajectory) == 3 and opt.step_count == 1


def test_zo_step_records_seed_and_projected_grad():
    model = Regression()
    opt = optimizer_for(model, lr=1e-3, seed=5)
    opt.step(model)
    (seed, g), = opt.trajectory
    assert seed == opt.seeds_for(0)[0] and isinstance(g, float) and g != 0.0


def test_one_point_first_step_does_not_move_then_moves():
    model = Regression()
    opt = optimizer_for(model, method="one-point-rf", lr=1e-3)
    before = [p.detach().clone() for p in model.parameters()]
    opt.step(model)
    assert opt.trajectory[0][1] == 0.0
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(before, model.parameters()))
    opt.step(model)
    assert opt.trajectory[1][1] != 0.0


def test_non_finite_loss_is_refused_before_the_update():
    model = Regression()
    opt = optimizer_for(model, lr=1e-3)
    with pytest.raises(NonFiniteLossError) as err:
        opt.step(lambda: torch.tensor(float("nan")))
    assert err.value.step == 1 and "non-finite" in str(err.value)
    assert opt.trajectory == []


def test_hyperparameters_are_checked():
    params = [torch.nn.Parameter(torch.zeros(3))]
    with pytest.raises(ValueError, match="learning rate"):
        ZOSGD(params, lr=0.0)
    with pytest.raises(ValueError, match="eps"):
        ZOSGD(params, lr=1e-3, eps=-1.0)
    with pytest.raises(ValueError, match="momentum"):
        ZOMomentum(params, lr=1e-3, momentum=1.5)
    with pytest.raises(ValueError, match="betas"):
        ZOAdam(params, lr=1e-3, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="n_samples must be 1"):
        OnePointRF(params, lr=1e-3, n_samples=2)
    with pytest.raises(ValueError, match="closure"):
        ZOSGD(params, lr=1e-3).step()


def test_weight_decay_skips_biases_and_norms():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    groups, names = param_groups(list(model.named_parameters()), 0.1)
    assert groups[0]["weight_decay"] == 0.1 and len(groups[0]["params"]) == 1
    assert names[0] == "0.weight"
    assert groups[1]["weight_decay"] == 0.0 and set(names[1:]) == {"0.bias", "1.weight", "1.bias"}


def test_weight_decay_only_shrinks_decayed_params():
    model = torch.nn.Linear(4, 1)
    opt = optimizer_for(model, method="fo-sgd", lr=0.1, momentum=0.0, weight_decay=0.5)
    # zero loss gradient: only decay can move weights
    w, b = model.weight.detach().clone(), model.bias.detach().clone()
    opt.step(fo_closure(lambda: (model.weight * 0).sum() + (model.bias * 0).sum(), opt))
    assert torch.allclose(model.weight, w * (1 - 0.1 * 0.5))
    assert torch.equal(model.bias, b)


def test_build_optimizer_maps_methods_to_classes():
    model = Regression()
    kinds = {m: type(optimizer_for(model, method=m, lr=1e-3)).__name__ for m in OPTIMIZERS}
    assert kinds["mezo"] == kinds["zo-sgd"] == "ZOSGD"
    assert kinds["fo-adam"] == "FOAdam" and kinds["forward-grad"] == "ForwardGrad"
    with pytest.raises(ValueError, match="no trainable"):
        build_optimizer(RunConfig(), [])
