"""Plan model: the baseline mirrors RunConfig, ranges and metrics are checked, equality is content."""

from __future__ import annotations

import dataclasses

import pytest

from zolab.platform.errors import PlanError
from zolab.platform.plan import Action, Baseline, Plan, normalise_metric, validate_plan
from zolab.runners.config import RunConfig


def _plan(**over):
    data = {"name": "p", "tasks": ["sst2"], "seeds": [1],
            "ablations": [{"name": "a", "ablated_part": "perturbation scale", "action": "REPLACE",
                           "replacement": [0.1]}]}
    data.update(over)
    return validate_plan(data, file="p.yaml")


def test_baseline_has_every_runconfig_knob_except_task_and_seed():
    knobs = {f.name for f in dataclasses.fields(RunConfig)} - {"task", "seed"}
    assert set(Baseline.model_fields) == knobs
    defaults = Baseline().model_dump()
    assert RunConfig(**defaults, task="t", seed=0).to_dict() == {**RunConfig().to_dict(), "task": "t", "seed": 0}


def test_baseline_run_config_builds_the_runner_config():
    plan = _plan(baseline={"lr": 2e-6, "eps": 1e-2, "n_samples": 3, "peft": "lora", "betas": [0.8, 0.9]})
    cfg = plan.baseline_run_config("rte", 21)
    assert isinstance(cfg, RunConfig)
    assert (cfg.task, cfg.seed, cfg.lr, cfg.eps, cfg.n_samples, cfg.peft, cfg.betas) == (
        "rte", 21, 2e-6, 1e-2, 3, "lora", (0.8, 0.9))


@pytest.mark.parametrize("field,value,fragment", [
    ("eps", 0, "greater than 0"), ("lr", -1e-6, "greater than 0"), ("steps", -1, "greater than or equal to 0"),
    ("n_samples", 0, "greater than or equal to 1"), ("momentum", 1.5, "less than 1"),
    ("method", "adamw", "Input should be"), ("n_samples", 1.5, "integer"),
])
def test_baseline_ranges(field, value, fragment):
    with pytest.raises(PlanError) as err:
        _plan(baseline={field: value})
    assert err.value.field == f"baseline.{field}"
    assert fragment in str(err.value)


def test_steps_zero_is_a_zero_shot_baseline():
    assert _plan(baseline={"steps": 0}).baseline.steps == 0


def test_cross_field_rule_from_runconfig():
    with pytest.raises(PlanError, match="needs a gradient"):
        _plan(baseline={"method": "fo-adam", "objective": "f1"})


@pytest.mark.parametrize("text,key", [
    ("memory usage", "peak_memory"), ("F1", "f1"), ("convergence rate", "convergence"),
    ("GPU hours", "gpu_hours"), ("Accuracy", "accuracy"), ("wall-clock time", "wall_time"),
])
def test_metric_aliases(text, key):
    assert normalise_metric(text) == key


def test_unknown_metric_is_kept_not_refused():
    """A metric zolab does not measure never refuses a plan (issue 13 item 2): it is kept as written."""
    assert normalise_metric("Perplexity") == "perplexity"
    plan = _plan(metrics=["accuracy", "perplexity"])
    assert plan.metrics == ["accuracy", "perplexity"]


def test_unknown_tuning_metric_is_refused():
    """The tuning objective must be measured: there is nothing to optimise otherwise."""
    with pytest.raises(PlanError, match="cannot tune for 'perplexity'.*leaderboard shows accuracy"):
        _plan(tuning={"metric": "perplexity"})


def test_action_is_case_insensitive_and_metrics_default_from_plan():
    plan = _plan(metrics=["accuracy"], ablations=[{"name": "x", "ablated_part": "in-place", "action": "remove"}])
    assert plan.ablations[0].action is Action.REMOVE
    assert plan.ablations[0].metrics == ["accuracy"]
    assert plan.ablations[0].replacement == []


def test_replacement_values_become_text():
    plan = _plan(ablations=[{"name": "x", "ablated_part": "eps", "action": "REPLACE",
                             "replacement": [0.1, 5, True, {"eps": 0.01}]}])
    assert plan.ablations[0].replacement == ["0.1", "5", "true", "eps: 0.01"]
    single = _plan(ablations=[{"name": "x", "ablated_part": "eps", "action": "REPLACE", "replacement": "0.5"}])
    assert single.ablations[0].replacement == ["0.5"]


def test_equality_ignores_source_marks():
    a = validate_plan({"name": "p", "tasks": ["t"], "seeds": [1], "ablations": [
        {"name": "a", "ablated_part": "eps", "action": "REMOVE"}]}, file="a.yaml", marks={("name",): (2, 1)})
    b = validate_plan(a.model_dump(mode="json"), file="b.jsonl")
    assert a == b and isinstance(a, Plan)
    b.ablations[0].name = "other"
    assert a != b


def test_tuning_space_must_name_baseline_fields():
    with pytest.raises(PlanError) as err:
        _plan(tuning={"trials": 3, "space": {"epss": {"low": 1e-4, "high": 1e-2, "log": True}}})
    assert "did you mean 'eps'" in str(err.value)
    plan = _plan(tuning={"trials": 3, "space": {"lr": {"low": 1e-7, "high": 1e-5, "log": True}}}, zero_shot=True)
    assert plan.tuning.space["lr"].log and plan.zero_shot
