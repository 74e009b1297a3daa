"""Component resolver: the outcomes DESIGN.md and issue 3 require on both seed plans, and the rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from zolab.platform.components import (
    COMPONENTS,
    THRESHOLD,
    ResolveError,
    canonical_component,
    match_component,
    resolve,
    resolve_plan,
)
from zolab.platform.errors import PlanError
from zolab.platform.parsers import load_plan
from zolab.platform.plan import Ablation, Baseline
from zolab.platform.variants import expand_variants, skipped_ablations

FIX = Path(__file__).parent / "fixtures"


def _ab(part, action="REPLACE", replacement=None, **kw):
    return Ablation(name=kw.pop("name", part), ablated_part=part, action=action, replacement=replacement, **kw)


def _by_name(plan):
    return {r.ablation: r for r in resolve_plan(plan)}


def test_seed_000_outcomes():
    res = _by_name(load_plan(FIX / "planner_000.md"))
    zo = res["Ablation of Zeroth-Order Optimization Method"]
    assert (zo.component, zo.status) == ("optimizer", "resolved")
    assert [c for _, c in zo.variants] == [{"method": "fo-sgd"}, {"method": "fo-adam"}]
    inplace = res["Ablation of Memory-Efficient Implementation"]
    assert (inplace.component, inplace.status, inplace.variants) == (
        "in_place", "resolved", [("in_place=false", {"in_place": False})])
    peft = res["Ablation of Parameter-Efficient Tuning Techniques"]
    assert (peft.component, peft.status) == ("peft", "inverted")
    assert [c for _, c in peft.variants] == [{"peft": "lora"}, {"peft": "prefix"}]
    assert "MeZO+LoRA and MeZO+prefix" in peft.explanation and "other way round" in peft.explanation
    obj = res["Ablation of Non-Differentiable Objective Optimization"]
    assert (obj.component, obj.status) == ("objective", "inverted")
    assert [c for _, c in obj.variants] == [{"objective": "accuracy"}, {"objective": "f1"}]
    rank = res["Ablation of Theoretical Assumptions"]
    assert (rank.component, rank.status, rank.variants) == ("prompt", "resolved", [("prompt=false", {"prompt": False})])
    assert "89.6 -> 51.9" in rank.explanation and "effective rank" in rank.explanation
    assert all(r.confidence >= THRESHOLD for r in res.values())


def test_seed_001_outcomes_and_variants():
    plan = load_plan(FIX / "planner_001.md")
    resolutions = resolve_plan(plan)
    res = {r.ablation: r for r in resolutions}
    eps = res["Ablation of Perturbation Scale"]
    assert (eps.component, [c for _, c in eps.variants]) == ("eps", [{"eps": 0.1}, {"eps": 0.5}, {"eps": 1.0}])
    ft = res["MeZO vs Traditional Fine-Tuning"]
    assert (ft.component, ft.status, ft.variants[0][1]) == ("optimizer", "resolved", {"method": "fo-adam"})
    nz = res["Effect of Number of Sampled z's"]
    assert (nz.component, [c["n_samples"] for _, c in nz.variants]) == ("n_samples", [1, 5, 10])
    lw = res["Ablation of Layer-Wise Adaptive Optimization"]
    assert lw.status == "no_op" and lw.variants == []
    assert "MeZO has no layer-wise adaptive step size; removing it changes nothing" in lw.explanation
    rf = res["MeZO vs Other Zeroth-Order Optimization Methods"]
    assert rf.variants == [("method=one-point-rf", {"method": "one-point-rf"})]

    variants = expand_variants(plan, resolutions)
    labels = [v.label for v in variants]
    # n_samples=1 equals the baseline: merged into it, not a variant of its own
    assert labels == ["baseline", "eps=0.1", "eps=0.5", "eps=1.0", "method=fo-adam", "n_samples=5",
                      "n_samples=10", "method=one-point-rf"]
    assert variants[0].is_baseline and "Effect of Number of Sampled z's" in variants[0].ablations
    assert len({v.config_hash for v in variants}) == len(variants)
    assert skipped_ablations(resolutions)[0][0] == "Ablation of Layer-Wise Adaptive Optimization"


def test_duplicate_variants_across_ablations_merge_with_both_labels():
    plan = load_plan(FIX / "eq-plan.yaml")
    plan.ablations[1].replacement = ["eps: 0.1"]  # same config as the sweep's first value
    variants = expand_variants(plan, resolve_plan(plan))
    merged = [v for v in variants if v.config["eps"] == 0.1 and not v.is_baseline]
    assert len(merged) == 1
    assert merged[0].ablations == ["Perturbation scale sweep", "Explicit eps"]


def test_zero_shot_reference_variant():
    plan = load_plan(FIX / "eq-plan.yaml")
    plan.zero_shot = True
    variants = expand_variants(plan, resolve_plan(plan))
    assert variants[1].label == "zero-shot" and variants[1].config["steps"] == 0


@pytest.mark.parametrize("text,method", [
    ("SGD", "fo-sgd"), ("Adam", "fo-adam"), ("backpropagation", "fo-adam"), ("traditional fine-tuning", "fo-adam"),
    ("one-point residual-feedback oracle", "one-point-rf"), ("ZO-SGD-MMT", "zo-momentum"), ("ZO-Adam", "zo-adam"),
    ("zeroth-order Adam", "zo-adam"), ("ZO-SGD-Sign", "zo-sign"), ("ZO-SGD-Cons", "zo-cons"),
    ("forward gradient", "forward-grad"), ("MeZO", "mezo"),
])
def test_optimizer_free_text(text, method):
    res = resolve(_ab("optimizer", replacement=[text]), Baseline(method="zo-sgd"))
    assert res.status == "resolved"
    assert res.variants[0][1]["method"] == method


@pytest.mark.parametrize("part,values,knob,expected", [
    ("perturbation scale", ["1e-3", "10^-2", "eps = 0.5"], "eps", [None, 0.01, 0.5]),
    ("number of sampled directions", ["2", "5.0"], "n_samples", [2, 5]),
    ("PEFT method", ["LoRA", "prefix-tuning"], "peft", ["lora", "prefix"]),
    ("training objective", ["accuracy", "macro F1"], "objective", ["accuracy", "f1"]),
    ("learning rate", ["1e-5"], "lr", [1e-5]),
])
def test_replacement_values_per_component(part, values, knob, expected):
    res = resolve(_ab(part, replacement=values), Baseline())
    got = [c.get(knob) if knob in c else None for _, c in res.variants]
    # a value equal to the baseline (eps 1e-3) is kept and merged later
    assert [g if g != getattr(Baseline(), knob) else None for g in got] == expected


def test_unreadable_replacement_is_unresolved():
    res = resolve(_ab("number of sampled directions", replacement=["many"]), Baseline())
    assert res.status == "unresolved" and "'many'" in res.explanation


def test_invalid_combination_is_unresolved():
    res = resolve(_ab("optimizer", replacement=["Adam"]), Baseline(objective="f1"))
    assert res.status == "unresolved" and "needs a gradient" in res.explanation


def test_low_confidence_is_unresolved_and_never_guessed():
    res = resolve(_ab("dropout rate in the attention blocks", action="REMOVE"), Baseline())
    assert res.status == "unresolved" and res.component is None
    assert res.confidence < THRESHOLD and "component:" in res.explanation


def test_explicit_component_overrides_the_matcher():
    res = resolve(_ab("dropout rate in the attention blocks", replacement=["0.01"], component="eps"), Baseline())
    assert (res.component, res.status, res.overridden, res.confidence) == ("eps", "resolved", True, 1.0)
    res2 = resolve(_ab("perturbation scale", replacement=["4"]), Baseline(), component="n_samples")
    assert res2.variants == [("n_samples=4", {"n_samples": 4})]


def test_unknown_component_lists_known_ones():
    with pytest.raises(ValueError) as err:
        canonical_component("dropout")
    assert "known: " + ", ".join(COMPONENTS) in str(err.value)
    assert canonical_component("perturbation scale") == "eps" and canonical_component("method") == "optimizer"


@pytest.mark.parametrize("part", ["zeroth-order optimization method", "perturbation scale"])
def test_remove_of_non_removable_component_suggests_replace(part):
    with pytest.raises(ResolveError, match="use REPLACE"):
        resolve(_ab(part, action="REMOVE"), Baseline())


def test_remove_variants_depend_on_the_baseline():
    with_lora = Baseline(peft="lora")
    res = resolve(_ab("parameter-efficient tuning", action="REMOVE"), with_lora)
    assert (res.status, res.variants) == ("resolved", [("peft=none", {"peft": "none"})])
    res = resolve(_ab("number of sampled z's", action="REMOVE"), Baseline(n_samples=4))
    assert res.variants == [("n_samples=1", {"n_samples": 1})]
    res = resolve(_ab("number of sampled z's", action="REMOVE"), Baseline())
    assert res.status == "no_op"
    # an FO baseline cannot run non-differentiable objectives: nothing to invert
    res = resolve(_ab("non-differentiable objectives", action="REMOVE"), Baseline(method="fo-adam"))
    assert res.status == "no_op"


def test_add_without_replacement_uses_the_component_options():
    res = resolve(_ab("parameter-efficient fine-tuning", action="ADD"), Baseline())
    assert [c for _, c in res.variants] == [{"peft": "lora"}, {"peft": "prefix"}]


def test_all_replacements_equal_to_baseline_is_no_op():
    res = resolve(_ab("perturbation scale", replacement=["0.001"]), Baseline())
    assert res.status == "no_op"


def test_keyword_rules_beat_generic_words():
    assert match_component("Layer-wise adaptive optimization")[0].component == "layerwise_adaptive"
    assert match_component("optimization of non-differentiable objectives")[0].component == "objective"
    assert match_component("perturbaton scale")[0].component == "eps"  # typo: fuzzy


def test_resolve_plan_locates_impossible_ablations():
    plan = load_plan(FIX / "eq-plan.yaml")
    plan.ablations[3].action = plan.ablations[3].action.__class__("REMOVE")
    plan.ablations[3].replacement = []
    with pytest.raises(PlanError) as err:
        resolve_plan(plan)
    assert err.value.line == 31 and err.value.field == "ablations[3].action"
    assert "use REPLACE" in str(err.value)


@pytest.mark.parametrize("text", [
    "training data size", "dropout rate", "model size", "random seed", "data augmentation",
    "perturbation distribution (Gaussian vs Rademacher)", "momentum coefficient",
])
def test_unrelated_parts_stay_below_the_threshold(text):
    assert match_component(text)[0].score < THRESHOLD, match_component(text)[:2]


@pytest.mark.parametrize("text,component", [
    ("learning rate", "lr"), ("batch size", "batch_size"), ("weight decay", "weight_decay"),
    ("prompt template", "prompt"), ("LoRA", "peft"), ("epsilon", "eps"), ("query budget", "n_samples"),
    ("optimizer", "optimizer"), ("training steps", "steps"),
])
def test_known_parts_resolve(text, component):
    best = match_component(text)[0]
    assert best.component == component and best.score >= THRESHOLD
