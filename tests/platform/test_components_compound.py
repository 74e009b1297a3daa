"""Compound replacement values (the lead's probe of issue 13): a value that names a main reading and
settings of other knobs ("prefix tuning with 10 virtual tokens", "Adam (lr 1e-4)") runs all of them,
or is not run and says which words were not understood; a secondary setting is never dropped silently.
"""

from __future__ import annotations

import itertools

import pytest

from zolab.platform.components import resolve
from zolab.platform.plan import Ablation, Baseline

BASE = Baseline(model="facebook/opt-1.3b", lr=1e-6, eps=1e-3, k_shot=16, steps=20000)


def _resolve(part, value, name=None):
    return resolve(Ablation(name=name or part, ablated_part=part, action="REPLACE", replacement=[value]), BASE)


def _changes(res):
    base = BASE.model_dump()
    return [{k: v for k, v in ch.items() if base.get(k) != v and not (k == "betas" and list(v) == list(base[k]))}
            for _, ch in res.variants]


@pytest.mark.parametrize("part,value,expected", [
    ("parameter-efficient method", "prefix tuning with 10 virtual tokens", {"peft": "prefix", "prefix_tokens": 10}),
    ("parameter-efficient method", "LoRA with r=16", {"peft": "lora", "lora_r": 16}),
    ("parameter-efficient method", "LoRA (rank 4, alpha 8)", {"peft": "lora", "lora_r": 4, "lora_alpha": 8}),
    ("dense perturbation", "perturb only 20% of the weights with the smallest magnitude",
     {"sparsity": 0.8, "sparsity_rule": "magnitude"}),
    ("optimizer", "Adam (lr 1e-4)", {"method": "fo-adam", "lr": 1e-4}),
    ("zeroth-order update rule", "ZO-SGD with momentum 0.5", {"method": "zo-momentum", "momentum": 0.5}),
    ("zeroth-order update rule", "MeZO with momentum 0.5", {"method": "zo-momentum", "momentum": 0.5}),
    ("zeroth-order update rule", "ZO-Adam, beta1 = 0.8", {"method": "zo-adam", "betas": [0.8, 0.999]}),
    ("learning-rate schedule", "cosine schedule with 500 warmup steps", {"lr_schedule": "cosine", "warmup_steps": 500}),
    ("fine-tuning", "in-context learning, 32-shot", {"method": "icl", "icl_demos": 32}),
    ("fine-tuning", "in-context learning with 8 demonstrations", {"method": "icl", "icl_demos": 8}),
    ("model size", "OPT-13B in fp16", {"model": "facebook/opt-13b", "dtype": "float16"}),
    ("two-sided estimator", "forward difference with eps = 1e-2", {"estimator": "forward", "eps": 0.01}),
    ("perturbation scale", "eps 1e-2 (lr scaled to 1e-7)", {"eps": 0.01, "lr": 1e-7}),
    ("mini-batch size", "batch size 64 with lr 4e-6", {"batch_size": 64, "lr": 4e-6}),
    ("learning-rate warmup", "warmup over the first 10% of training steps", {"warmup_steps": 2000}),
    ("optimizer", "ZO-Adam (lr: 1e-05)", {"method": "zo-adam", "lr": 1e-5}),
    ("LoRA rank", "r=16 alpha=32", {"peft": "lora", "lora_r": 16, "lora_alpha": 32}),
])
def test_compound_value_runs_every_setting_it_names(part, value, expected):
    res = _resolve(part, value)
    assert res.status == "resolved", res.explanation
    assert _changes(res) == [expected]


@pytest.mark.parametrize("part,value,words", [
    ("learning rate schedule", "cosine schedule with warm restarts every 2000 steps", "restarts"),
    ("zeroth-order update rule", "ZO-SGD with Nesterov momentum 0.9", "Nesterov"),
    ("optimizer", "Adam with gradient clipping at 1.0", "clipping"),
    ("optimizer", "8-bit Adam", "8-bit"),
    ("training objective", "cross-entropy with label smoothing 0.1", "label smoothing"),
    ("learning rate schedule", "linear decay over 1000 steps", "1000 steps"),
    ("optimizer", "Adam 1e-4", "1e-4"),
])
def test_words_the_resolver_cannot_place_stop_the_reading_and_are_named(part, value, words):
    """A unit-bearing number, a fraction or a refused qualifier left unread: not run, the words said."""
    res = _resolve(part, value)
    assert res.status in ("unresolved", "ambiguous"), (res.status, res.variants)
    assert words.lower() in res.explanation.lower()


