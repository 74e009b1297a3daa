"""Every method decreases the loss on a small problem; forward counts; hyperparameter checks; param groups."""

from __future__ import annotations

import pytest
import torch

from tests.runners.problems import Regression, fo_closure, optimizer_for
from zolab.runners.config import RunConfig
from zolab.runners.errors import NonFiniteLossError
from zolab.runners.optim import OPTIMIZERS, ZOSGD, build_optimizer, no_decay, param_groups
from zolab.runners.optim.zo import OnePointRF, ZOAdam, ZOMomentum

# (method, knobs, steps): lrs chosen for the 9-parameter regression
CASES = [
    ("mezo", {"lr": 2e-2}, 300),
    ("zo-sgd", {"lr": 2e-2, "n_samples": 4}, 150),
    ("zo-momentum", {"lr": 5e-3, "momentum": 0.8}, 300),
    ("zo-adam", {"lr": 5e-2}, 300),
    ("zo-sign", {"lr": 1e-2}, 300),
    ("zo-cons", {"lr": 2e-2}, 300),
    ("forward-grad", {"lr": 2e-2}, 300),
    ("one-point-rf", {"lr": 1e-3, "eps": 1e-2}, 600),
    ("fo-sgd", {"lr": 5e-2, "momentum": 0.5}, 100),
    ("fo-adam", {"lr": 5e-2}, 100),
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
    assert opt.lookahead and opt.settle()        # the weights carry the next step's +eps z (lookahead)
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


def _family(kind: str) -> torch.nn.Module:
    """A 1-layer model of the real architecture, built from a tiny transformers config (no download)."""
    import transformers

    common = {"vocab_size": 32, "max_position_embeddings": 16}
    cfg = {
        "llama": lambda: transformers.LlamaConfig(hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                                                  num_attention_heads=2, num_key_value_heads=2, **common),
        "gpt2": lambda: transformers.GPT2Config(n_embd=8, n_layer=1, n_head=2, n_positions=16, vocab_size=32),
        "opt": lambda: transformers.OPTConfig(hidden_size=8, ffn_dim=16, num_hidden_layers=1, num_attention_heads=2,
                                              word_embed_proj_dim=8, **common),
    }[kind]()
    return transformers.AutoModelForCausalLM.from_config(cfg)


#: every parameter weight decay must skip in each family: biases and the norm modules' weights
NOT_DECAYED = {
    "llama": {"model.layers.0.input_layernorm.weight", "model.layers.0.post_attention_layernorm.weight",
              "model.norm.weight"},
    "gpt2": {"transformer.h.0.ln_1.weight", "transformer.h.0.ln_1.bias", "transformer.h.0.attn.c_attn.bias",
             "transformer.h.0.attn.c_proj.bias", "transformer.h.0.ln_2.weight", "transformer.h.0.ln_2.bias",
             "transformer.h.0.mlp.c_fc.bias", "transformer.h.0.mlp.c_proj.bias", "transformer.ln_f.weight",
             "transformer.ln_f.bias"},
    "opt": {"model.decoder.final_layer_norm.weight", "model.decoder.final_layer_norm.bias",
            *(f"model.decoder.layers.0.{m}.bias" for m in ("self_attn.k_proj", "self_attn.v_proj", "self_attn.q_proj",
                                                           "self_attn.out_proj", "fc1", "fc2",
                                                           "self_attn_layer_norm", "final_layer_norm")),
            "model.decoder.layers.0.self_attn_layer_norm.weight", "model.decoder.layers.0.final_layer_norm.weight"},
}


@pytest.mark.parametrize("kind", sorted(NOT_DECAYED))
def test_weight_decay_skips_biases_and_norms_by_name_in_each_family(kind):
    named = list(_family(kind).named_parameters())
    groups, names = param_groups(named, 0.1)
    decayed = {n for n, p in named if any(p is q for q in groups[0]["params"])}
    kept = {n for n, _ in named} - decayed
    assert kept == NOT_DECAYED[kind]
    assert groups[0]["weight_decay"] == 0.1 and groups[1]["weight_decay"] == 0.0
    assert names == [n for n, _ in named if n in decayed] + [n for n, _ in named if n in kept]
    # the MeZO reference substrings alone (trainer.py l.803) would decay Llama's final norm and GPT-2's ln_*
    reference = {n for n, _ in named if any(h in n for h in ("bias", "layer_norm", "layernorm"))}
    assert (NOT_DECAYED[kind] - reference) == {
        "llama": {"model.norm.weight"},
        "gpt2": {"transformer.h.0.ln_1.weight", "transformer.h.0.ln_2.weight", "transformer.ln_f.weight"},
        "opt": set()}[kind]


def test_no_decay_is_by_name_not_by_shape():
    assert no_decay("base_model.model.model.norm.weight")              # through a peft wrapper
    assert not no_decay("model.layers.0.mlp.normaliser.weight")        # "norm" inside a name is not a norm module
    assert not no_decay("prompt_encoder.default.embedding.weight")     # prefix embeddings are decayed like MeZO
    assert not no_decay("model.layers.0.self_attn.q_proj.lora_A.default.weight")


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
