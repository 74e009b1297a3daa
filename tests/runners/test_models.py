"""Tiny models by name, seeded identity, local directories, peft wrapping, forward-grad through HF models."""

from __future__ import annotations

import pytest
import torch

from zolab.runners.config import RunConfig
from zolab.runners.errors import AssetError
from zolab.runners.models import _dtype_kwargs, base_identity, load_model, parse_tiny, trainable_parameters


@pytest.mark.parametrize("name", ["tiny-opt", "tiny-llama", "tiny-gpt2"])
def test_tiny_models_are_seeded(name):
    a, tok = load_model(RunConfig(model=name, seed=3))
    b, _ = load_model(RunConfig(model=name, seed=3))
    c, _ = load_model(RunConfig(model=name, seed=4))
    pa, pb, pc = (next(m.parameters()) for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)
    assert not a.training
    ids = torch.tensor([tok("the movie was great it was")["input_ids"]])
    assert a(input_ids=ids).logits.shape[-1] == len(tok)
    assert base_identity(RunConfig(model=name, seed=3)) != base_identity(RunConfig(model=name, seed=4))


def test_tiny_names_parse_sizes():
    assert parse_tiny("tiny-opt-h256-l4") == ("opt", 256, 4)
    assert parse_tiny("tiny-llama") == ("llama", 64, 2)
    assert parse_tiny("facebook/opt-125m") is None


def test_local_directory_loads_with_dtype(tmp_path):
    model, tok = load_model(RunConfig(model="tiny-gpt2"))
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    again, tok2 = load_model(RunConfig(model=str(tmp_path), dtype="bfloat16"))
    assert next(again.parameters()).dtype == torch.bfloat16
    assert tok2("the movie")["input_ids"] == tok("the movie")["input_ids"]
    assert "torch_dtype" in _dtype_kwargs(torch.float32) or "dtype" in _dtype_kwargs(torch.float32)


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(AssetError, match="cannot load model"):
        load_model(RunConfig(model=str(tmp_path / "nowhere")))


@pytest.mark.parametrize(("peft", "marker"), [("lora", "lora_"), ("prefix", "prompt_encoder")])
def test_peft_leaves_only_adapter_trainable(peft, marker):
    model, _ = load_model(RunConfig(model="tiny-opt", peft=peft))
    named = trainable_parameters(model)
    assert named and all(marker in n for n, _ in named)
    total = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for _, p in named) < 0.2 * total


@pytest.mark.parametrize("family", ["tiny-opt", "tiny-llama", "tiny-gpt2"])
def test_forward_grad_matches_backprop_directional_derivative(family):
    from zolab.runners.optim import build_optimizer

    cfg = RunConfig(model=family, method="forward-grad", lr=1e-3, kernel="torch")
    model, tok = load_model(cfg)
    ids = torch.tensor([tok("the film was lovely it was")["input_ids"]])
    named = trainable_parameters(model)
    opt = build_optimizer(cfg, named, model=model)

    def closure():
        return model(input_ids=ids).logits[0, -1].log_softmax(-1)[5]

    loss = closure()
    grads = torch.autograd.grad(loss, [p for _, p in named])
    seed = opt.seeds_for(0)[0]
    params = opt.params
    index = {id(p): i for i, p in enumerate(params)}
    expected = sum((g * opt.backend.z(p, seed, index[id(p)])).sum() for (_, p), g in zip(named, grads)).item()
    opt.step(closure)
    assert opt.trajectory[0][1] == pytest.approx(expected, rel=1e-3, abs=1e-5)
