"""Component resolver: the outcomes DESIGN.md and issue 3 require on both seed plans, and the rules
(issue 13: value domains, context, ambiguous readings with candidates, nothing refused)."""

from __future__ import annotations

from pathlib import Path

import pytest

from zolab.platform.components import (
    COMPONENTS,
    SETTABLE,
    THRESHOLD,
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
    res = resolve(_ab("colour scheme of the training curves", action="REMOVE"), Baseline())
    assert res.status == "unresolved" and res.component is None
    assert res.confidence < THRESHOLD and "component:" in res.explanation


def test_explicit_component_overrides_the_matcher():
    res = resolve(_ab("dropout rate in the attention blocks", replacement=["0.01"], component="eps"), Baseline())
    assert (res.component, res.status, res.overridden, res.confidence) == ("eps", "resolved", True, 1.0)
    res2 = resolve(_ab("perturbation scale", replacement=["4"]), Baseline(), component="n_samples")
    assert res2.variants == [("n_samples=4", {"n_samples": 4})]


def test_unknown_component_lists_the_settable_ones():
    with pytest.raises(ValueError) as err:
        canonical_component("flux capacitor")
    assert "known: " + ", ".join(SETTABLE) in str(err.value)
    assert canonical_component("perturbation scale") == "eps" and canonical_component("method") == "optimizer"
    assert canonical_component("dropout") == "dropout"  # a thing zolab lacks is still named for what it is
    assert "dropout" not in SETTABLE and set(SETTABLE) < set(COMPONENTS)


@pytest.mark.parametrize("part", ["zeroth-order optimization method", "perturbation scale", "learning rate"])
def test_remove_of_non_removable_component_is_unresolved_and_suggests_replace(part):
    res = resolve(_ab(part, action="REMOVE"), Baseline())
    assert res.status == "unresolved" and res.variants == []
    assert "use REPLACE" in res.explanation and "every run needs one" in res.explanation


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


def test_an_impossible_ablation_never_refuses_the_plan():
    plan = load_plan(FIX / "eq-plan.yaml")
    plan.ablations[3].action = plan.ablations[3].action.__class__("REMOVE")  # REMOVE of the optimizer
    plan.ablations[3].replacement = []
    resolutions = resolve_plan(plan)
    assert [r.status for r in resolutions] == ["resolved", "resolved", "resolved", "unresolved"]
    assert "use REPLACE" in resolutions[3].explanation
    labels = [v.label for v in expand_variants(plan, resolutions)]
    assert labels == ["baseline", "eps=0.1", "eps=0.5", "eps=0.01", "in_place=false"]  # the rest still run


def test_only_overrides_naming_no_ablation_refuse_the_plan():
    plan = load_plan(FIX / "eq-plan.yaml")
    with pytest.raises(PlanError, match="override for unknown ablation 'nope'"):
        resolve_plan(plan, {"nope": "eps"})
    by_number = resolve_plan(plan, {"3": "prompt"})  # NAME may be the ablation's 1-based number
    assert (by_number[2].component, by_number[2].overridden) == ("prompt", True)


@pytest.mark.parametrize("text,component", [
    ("training data size", "train_size"), ("dropout rate", "dropout"), ("model size", "model"),
    ("random seed", "seed"), ("data augmentation", "data_augmentation"),
    ("perturbation distribution (Gaussian vs Rademacher)", "distribution"), ("momentum coefficient", "momentum"),
    ("learning-rate warmup", "warmup"), ("number of examples per class", "train_size"),
    ("LoRA rank", "lora_r"), ("numerical precision", "dtype"), ("maximum sequence length", "max_length"),
])
def test_parts_name_their_component(text, component):
    best = match_component(text)[0]
    assert best.component == component and best.score >= THRESHOLD, match_component(text)[:3]


@pytest.mark.parametrize("text,component", [
    ("learning rate", "lr"), ("batch size", "batch_size"), ("weight decay", "weight_decay"),
    ("prompt template", "prompt"), ("LoRA", "peft"), ("epsilon", "eps"), ("query budget", "n_samples"),
    ("optimizer", "optimizer"), ("training steps", "steps"),
])
def test_known_parts_resolve(text, component):
    best = match_component(text)[0]
    assert best.component == component and best.score >= THRESHOLD


# -------------------------------------------------------------------------- issue 13: evidence
def test_a_value_that_only_one_domain_reads_carries_the_reading():
    # "which parameters are trained" names PEFT, but only the optimizer reads "linear probing"
    res = resolve(_ab("which parameters are trained", replacement=["linear probing"]), Baseline())
    assert (res.component, res.variants) == ("optimizer", [("method=linear-probe", {"method": "linear-probe"})])
    # the same ablated part with a sampling law reads as the distribution, with a count as q
    assert resolve(_ab("random directions", replacement=["Rademacher"]), Baseline()).component == "distribution"
    assert resolve(_ab("random directions", replacement=["4", "8"]), Baseline()).component == "n_samples"


@pytest.mark.parametrize("part,value,method", [
    ("update rule of the zeroth-order optimizer", "Adam-style adaptive moments", "zo-adam"),
    ("optimizer applied to the ZO gradient estimate", "Adam", "zo-adam"),
    ("optimizer", "Adam with backpropagation", "fo-adam"),
    ("optimizer", "Adam", "fo-adam"),                     # no context: the usual (first-order) Adam
    ("zeroth-order optimization method", "SGD", "fo-sgd"),  # the ZO method itself is replaced (seed 000)
    ("forward-only optimizer", "momentum SGD", "zo-momentum"),
    ("optimizer", "gradient-free sign descent", "zo-sign"),
])
def test_context_keeps_the_optimizer_family(part, value, method):
    res = resolve(_ab(part, replacement=[value]), Baseline())
    assert res.status == "resolved" and res.variants[0][1]["method"] == method, res.explanation


def test_a_first_order_reading_that_contradicts_the_words_is_not_run():
    from zolab.platform.resolver.domains import Context
    from zolab.platform.resolver.methods import zo_contradiction

    ctx = Context("update rule of the zeroth-order optimizer", Baseline().model_dump())
    assert zo_contradiction({"method": "fo-adam"}, "Adam", ctx) is not None
    assert zo_contradiction({"method": "fo-adam"}, "Adam with backprop", ctx) is None
    assert zo_contradiction({"method": "zo-adam"}, "Adam", ctx) is None


def test_training_set_size_is_examples_not_steps():
    res = resolve(_ab("training set size", replacement=["512"]), Baseline(k_shot=16))
    assert (res.component, res.variants[0][1]) == ("train_size", {"k_shot": 512})  # the baseline's unit: per class
    res = resolve(_ab("training set size", replacement=["512 in total"]), Baseline(k_shot=16))
    assert res.variants[0][1] == {"k_shot": None, "train_size": 512}
    res = resolve(_ab("training set size", replacement=["512"]), Baseline(k_shot=None))
    assert res.variants[0][1] == {"train_size": 512}


def test_knobs_read_by_one_method_imply_it():
    res = resolve(_ab("momentum coefficient", replacement=["0.5"]), Baseline())
    assert res.variants == [("method=zo-momentum, momentum=0.5", {"method": "zo-momentum", "momentum": 0.5})]
    res = resolve(_ab("LoRA rank", replacement=["4"]), Baseline())
    assert res.variants[0][1] == {"peft": "lora", "lora_r": 4}
    res = resolve(_ab("Adam beta2", replacement=["0.99"]), Baseline(method="fo-adam"))
    assert res.variants[0][1] == {"betas": (0.9, 0.99)} or res.variants[0][1] == {"betas": [0.9, 0.99]}
    # a mask rule does nothing on a dense baseline: said, not run
    res = resolve(_ab("masking rule", replacement=["magnitude"]), Baseline())
    assert res.status == "unresolved" and "sparsity 0" in res.explanation


def test_one_string_of_values_is_several_values_where_the_domain_says_so():
    res = resolve(_ab("learning rate", replacement=["1e-3, 1e-4, 1e-5"]), Baseline())
    assert [c["lr"] for _, c in res.variants] == [1e-3, 1e-4, 1e-5]
    res = resolve(_ab("training steps", replacement=["5,000 steps"]), Baseline())  # thousands, not a list
    assert [c["steps"] for _, c in res.variants] == [5000]
    res = resolve(_ab("perturbed layers", replacement=["[0, 1, 2]"]), Baseline())  # one list value
    assert res.variants == [("perturb_layers=[0, 1, 2]", {"perturb_layers": [0, 1, 2]})]


def test_values_outside_the_plausible_range_are_unresolved_with_the_range():
    res = resolve(_ab("epsilon", replacement=["5"]), Baseline())
    assert res.status == "unresolved" and "outside the plausible range of eps" in res.explanation


@pytest.mark.parametrize("part", ["learning-rate warmup", "learning rate schedule", "weight decay", "dropout",
                                  "gradient clipping", "momentum"])
def test_remove_of_what_the_baseline_lacks_is_a_no_op_that_says_so(part):
    res = resolve(_ab(part, action="REMOVE"), Baseline())
    assert res.status == "no_op" and res.variants == [] and "nothing" in res.explanation, res.explanation


def test_a_knob_zolab_lacks_is_said_in_those_words():
    res = resolve(_ab("dropout rate", replacement=["0.1"]), Baseline())
    assert (res.status, res.component) == ("unresolved", "dropout")
    assert "zolab has no dropout setting" in res.explanation


def test_inversion_runs_only_the_option_the_part_names():
    res = resolve(_ab("LoRA adapters", action="REMOVE"), Baseline())
    assert (res.status, [c for _, c in res.variants]) == ("inverted", [{"peft": "lora"}])
    res = resolve(_ab("LoRA adapters", action="REMOVE"), Baseline(peft="lora"))
    assert (res.status, [c for _, c in res.variants]) == ("resolved", [{"peft": "none"}])


def test_competing_readings_are_ambiguous_with_candidates_and_a_pick_resolves_them():
    ab = _ab("key hyperparameter", replacement=["1e-3"], name="sweep")
    res = resolve(ab, Baseline())
    assert res.status in ("ambiguous", "unresolved") and not res.variants
    assert 1 <= len(res.candidates) <= 3
    assert all(c.changes for c in res.candidates)
    cand = res.candidates[0]
    picked = resolve(ab, Baseline(), component=cand.component)
    assert (picked.status, picked.variants, picked.overridden) == ("resolved", cand.changes, True)
    doc = res.to_dict()["candidates"][0]
    assert set(doc) == {"component", "score", "status", "changes", "why"} and doc["changes"][0]["label"]


def test_two_named_readings_within_the_margin_are_ambiguous():
    res = resolve(_ab("step size and perturbation size", replacement=["0.01"]), Baseline())
    assert (res.status, res.component, res.variants) == ("ambiguous", None, []), res.explanation
    assert [c.component for c in res.candidates][:2] in (["lr", "eps"], ["eps", "lr"])
    assert {c.changes[0][1]["lr" if c.component == "lr" else "eps"] for c in res.candidates[:2]} == {0.01}


def test_the_architecture_doc_lists_every_component():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "architecture.md").read_text(encoding="utf-8")
    table = doc[doc.index("## Components"):doc.index("## Packages")]
    for key, comp in COMPONENTS.items():
        assert f"| {key} " in table or f"| {key}," in table or f", {key} |" in table or f"`{key}`" in table, key
        if comp.knob:
            assert comp.knob in table, comp.knob


