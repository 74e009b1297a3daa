"""lr_schedule + warmup_steps: HF transformers semantics, the ZO update uses the step's lr, and
replay / resume reproduce it bit for bit."""

from __future__ import annotations

import pytest
import torch
import transformers

from tests.runners.test_train import SMALL, _final_params
from zolab.runners.config import RunConfig
from zolab.runners.models import load_model
from zolab.runners.optim import build_optimizer
from zolab.runners.reporter import JobCancelled, MemoryReporter
from zolab.runners.schedule import LRSchedule, lr_factor
from zolab.runners.train import run

HF = {
    "constant": lambda opt, w, n: transformers.get_constant_schedule_with_warmup(opt, w),
    "linear": transformers.get_linear_schedule_with_warmup,
    "cosine": transformers.get_cosine_schedule_with_warmup,
}


@pytest.mark.parametrize("kind", sorted(HF))
@pytest.mark.parametrize(("warmup", "total"), [(0, 10), (3, 10), (10, 25), (7, 5)])
def test_lr_factor_matches_transformers_step_by_step(kind, warmup, total):
    """The lr of every step (and past the end) equals HF's LambdaLR after as many scheduler steps."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.37)
    sched = HF[kind](opt, warmup, total)
    ours = LRSchedule(kind, 0.37, warmup, total)
    for t in range(total + 3):
        assert ours.lr(t) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-15, abs=1e-18), (kind, t)
        opt.step()
        sched.step()


def test_schedule_shapes():
    assert [lr_factor("linear", t, 2, 6) for t in range(7)] == [0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0]
    assert lr_factor("cosine", 2, 2, 6) == 1.0 and lr_factor("cosine", 4, 2, 6) == pytest.approx(0.5)
    assert lr_factor("cosine", 6, 2, 6) == pytest.approx(0.0, abs=1e-16)
    assert all(lr_factor("constant", t, 0, 5) == 1.0 for t in range(8))  # MeZO: the lr never changes
    assert LRSchedule("constant", 1e-3, 0, 5).trivial and not LRSchedule("constant", 1e-3, 1, 5).trivial


class _Quad(torch.nn.Module):
    """0.5 |A theta - b|^2 in float64 on a fixed "batch" (A, b)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(5)
        self.register_buffer("A", torch.randn(6, 4, generator=g, dtype=torch.float64))
        self.register_buffer("b", torch.randn(6, generator=g, dtype=torch.float64))
        self.theta = torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))

    def loss_at(self, theta: torch.Tensor) -> float:
        r = self.A @ theta - self.b
        return float(0.5 * r @ r)

    def forward(self) -> torch.Tensor:
        return torch.tensor(self.loss_at(self.theta.detach()), dtype=torch.float64)


@pytest.mark.parametrize("kind", ["linear", "cosine", "constant"])
def test_zo_weights_follow_the_scheduled_lr_in_float64(kind):
    """theta_{t+1} = theta_t - lr_t g_t z_t with g_t the SPSA difference, lr_t from the schedule."""
    model = _Quad()
    cfg = RunConfig(method="mezo", lr=0.05, eps=1e-3, kernel="torch", seed=11, lr_schedule=kind,
                    warmup_steps=3, steps=8)
    opt = build_optimizer(cfg, list(model.named_parameters()))
    sched = LRSchedule.from_config(cfg)
    for t in range(cfg.steps):
        sched.apply(opt, t)
        opt.step(model)
    theta = torch.zeros(4, dtype=torch.float64)
    for t, (seed, g_live) in enumerate(opt.trajectory):
        z = opt.backend.z(model.theta, seed, 0).to(torch.float64)
        g = (model.loss_at(theta + cfg.eps * z) - model.loss_at(theta - cfg.eps * z)) / (2 * cfg.eps)
        assert g == pytest.approx(g_live, rel=1e-9, abs=1e-12)
        theta = theta - sched.lr(t) * g * z
    assert torch.allclose(model.theta.detach(), theta, rtol=0, atol=1e-12), (model.theta - theta)
    assert sched.lr(0) == 0.0 and opt.trajectory[0][1] != 0.0  # the first warmup step probes but does not move


def test_runner_applies_the_lr_of_each_step():
    """A real tiny run: final weights = initial - sum_t lr_t g_t z_t over the recorded trajectory (the
    hand formula in float64); lr_{t+1} (an off-by-one schedule) lands elsewhere."""
    cfg = RunConfig(method="mezo", lr=2e-2, steps=8, eval_every=8, checkpoint_every=8, lr_schedule="linear",
                    warmup_steps=3, **SMALL)
    rep = MemoryReporter()
    final, res = _final_params(cfg, rep)
    (ckpt,) = rep.checkpoints
    model, _ = load_model(cfg)
    opt = build_optimizer(cfg, [(n, p) for n, p in model.named_parameters() if p.requires_grad])
    sched = LRSchedule.from_config(cfg)

    def hand(shift: int) -> list[torch.Tensor]:
        out = [p.detach().to(torch.float64).clone() for p in opt.params]
        for t, (seed, g) in enumerate(ckpt.trajectory):
            for i, p in enumerate(opt.params):
                out[i] -= sched.lr(t + shift) * g * opt.backend.z(p, seed, i).to(torch.float64)
        return out

    err = max((a.to(torch.float64) - b).abs().max().item() for a, b in zip(final, hand(0)))
    off = max((a.to(torch.float64) - b).abs().max().item() for a, b in zip(final, hand(1)))
    assert err < 1e-5 and off > 100 * err, (err, off)
    assert [round(v, 12) for _, v in rep.series("lr")] == [round(sched.lr(t), 12) for t in range(8)]
    assert res.extra["lr_schedule"] == "linear" and res.extra["warmup_steps"] == 3


@pytest.mark.parametrize("method", ["mezo", "zo-adam", "fo-adam", "linear-probe"])
def test_resume_mid_warmup_is_bit_identical(method, tmp_path, monkeypatch):
    monkeypatch.setenv("ZOLAB_DATA_ROOTS", str(tmp_path))  # checkpoint_dir must lie under a data root
    cfg = RunConfig(method=method, lr=1e-2, steps=12, eval_every=6, checkpoint_every=5, lr_schedule="cosine",
                    warmup_steps=8, task_options={"checkpoint_dir": str(tmp_path)}, **SMALL)
    full, _ = _final_params(cfg)
    stopped = MemoryReporter(stop_at=5)
    with pytest.raises(JobCancelled):
        run(cfg, stopped)
    ckpt = stopped.checkpoints[-1]
    assert ckpt.step == 5 < cfg.warmup_steps
    resumed, res = _final_params(cfg, MemoryReporter(), resume=ckpt)
    assert res.extra["resumed_from"] == 5
    for a, b in zip(full, resumed):
        assert torch.equal(a, b), (a - b).abs().max()
    constant, _ = _final_params(cfg.replace(lr_schedule="constant", warmup_steps=0))
    assert any(not torch.equal(a, b) for a, b in zip(full, constant))  # the schedule changed the run
