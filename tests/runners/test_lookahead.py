"""Cross-step fusion (lookahead): MeZO leaves the weights at theta + eps z of the next step.

Two weight passes a step instead of three, the same optimisation (up to fp32 rounding), weights
read only at settle points, and replays that stay bit-identical.
"""

from __future__ import annotations

import pytest
import torch

from tests.runners.problems import Regression
from zolab.runners.config import RunConfig
from zolab.runners.kernels import TorchBackend
from zolab.runners.optim import ZOSGD, ZOAdam, build_optimizer, settle_points
from zolab.runners.train import run


class CountingBackend(TorchBackend):
    """Counts weight passes (apply calls) and z draws."""

    def __init__(self) -> None:
        super().__init__()
        self.passes = 0
        self.draws = 0

    def _draw(self, scratch, slot, p, seed, index):   # one (seed, parameter) generation
        self.draws += 1
        return super()._draw(scratch, slot, p, seed, index)

    def apply(self, params, terms, decay=None):
        self.passes += 1
        super().apply(params, terms, decay)


def make(lookahead: bool, settle_every: int = 1000, weight_decay: float = 0.0, n_samples: int = 1,
         backend=None) -> tuple[Regression, ZOSGD]:
    model = Regression()
    opt = ZOSGD(model.parameters(), lr=0.05, eps=1e-3, seed=7, n_samples=n_samples, weight_decay=weight_decay,
                backend=backend or TorchBackend(), lookahead=lookahead,
                settle_after=(lambda t: t % settle_every == 0) if lookahead else None)
    return model, opt


def params(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()]).clone()


@pytest.mark.parametrize("weight_decay,n_samples", [(0.0, 1), (0.1, 1), (0.0, 3), (0.05, 2)])
def test_lookahead_follows_the_same_trajectory(weight_decay, n_samples):
    plain_model, plain = make(False, weight_decay=weight_decay, n_samples=n_samples)
    ahead_model, ahead = make(True, settle_every=7, weight_decay=weight_decay, n_samples=n_samples)
    for _ in range(30):
        plain.step(plain_model)
        ahead.step(ahead_model)
    ahead.settle()
    g_plain = torch.tensor([g for _, g in plain.trajectory])
    g_ahead = torch.tensor([g for _, g in ahead.trajectory])
    assert [s for s, _ in plain.trajectory] == [s for s, _ in ahead.trajectory]
    assert torch.allclose(g_plain, g_ahead, rtol=1e-3, atol=1e-4), (g_plain - g_ahead).abs().max()
    assert torch.allclose(params(plain_model), params(ahead_model), rtol=1e-5, atol=1e-6)
    assert plain_model().item() < 0.5 * Regression()().item()      # and it does optimise


def test_two_passes_a_step_instead_of_three():
    counted = {}
    for lookahead in (False, True):
        backend = CountingBackend()
        model, opt = make(lookahead, backend=backend)
        for _ in range(20):
            opt.step(model)
        opt.settle()
        counted[lookahead] = (backend.passes, backend.draws)
    n_params = 2
    assert counted[False] == (60, 60 * n_params)          # +eps; -2eps; restore+update (merged seed)
    # the first step's +eps, then per step -2eps and restore+update+next +eps, then one settle
    assert counted[True][0] == 1 + 2 * 20 + 1
    # as many z draws a step (the last pass draws two): the saving is weight traffic, not RNG
    assert counted[True][1] == (1 + 3 * 20 + 1) * n_params


def test_between_steps_the_weights_carry_the_next_perturbation():
    model, opt = make(True)
    opt.step(model)
    carried = params(model)
    assert not opt.settled
    assert opt.settle() and opt.settled and not opt.settle()
    theta = params(model)
    seed = opt.seeds_for(1)[0]
    z = torch.cat([TorchBackend().z(p, seed, i).flatten() for i, p in enumerate(model.parameters())])
    assert torch.allclose(carried - theta, 1e-3 * z, atol=1e-7)
    opt.step(model)                        # a settled optimizer starts the next step with its own +eps pass
    assert len(opt.trajectory) == 2


def test_settle_points_leave_the_weights_unperturbed():
    model, opt = make(True, settle_every=3)
    for step in range(1, 10):
        opt.step(model)
        assert opt.settled == (step % 3 == 0), step


def test_replay_of_a_lookahead_run_is_bit_identical():
    model, opt = make(True, settle_every=4)
    for _ in range(10):
        opt.step(model)
    opt.settle()
    fresh, replayer = make(True, settle_every=4)
    for k in range(10):
        replayer.replay([opt.trajectory[k]])
    replayer.settle()
    assert torch.equal(params(model), params(fresh))


def test_checkpointing_unsettled_weights_is_refused():
    model, opt = make(True)
    opt.step(model)
    with pytest.raises(RuntimeError, match="settle_after"):
        opt.zo_state()


def test_lookahead_only_where_the_maths_allows():
    with pytest.raises(ValueError, match="in_place=False"):
        ZOSGD(Regression().parameters(), lr=0.1, lookahead=True, in_place=False)
    with pytest.raises(ValueError, match="ZOAdam cannot fuse"):
        ZOAdam(Regression().parameters(), lr=0.1, lookahead=True)


def test_build_optimizer_enables_lookahead_for_in_place_mezo_with_the_trainers_settle_points():
    cfg = RunConfig(method="mezo", steps=50, eval_every=20, checkpoint_every=15, kernel="torch")
    opt = build_optimizer(cfg, list(Regression().named_parameters()))
    assert opt.lookahead
    assert [t for t in range(1, 51) if settle_points(cfg)(t)] == [15, 20, 30, 40, 45, 50]
    naive = build_optimizer(cfg.replace(in_place=False), list(Regression().named_parameters()))
    adam = build_optimizer(cfg.replace(method="zo-adam"), list(Regression().named_parameters()))
    assert not naive.lookahead and not adam.lookahead


def test_trainer_reads_settled_weights():
    """dev accuracy at every eval step equals a plain (non-lookahead) run's, up to rounding of the weights."""
    small = {"model": "tiny-llama-h16-l1", "task": "synthetic-sentiment", "train_size": 64, "dev_size": 40, "test_size": 40,
                 "batch_size": 8, "eps": 1e-2, "lr": 1e-2, "device": "cpu", "steps": 12, "eval_every": 4, "checkpoint_every": 100}
    ahead = run(RunConfig(method="mezo", **small))
    plain = run(RunConfig(method="mezo", in_place=False, **small))   # naive ZO: no lookahead, same z
    assert [s for s, _ in ahead.extra["dev_curve"]] == [0, 4, 8, 12]
    for (_, a), (_, b) in zip(ahead.extra["dev_curve"], plain.extra["dev_curve"]):
        assert abs(a - b) <= 1 / 40 + 1e-9
    assert abs(ahead.accuracy - plain.accuracy) <= 1 / 40 + 1e-9
