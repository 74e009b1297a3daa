"""The z knobs through the optimizers: distribution, sparsity (random | magnitude), perturb_layers.

Weights are checked against the formula in float64: after a MeZO step the touched entries sit at
``theta - lr g z`` (g the recorded projected gradient, z the backend's direction), the untouched
ones are bit-identical, for every ZO method; runs replay bit-identically; block-wise runs touch only
the listed layers of OPT, Llama and GPT-2.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.runners.problems import Regression
from zolab.runners.config import ZO_METHODS, RunConfig
from zolab.runners.kernels import ZLaw
from zolab.runners.kernels.selection import layer_count, layer_of, select_layers
from zolab.runners.models import load_model
from zolab.runners.optim import build_optimizer

LAWS = {
    "gaussian": {},
    "rademacher": {"distribution": "rademacher"},
    "sphere": {"distribution": "sphere"},
    "random-0.7": {"sparsity": 0.7},
    "magnitude-0.6": {"sparsity": 0.6, "sparsity_rule": "magnitude"},
    "sphere-magnitude-0.5": {"distribution": "sphere", "sparsity": 0.5, "sparsity_rule": "magnitude"},
}


class Wide(nn.Module):
    """A float64 least-squares problem with weights of mixed magnitudes (and a -0.0)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.register_buffer("X", torch.randn(32, 40, generator=g, dtype=torch.float64))
        self.register_buffer("y", torch.randn(32, 3, generator=g, dtype=torch.float64))
        self.w = nn.Parameter(torch.randn(40, 3, generator=g, dtype=torch.float64) * torch.logspace(-3, 0, 3))
        self.b = nn.Parameter(torch.tensor([0.5, -0.0, 1e-4], dtype=torch.float64))

    def forward(self) -> torch.Tensor:
        return ((self.X @ self.w + self.b - self.y) ** 2).mean()


def build(model: nn.Module, method: str = "mezo", **knobs):
    cfg = RunConfig(**{"method": method, "kernel": "torch", "lr": 1e-2, "eps": 1e-3, "seed": 5, "steps": 1000,
                       "eval_every": 1000, "checkpoint_every": 1000, **knobs})
    return build_optimizer(cfg, list(model.named_parameters()), model=model)


@pytest.mark.parametrize("law", LAWS, ids=list(LAWS))
def test_mezo_step_lands_on_the_formula_and_leaves_untouched_entries(law):
    model = Wide()
    opt = build(model, **LAWS[law], steps=1)          # the last step: no lookahead perturbation left on
    theta0 = [p.detach().clone() for p in opt.params]
    opt.step(model)
    opt.settle()
    ((seed, g),) = opt.trajectory
    for i, (p, t0) in enumerate(zip(opt.params, theta0)):
        z = opt.backend.z(t0, seed, i).double()
        expect = t0 - opt.lr * g * z
        assert torch.allclose(p.detach(), expect, rtol=0, atol=1e-14), (law, i)
        untouched = z == 0
        assert torch.equal(p.detach()[untouched].view(torch.int64), t0[untouched].view(torch.int64)), (law, i)
    if opt.backend.law.sparsity:
        assert 0 < sum(int((opt.backend.z(t, seed, i) != 0).sum()) for i, t in enumerate(theta0)) < 123


@pytest.mark.parametrize("method", ZO_METHODS)
@pytest.mark.parametrize("rule", ["random", "magnitude"])
def test_every_zo_method_updates_only_the_perturbed_entries(method, rule):
    """Magnitude: the fixed mask; random: the union of the steps' masks. Nothing else moves, bit for bit."""
    model = Wide()
    opt = build(model, method, sparsity=0.8, sparsity_rule=rule, n_samples=1)
    theta0 = [p.detach().clone() for p in opt.params]
    for _ in range(3):
        opt.step(model)
    opt.settle()
    # (+ the lookahead seed that settle() took off again: its restore may round the entries it touched)
    seeds = sorted({s for s, _ in opt.trajectory} | set(opt.seeds_for(opt.step_count)))
    for i, (p, t0) in enumerate(zip(opt.params, theta0)):
        touched = torch.zeros_like(t0, dtype=torch.bool)
        for s in seeds:
            touched |= opt.backend.z(t0, s, i) != 0
        assert torch.equal(p.detach()[~touched].view(torch.int64), t0[~touched].view(torch.int64)), (method, i)
    moved = sum(int((p.detach() != t0).sum()) for p, t0 in zip(opt.params, theta0))
    assert moved > 0 or method == "one-point-rf"     # one-point makes no move on its first step, then moves


def test_magnitude_mask_is_taken_once_from_the_base_weights():
    model = Wide()
    opt = build(model, sparsity=0.5, sparsity_rule="magnitude", lr=0.5)
    smallest = opt.params[0].detach().abs().flatten().argsort()[:60]
    first = opt.backend.z(opt.params[0], 1, 0) != 0
    for _ in range(5):
        opt.step(model)
    opt.settle()
    assert torch.equal(opt.backend.z(opt.params[0], 2, 0) != 0, first)          # same entries after the weights moved
    assert bool(first.flatten()[smallest].all()) and int(first.sum()) == 60
    assert opt.backend.held_bytes() == (120 + 7) // 8 + 1


