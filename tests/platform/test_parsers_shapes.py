"""Shapes planners write that the parsers turn into plan data (the lead's probe of issue 13):
replacements as objects, a plan as one markdown table, a replacement written as one sentence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zolab.platform.parsers import detect_format, load_plan
from zolab.platform.parsers.replacement import normalise_replacement
from zolab.platform.resolver import resolve_plan

BASELINE = Path(__file__).parent / "resolver_corpus" / "baseline.yaml"


@pytest.mark.parametrize("written,items", [
    ([{"name": "lr", "value": 1e-7}, {"name": "lr", "value": 1e-5}], ["lr (1e-07)", "lr (1e-05)"]),
    ([{"name": "LoRA", "value": "r=4"}], ["LoRA (r=4)"]),
    ([{"value": 2}, {"value": 8}], ["2", "8"]),
    ([{"method": "ZO-Adam", "lr": 1e-5}], ["ZO-Adam (lr: 1e-05)"]),
    ([{"sparsity": 0.9, "sparsity_rule": "magnitude"}], ["sparsity: 0.9 (sparsity_rule: magnitude)"]),
    ({"name": "eps", "values": [1e-2, 1e-4]}, ["eps (0.01)", "eps (0.0001)"]),
    ({"lr_schedule": "cosine", "warmup_steps": 200}, ["lr_schedule: cosine (warmup_steps: 200)"]),
    ({"lr": [1e-5, 1e-4], "optimizer": "adam"}, ["lr: 1e-05 (optimizer: adam)", "lr: 0.0001 (optimizer: adam)"]),
    ({"eps": [1e-4, 1e-2]}, ["eps: 0.0001", "eps: 0.01"]),            # as before: one variant per value
    ({"from": "SGD", "to": "Adam"}, ["Adam"]),
    ({"small": 4, "large": 64}, ["4", "64"]),                         # labels of alternatives, not knobs
    ({"option_a": "LoRA", "option_b": "prefix tuning"}, ["LoRA", "prefix tuning"]),
    ([{"name": "x", "value": {"nested": 1}}], [{"name": "x", "value": {"nested": 1}}]),  # left for the plan model
])
def test_replacement_objects_become_one_variant_each(written, items):
    assert normalise_replacement(written) == items


def _jsonl(*ablations):
    return "".join(json.dumps(a) + "\n" for a in ablations)


def test_object_replacements_resolve_with_every_setting():
    text = _jsonl(
        {"name": "opt", "ablated_part": "optimizer", "action": "REPLACE",
         "replacement": [{"method": "ZO-Adam", "lr": 1e-5}, {"name": "ZO-SGD with momentum", "momentum": 0.5}]},
        {"name": "mask", "ablated_part": "which weights are perturbed", "action": "REPLACE",
         "replacement": [{"sparsity": 0.9, "sparsity_rule": "magnitude"}]},
        {"name": "sched", "ablated_part": "constant learning rate", "action": "REPLACE",
         "replacement": {"lr_schedule": "cosine", "warmup_steps": 200}})
    res = {r.ablation: r for r in resolve_plan(load_plan(text, filename="p.jsonl", baseline=BASELINE))}
    assert [c for _, c in res["opt"].variants] == [{"method": "zo-adam", "lr": 1e-5},
                                                  {"method": "zo-momentum", "momentum": 0.5}]
    # "sparsity: 0.9" names the knob: the fraction NOT perturbed, whatever the ablated part's words say
    assert [c for _, c in res["mask"].variants] == [{"sparsity": 0.9, "sparsity_rule": "magnitude"}]
    assert [c for _, c in res["sched"].variants] == [{"lr_schedule": "cosine", "warmup_steps": 200}]


TABLE = """# Plan

| # | Name | Ablated part | Action | Replacement | Metrics |
|---|------|--------------|--------|-------------|---------|
| 1 | Epsilon sweep | perturbation scale ε | REPLACE | 1e-2; 1e-4 | accuracy, convergence speed |
| 2 | No prompt | prompt template | REMOVE | - | test accuracy |
| 3 | Warmup | learning-rate warmup | ADD | 300 warmup steps | training time |
"""


def test_a_markdown_table_is_a_plan():
    assert detect_format(TABLE) == "markdown"
    plan = load_plan(TABLE, baseline=BASELINE)
    assert [(a.name, a.ablated_part, a.action.value, a.replacement, a.metrics) for a in plan.ablations] == [
        ("Epsilon sweep", "perturbation scale ε", "REPLACE", ["1e-2", "1e-4"], ["accuracy", "convergence"]),
        ("No prompt", "prompt template", "REMOVE", [], ["accuracy"]),
        ("Warmup", "learning-rate warmup", "ADD", ["300 warmup steps"], ["wall_time"]),
    ]


def test_a_table_without_ablation_columns_is_not_a_plan():
    text = "# Notes\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
    with pytest.raises(Exception, match="no ablations found"):
        load_plan(text, filename="n.md", baseline=BASELINE)


SENTENCES = """# Plan

### A1. Distribution
- Ablated part: Gaussian perturbation vectors
- Action: REPLACE
- Replacement: Sample the perturbation from a Rademacher distribution instead, with 4 directions averaged per step.

### A2. Two values
- Ablated part: perturbation scale
- Action: REPLACE
- Replacement: 1e-2, 1e-4.
"""


def test_a_replacement_sentence_is_one_value_and_lettered_numbering_is_dropped():
    plan = load_plan(SENTENCES, baseline=BASELINE)
    assert [a.name for a in plan.ablations] == ["Distribution", "Two values"]
    assert plan.ablations[0].replacement == [
        "Sample the perturbation from a Rademacher distribution instead, with 4 directions averaged per step."]
    assert plan.ablations[1].replacement == ["1e-2", "1e-4."]
    (dist, _) = resolve_plan(plan)
    assert [c for _, c in dist.variants] == [{"distribution": "rademacher", "n_samples": 4}]
