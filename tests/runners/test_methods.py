"""Every method decreases the loss on a small problem; forward counts; hyperparameter checks; param groups."""

from __future__ import annotations

import pytest
import torch

from tests.runners.problems import Regression, fo_closure, optimizer_for
from zolab.runners.config import RunConfig
from zolab.runners.errors import NonFiniteLossError
from zolab.runners.kernels import TorchBackend
from zolab.runners.optim import OPTIMIZERS, ZOSGD, build_optimizer, no_decay, param_groups
from zolab.runners.optim.zo import OnePointRF, ZOAdam, ZOMomentum, ZOSign, conservative_choice

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


#: (method, knobs, forwards a step): central 2q, forward q + 1 (L(theta) shared), one-point 1; zo-cons adds its
#: three candidates (two with the forward estimator, whose L(theta) is "stay"); forward-grad one jvp a direction
FORWARDS = [
    ("mezo", {}, 2), ("zo-sgd", {"n_samples": 3}, 6), ("mezo", {"estimator": "forward"}, 2),
    ("mezo", {"estimator": "forward", "n_samples": 3}, 4), ("mezo", {"estimator": "one-point"}, 1),
    ("one-point-rf", {}, 1), ("zo-adam", {"estimator": "forward", "n_samples": 2}, 3),
    ("zo-momentum", {"estimator": "one-point"}, 1), ("zo-sign", {"sign_rule": "scalar", "n_samples": 2}, 4),
    ("zo-cons", {}, 5), ("zo-cons", {"n_samples": 2}, 7), ("zo-cons", {"estimator": "forward", "n_samples": 2}, 5),
    ("zo-cons", {"estimator": "one-point"}, 4), ("forward-grad", {"n_samples": 2}, 2), ("fo-sgd", {}, 1),
]


@pytest.mark.parametrize(("method", "knobs", "per_step"), FORWARDS,
                         ids=[f"{m}-{'-'.join(f'{k}={v}' for k, v in kn.items())}" for m, kn, _ in FORWARDS])
def test_forwards_per_step_are_counted(method, knobs, per_step):
    model = Regression()
    opt = optimizer_for(model, method=method, lr=1e-3, **knobs)
    closure = fo_closure(model, opt) if getattr(opt, "needs_grad", False) else model
    for _ in range(10):
        opt.step(closure)
    assert model.calls == 10 * per_step == 10 * opt.forwards_per_step


@pytest.mark.parametrize(("method", "knobs", "per_step"),
                         [("mezo", {"estimator": "forward", "n_samples": 2}, 3), ("mezo", {"estimator": "one-point"}, 1),
                          ("zo-cons", {"estimator": "forward"}, 4), ("zo-cons", {"n_samples": 2}, 7)],
                         ids=["mezo-forward-q2", "mezo-one-point", "zo-cons-forward", "zo-cons-q2"])
def test_run_reports_the_forward_passes_of_each_estimator(method, knobs, per_step):
    from zolab.runners.train import run

    cfg = RunConfig(method=method, model="tiny-opt-h16-l1", steps=3, train_size=20, dev_size=8, test_size=8,
                    batch_size=4, lr=1e-3, device="cpu", **knobs)
    res = run(cfg)
    assert res.forward_passes == 3 * per_step and res.extra["forwards_per_step"] == per_step


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


def test_lookahead_where_valid_and_an_explicit_fallback_elsewhere():
    cfg = RunConfig(kernel="torch", steps=50)

    def built(**knobs):
        return build_optimizer(cfg.replace(**knobs), list(Regression().named_parameters()))

    assert built(method="mezo").lookahead and built(method="one-point-rf").lookahead
    assert built(method="mezo", estimator="one-point").lookahead
    assert built(method="zo-sign", sign_rule="scalar").lookahead            # sign(g) z: a multiple of z
    assert not built(method="mezo", estimator="forward").lookahead          # its first forward is at theta
    assert not built(method="zo-sign").lookahead                            # sign(ghat): not a multiple of z
    params = [torch.nn.Parameter(torch.zeros(3))]
    with pytest.raises(ValueError, match="estimator forward"):
        ZOSGD(params, lr=0.1, estimator="forward", lookahead=True)
    with pytest.raises(ValueError, match="sign_rule elementwise"):
        ZOSign(params, lr=0.1, lookahead=True)
    with pytest.raises(ValueError, match="estimator 'sideways' is not one of"):
        ZOSGD(params, lr=0.1, estimator="sideways")
    with pytest.raises(ValueError, match="sign_rule 'vector' is not one of"):
        ZOSign(params, lr=0.1, sign_rule="vector")


class CountingBackend(TorchBackend):
    def __init__(self) -> None:
        super().__init__()
        self.passes = 0

    def apply(self, params, terms, decay=None):
        self.passes += 1
        super().apply(params, terms, decay)


def test_one_point_lookahead_costs_one_weight_pass_a_step():
    runs = {}
    for lookahead in (False, True):
        model, backend = Regression(), CountingBackend()
        opt = ZOSGD(model.parameters(), lr=1e-3, eps=1e-2, seed=7, estimator="one-point", backend=backend,
                    lookahead=lookahead)
        for _ in range(20):
            opt.step(model)
        opt.settle()
        runs[lookahead] = (backend.passes, [g for _, g in opt.trajectory],
                           torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert runs[False][0] == 2 * 20                    # +eps z; restore + update
    assert runs[True][0] == 1 + 20 + 1                 # first +eps, then restore + update + next +eps, a settle
    assert runs[True][1] == pytest.approx(runs[False][1], rel=1e-3, abs=1e-4)
    assert torch.allclose(runs[True][2], runs[False][2], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("stay", "minus", "plus", "kept"), [
    (1, 0, 2, "minus"), (1, 2, 0, "plus"), (0, 1, 2, "stay"),
    (1, 1, 2, "minus"),      # minus ties stay: ZO-Bench's `if loss1 > loss0` is false, minus < plus
    (1, 0, 0, "plus"),       # minus ties plus: `loss1 < loss2` is false
    (0, 1, 0, "plus"),       # stay ties plus: `loss0 < loss2` is false
    (1, 1, 1, "plus"),
])
def test_zo_cons_keeps_the_candidate_zo_bench_keeps(stay, minus, plus, kept):
    assert conservative_choice(stay, minus, plus) == kept