@pytest.mark.parametrize("law", LAWS, ids=list(LAWS))
def test_replay_is_bit_identical(law):
    live_model, fresh_model = Wide(), Wide()
    live = build(live_model, **LAWS[law], steps=6, eval_every=6, checkpoint_every=3)
    for _ in range(6):
        live.step(live_model)
    replayer = build(fresh_model, **LAWS[law], steps=6, eval_every=6, checkpoint_every=3)
    for rec in live.trajectory:
        replayer.replay([rec])
    assert all(torch.equal(a, b) for a, b in zip(live.params, replayer.params))


def test_fo_methods_refuse_z_knobs():
    with pytest.raises(ValueError, match="method 'fo-sgd' draws none"):
        build(Regression(), "fo-sgd", distribution="rademacher")
    with pytest.raises(ValueError, match="method 'fo-adam' draws none"):
        build(Regression(), "fo-adam", sparsity=0.5)


# -- block-wise ZO ------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["tiny-opt", "tiny-llama", "tiny-gpt2"])
def test_perturb_layers_touches_only_those_layers(family):
    model, _ = load_model(RunConfig(model=family), "cpu")
    named = list(model.named_parameters())
    assert layer_count(model) == 2
    opt = build(model, perturb_layers=[1])
    chosen = {id(p) for p in opt.params}
    names = [n for n, p in named if id(p) in chosen]
    assert names and all(layer_of(n) == 1 for n in names)
    assert len(names) == sum(layer_of(n) == 1 for n, _ in named)
    before = {n: p.detach().clone() for n, p in named}
    ids = torch.randint(0, model.config.vocab_size, (2, 8), generator=torch.Generator().manual_seed(0))
    opt.step(lambda: model(input_ids=ids, labels=ids).loss)
    opt.settle()
    for n, p in named:
        same = torch.equal(p.detach(), before[n])
        assert same != (layer_of(n) == 1), n


def test_perturb_layers_out_of_range_names_the_layer_count():
    model, _ = load_model(RunConfig(model="tiny-llama"), "cpu")
    with pytest.raises(ValueError, match=r"perturb_layers \[2\] out of range: the model has 2 layers \(indices 0..1\)"):
        build(model, perturb_layers=[0, 2])


def test_layer_names_of_each_family_and_peft():
    assert layer_of("model.decoder.layers.11.self_attn.q_proj.weight") == 11            # OPT
    assert layer_of("model.layers.3.mlp.gate_proj.weight") == 3                         # Llama
    assert layer_of("transformer.h.7.ln_1.weight") == 7                                 # GPT-2
    assert layer_of("base_model.model.model.layers.2.self_attn.v_proj.lora_A.default.weight") == 2
    for outside in ("model.decoder.embed_tokens.weight", "model.norm.weight", "transformer.ln_f.bias", "lm_head.weight"):
        assert layer_of(outside) is None
    named = [("model.layers.0.a", nn.Parameter(torch.zeros(1))), ("model.embed.weight", nn.Parameter(torch.zeros(1)))]
    assert layer_count(None, [n for n, _ in named]) == 1
    with pytest.raises(ValueError, match="none of the 1 trainable parameters"):
        select_layers(named[1:], [0], 1)


def test_law_reaches_the_backend():
    opt = build(Regression(), distribution="sphere", sparsity=0.25)
    assert opt.backend.law == ZLaw("sphere", 0.25, "random")


# -- end to end through train.run ----------------------------------------------------------------
E2E = {"distribution": "rademacher"}, {"distribution": "sphere"}, {"sparsity": 0.75}, \
      {"sparsity": 0.5, "sparsity_rule": "magnitude"}, {"perturb_layers": [0]}


def _run_config(model: str, knobs: dict, **extra) -> RunConfig:
    return RunConfig(**{"method": "mezo", "model": model, "task": "synthetic-sentiment", "train_size": 64,
                        "dev_size": 16, "test_size": 16, "batch_size": 8, "steps": 6, "eval_every": 3,
                        "checkpoint_every": 3, "lr": 1e-3, "eps": 1e-2, "device": "cpu", **knobs, **extra})


@pytest.mark.parametrize("knobs", E2E, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()))
@pytest.mark.parametrize("model", ["tiny-opt", "tiny-llama-h16-l1", "tiny-gpt2"])
def test_knob_runs_end_to_end_and_resumes(model, knobs, tmp_path):
    """train.run with the knob: finite losses, and a resume from step 3 equal to the uninterrupted run."""
    from zolab.runners.reporter import JobCancelled, MemoryReporter
    from zolab.runners.train import run

    cfg = _run_config(model, knobs, task_options={"checkpoint_dir": str(tmp_path)})
    full = run(cfg)
    assert full.final_loss is not None and full.final_loss == full.final_loss
    stopped = MemoryReporter(stop_at=3)
    with pytest.raises(JobCancelled):
        run(cfg, stopped)
    resumed = run(cfg, MemoryReporter(), resume=stopped.checkpoints[-1])
    assert resumed.final_loss == full.final_loss and resumed.accuracy == full.accuracy


@pytest.mark.slow
@pytest.mark.assets
@pytest.mark.parametrize("knobs", E2E, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()))
def test_knob_runs_on_smollm2(knobs):
    from zolab.runners.assets import AssetMissing, resolve_model_alias
    from zolab.runners.train import run

    try:
        resolve_model_alias("smollm2-135m")
    except AssetMissing as exc:
        pytest.skip(str(exc))
    res = run(_run_config("smollm2-135m", knobs, steps=2, eval_every=2, checkpoint_every=2, max_length=64))
    assert res.final_loss is not None and res.final_loss == res.final_loss