@pytest.mark.parametrize(("part", "value", "changes"), [
    ("perturbation radius", "10x larger", {"eps": 0.01}),
    ("learning rate", "half the baseline", {"lr": 5e-7}),
    ("mini-batch size", "double", {"batch_size": 32}),
    ("batch size", "4x smaller", {"batch_size": 4}),
])
def test_a_factor_of_the_baseline_scales_its_value(part, value, changes):
    res = resolve(_ab(part, replacement=[value]), Baseline())
    assert (res.status, [c for _, c in res.variants]) == ("resolved", [changes]), res.explanation


def test_a_factor_that_gives_no_valid_value_is_unresolved_and_says_why():
    res = resolve(_ab("batch size", replacement=["3x smaller"]), Baseline())
    assert res.status == "unresolved" and "not a whole number" in res.explanation
    res = resolve(_ab("perturbation scale", replacement=["10000x larger"]), Baseline())
    assert res.status == "unresolved" and "outside the plausible range" in res.explanation


@pytest.mark.parametrize("part", ["exponential moving average of the weights", "Polyak averaging of iterates",
                                  "stochastic weight averaging (SWA)", "EMA of model parameters"])
def test_weight_averaging_is_a_setting_zolab_lacks(part):
    """REMOVE of averaging the baseline never had is a no-op; asking for it says zolab has no such setting
    (before: REMOVE read as the sparse-perturbation mask rule, 'which weights')."""
    removed = resolve(Ablation(name=part, ablated_part=part, action="REMOVE"), Baseline())
    assert (removed.component, removed.status, removed.variants) == ("weight_averaging", "no_op", [])
    assert "changes nothing" in removed.explanation
    added = resolve(Ablation(name=part, ablated_part=part, action="ADD", replacement=["decay 0.999"]), Baseline())
    assert (added.component, added.status) == ("weight_averaging", "unresolved")
    assert "zolab has no weight-averaging" in added.explanation


def test_a_reading_below_the_threshold_is_a_guess_the_user_confirms():
    """Below the threshold the closest reading that cannot run is said as a best guess with its score,
    never as the answer; --set-component with that name confirms it."""
    ab = Ablation(name="LLR", ablated_part="layer-wise learning-rate scaling", action="REMOVE")
    guess = resolve(ab, Baseline())
    assert guess.status == "unresolved" and guess.confidence < THRESHOLD
    assert guess.explanation.startswith(f"best guess layerwise_adaptive ({guess.confidence:.2f} < {THRESHOLD}")
    assert "--set-component NAME=layerwise_adaptive" in guess.explanation
    confirmed = resolve(ab, Baseline(), component="layerwise_adaptive")
    assert (confirmed.status, confirmed.variants, confirmed.overridden) == ("no_op", [], True)