@pytest.mark.parametrize("part,value,expected", [
    ("Gaussian z", "Rademacher (entries +1 or -1)", {"distribution": "rademacher"}),
    ("central-difference estimate", "one-sided SPSA as in Spall (1992)", {"estimator": "forward"}),
    ("optimizer step", "ZO-SGD-Cons (keep the best of 3 candidate points)", {"method": "zo-cons"}),
    ("optimization steps", "10,000 steps (evaluate every 500)", {"steps": 10000}),
])
def test_bare_whole_numbers_and_other_words_do_not_stop_a_reading(part, value, expected):
    res = _resolve(part, value)
    assert res.status == "resolved", res.explanation
    assert _changes(res) == [expected]


@pytest.mark.parametrize("part,value,why", [
    ("parameter-efficient method", "LoRA with r=5000", "outside the plausible range of lora_r"),
    ("parameter-efficient method", "prefix tuning with r=16", "LoRA rank is read only by lora"),
    ("optimizer", "first-order Adam with momentum 0.5", "momentum is read only by"),
    ("fine-tuning", "MeZO with 32 demonstrations", "demonstrations is read only by icl"),
])
def test_a_setting_is_typed_by_its_own_knob_and_must_fit_the_main_reading(part, value, why):
    res = _resolve(part, value)
    assert res.status in ("unresolved", "ambiguous"), (res.status, res.variants)
    assert why in res.explanation


def test_a_replacement_sentence_reads_the_new_value_not_the_old_one():
    res = _resolve("perturbation distribution",
                   "Replace the Gaussian perturbation with Rademacher noise while keeping everything else fixed.")
    assert _changes(res) == [{"distribution": "rademacher"}]
    res = _resolve("in-place perturbation", "Store the perturbation vector z in memory instead of regenerating it.")
    assert _changes(res) == [{"in_place": False}]


MAINS = [
    ("parameter-efficient method", "LoRA", {"peft": "lora"}),
    ("optimizer", "ZO-Adam", {"method": "zo-adam"}),
    ("learning-rate schedule", "a cosine schedule", {"lr_schedule": "cosine"}),
    ("perturbation distribution", "Rademacher directions", {"distribution": "rademacher"}),
    ("model size", "OPT-13B", {"model": "facebook/opt-13b"}),
    ("dense perturbation", "perturb only 20% of the weights", {"sparsity": 0.8}),
    ("number of training steps", "5000 steps", {"steps": 5000}),
]
SECONDARY = [
    ("lr 1e-4", {"lr": 1e-4}), ("500 warmup steps", {"warmup_steps": 500}), ("r=16", {"lora_r": 16}),
    ("eps 1e-2", {"eps": 0.01}), ("4 directions per step", {"n_samples": 4}),
    ("weight decay 0.01", {"weight_decay": 0.01}), ("momentum 0.5", {"momentum": 0.5}), ("fp16", {"dtype": "float16"}),
    ("batch size 64", {"batch_size": 64}), ("the smallest magnitude", {"sparsity_rule": "magnitude"}),
    ("10 virtual tokens", {"prefix_tokens": 10}), ("alpha 32", {"lora_alpha": 32}),
    ("linear decay", {"lr_schedule": "linear"}), ("bf16 weights", {"dtype": "bfloat16"}),
]


def test_no_secondary_setting_is_ever_dropped_silently():
    """Every main value x every secondary setting ("LoRA with momentum 0.5", "OPT-13B with 500
    warmup steps", ...): either both are run, or the ablation is not run. Most combinations are read."""
    ran = 0
    for (part, main, main_changes), (extra, extra_changes) in itertools.product(MAINS, SECONDARY):
        res = _resolve(part, f"{main} with {extra}")
        if not res.runnable:
            continue
        ran += 1
        (changes,) = [ch for _, ch in res.variants]
        for key, value in {**main_changes, **extra_changes}.items():
            assert key in changes, (main, extra, res.explanation)
            got = changes[key]
            assert (got == value) or (key == "method"), (main, extra, key, got)
    assert ran >= 0.6 * len(MAINS) * len(SECONDARY)


@pytest.mark.parametrize("leaf", ["run-1/opt-1.3b/ckpt", "test_whose_labe0/dddd", "step1000", "exp/2026-12-02/seed13"])
def test_a_local_model_path_is_read_whole(tmp_path, leaf):
    """A path is one value: the numbers and hub-id-like pieces inside it are not settings of their own."""
    from zolab.platform.components import resolve
    from zolab.platform.plan import Ablation, Baseline

    path = tmp_path / leaf
    path.mkdir(parents=True)
    ab = Ablation(name="m", ablated_part="backbone model", action="REPLACE", replacement=[str(path)])
    res = resolve(ab, Baseline())
    assert (res.status, [c for _, c in res.variants]) == ("resolved", [{"model": str(path)}]), res.explanation
