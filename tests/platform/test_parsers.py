"""Parsers: the three formats give the same Plan; the seed-format markdown reads as planned."""

from __future__ import annotations

from pathlib import Path

import pytest

from zolab.platform.parsers import detect_format, load_plan, load_source
from zolab.platform.plan import BUILTIN_DEFAULTS

FIX = Path(__file__).parent / "fixtures"
#: verbatim copies of the LM-planner seed plans 000 and 001 (HTML wrapper and all)
SEEDS = Path(__file__).resolve().parents[1] / "reliability" / "fixtures"


def test_yaml_jsonl_and_markdown_renderings_are_equal():
    base = FIX / "eq_baseline.yaml"
    as_yaml = load_plan(FIX / "eq-plan.yaml")
    as_jsonl = load_plan(FIX / "eq-plan.jsonl", baseline=base)
    as_md = load_plan(FIX / "eq-plan.md", baseline=base)
    assert as_yaml == as_jsonl == as_md
    assert as_yaml.ablations[1].replacement == ["eps: 0.01"]
    assert as_yaml.ablations[0].metrics == ["accuracy", "peak_memory"]
    assert as_yaml.ablations[3].metrics == ["accuracy", "f1"]  # from the plan's default


@pytest.mark.parametrize("name,text,expected", [
    ("a.yaml", "{", "yaml"), ("a.yml", "", "yaml"), ("a.jsonl", "", "jsonl"), ("a.ndjson", "", "jsonl"),
    ("a.md", "", "markdown"), ("a.txt", '{"name": 1}\n', "jsonl"), ("a.txt", "## Ablation Plan\n", "markdown"),
    (None, "- **Ablated Part**: x", "markdown"), (None, "name: x\n", "yaml"),
])
def test_format_detection(name, text, expected):
    assert detect_format(text, name) == expected


def test_seed_000_markdown_fixture():
    loaded = load_source(FIX / "planner_000.md")
    plan = loaded.plan
    assert loaded.format == "markdown"
    assert plan.name == "lm-planner/test-model/mezo-000"
    assert plan.description.startswith("MeZO adapts ZO-SGD to run in place.")
    assert [a.action.value for a in plan.ablations] == ["REPLACE", "REMOVE", "REMOVE", "REMOVE", "REMOVE"]
    assert plan.ablations[0].replacement == ["SGD", "Adam"]
    assert plan.ablations[0].metrics == ["accuracy", "f1", "peak_memory", "gpu_hours"]
    assert plan.ablations[4].metrics == ["accuracy", "f1", "convergence"]
    assert plan.ablations[4].ablated_part == "theoretical assumptions such as local effective rank"
    # baseline/tasks/seeds: the repository's ablations/baselines/mezo-opt.yaml
    assert plan.baseline.method == "mezo" and plan.baseline.lr == 1e-6 and plan.baseline.batch_size == 16
    assert plan.tasks == ["sst2", "rte"] and len(plan.seeds) == 5


def test_seed_001_markdown_fixture_and_cli_style_options():
    plan = load_plan(FIX / "planner_001.md", tasks=["rte"], seeds=[7])
    assert plan.tasks == ["rte"] and plan.seeds == [7]
    assert [a.replacement for a in plan.ablations] == [
        ["0.1", "0.5", "1.0"], ["traditional fine-tuning"], ["1", "5", "10"], [], ["one-point residual-feedback oracle"]]
    assert plan.ablations[2].name == "Effect of Number of Sampled z's"


def test_builtin_defaults_when_no_baseline_file(monkeypatch):
    from zolab.platform.parsers import defaults

    monkeypatch.setattr(defaults, "DEFAULT_BASELINE_FILE", FIX / "does-not-exist.yaml")
    plan = load_plan(FIX / "planner_001.md")
    assert plan.baseline.model == BUILTIN_DEFAULTS["baseline"]["model"]
    assert plan.seeds == BUILTIN_DEFAULTS["seeds"]


def test_text_input_and_markdown_inline_replacement():
    text = "## Ablation Plan\n\n### Sweep\n- **Ablated Part**: perturbation scale\n- **Action**: replace\n" \
           "- **Replacement**: 1e-2, 1e-4\n- **Metrics**: accuracy\n"
    plan = load_plan(text, baseline=FIX / "eq_baseline.yaml")
    assert plan.ablations[0].replacement == ["1e-2", "1e-4"]
    assert plan.name == "planner-plan"


@pytest.mark.parametrize("prefix,n", [("000", 5), ("001", 5)])
def test_real_seed_files(prefix, n):
    path = SEEDS / f"seed_{prefix}.md"
    plan = load_plan(path)
    assert len(plan.ablations) == n
    assert plan.description  # the reasoning trace


DESIGN_EXAMPLE = """\
zolab: 1
name: mezo-core-ablations
description: free text
baseline:                       # a complete RunConfig: the method being ablated
  method: mezo                  # optimizer key, see components
  model: facebook/opt-125m      # HF id or local path; tests use small configs
  peft: none                    # none | lora | prefix
  objective: ce                 # ce | accuracy | f1
  prompt: true
  lr: 1.0e-6
  eps: 1.0e-3
  n_samples: 1
  steps: 20000
  batch_size: 16
  eval_every: 500
tasks: [sst2, rte]
seeds: [13, 21, 42]
metrics: [accuracy, f1, peak_memory, gpu_hours]   # default for each ablation
tuning:                         # optional: Optuna before the final seeds
  trials: 12
  sampler: tpe
  pruner: median
  space:
    lr:  {low: 1.0e-7, high: 1.0e-5, log: true}
    eps: {low: 1.0e-4, high: 1.0e-2, log: true}
budget: {gpu_hours: 50}
ablations:
  - name: Ablation of Zeroth-Order Optimization Method
    ablated_part: zeroth-order optimization method
    action: REPLACE             # REPLACE | REMOVE | ADD
    replacement: [SGD, Adam]
    metrics: [accuracy, f1, peak_memory, gpu_hours]
    component: optimizer        # optional: overrides the resolver
"""


def test_design_md_example_is_accepted_as_written():
    plan = load_plan(DESIGN_EXAMPLE, filename="design.yaml")
    assert plan.tuning.trials == 12 and plan.tuning.space["eps"].high == 1e-2
    assert plan.budget.gpu_hours == 50 and plan.ablations[0].component == "optimizer"
    cfg = plan.baseline_run_config("sst2", 13)
    assert (cfg.model, cfg.steps, cfg.eval_every) == ("facebook/opt-125m", 20000, 500)
