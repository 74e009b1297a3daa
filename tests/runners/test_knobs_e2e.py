"""The runner knobs of issue 14 (lr_schedule + warmup_steps, icl, linear-probe, divergence) end to end:
``zolab run-one --help`` lists them, and each runs through ``zolab run-one`` on the tiny models."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from zolab.cli import app

FAST = """\
model: tiny-opt-h16-l1
task: synthetic-sentiment
device: cpu
steps: 4
eval_every: 2
batch_size: 4
train_size: 24
dev_size: 8
test_size: 8
lr: 1.0e-3
"""

runner = CliRunner()


def test_run_one_help_lists_every_knob():
    res = runner.invoke(app, ["run-one", "--help"], env={"COLUMNS": "400"})
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    for shown in ("lr_schedule=constant|linear|cosine", "warmup_steps=0", "icl_demos=16", "linear-probe|icl",
                  "sign_rule=elementwise|scalar", "distribution=gaussian|rademacher|sphere",
                  "estimator=central|forward|one-point", "sparsity=0.0", "sparsity_rule=random|magnitude",
                  "perturb_layers=null"):
        assert shown in text, shown


def _run(tmp_path, *sets: str) -> dict:
    cfg = tmp_path / "run.yaml"
    cfg.write_text(FAST)
    args = ["run-one", "--config", str(cfg), "--json"]
    for s in sets:
        args += ["--set", s]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("model", ["tiny-opt-h16-l1", "tiny-llama-h16-l1", "tiny-gpt2-h16-l1"])
def test_lr_schedule_with_warmup_end_to_end(tmp_path, model):
    line = _run(tmp_path, f"model={model}", "lr_schedule=cosine", "warmup_steps=2")
    assert line["config"]["lr_schedule"] == "cosine" and line["config"]["warmup_steps"] == 2
    res = line["result"]
    assert res["extra"]["lr_schedule"] == "cosine" and res["steps"] == 4 and res["forward_passes"] == 8
    assert line["config_hash"] != _run(tmp_path, f"model={model}")["config_hash"]


@pytest.mark.parametrize("model", ["tiny-opt-h16-l1", "tiny-llama-h16-l1", "tiny-gpt2-h16-l1"])
def test_icl_end_to_end(tmp_path, model):
    res = _run(tmp_path, f"model={model}", "method=icl", "icl_demos=3", "max_length=200")["result"]
    assert res["forward_passes"] == 0 and res["steps"] == 0 and res["extra"]["icl_demos"] == 3
    assert 0.0 <= res["accuracy"] <= 1.0 and res["extra"]["trainable_params"] == 0


@pytest.mark.parametrize("model", ["tiny-opt-h16-l1", "tiny-llama-h16-l1", "tiny-gpt2-h16-l1"])
def test_linear_probe_end_to_end(tmp_path, model):
    res = _run(tmp_path, f"model={model}", "method=linear-probe", "lr=1.0e-2")["result"]
    assert res["forward_passes"] == 4 and res["extra"]["trainable_params"] == 2 * 16  # 2 label rows x hidden 16
    assert res["zero_shot_accuracy"] is not None and 0.0 <= res["accuracy"] <= 1.0


def test_divergence_end_to_end_is_shown(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(FAST.replace("steps: 4", "steps: 40"))
    res = runner.invoke(app, ["run-one", "--config", str(cfg), "--set", "method=fo-sgd", "--set", "lr=50"],
                        env={"COLUMNS": "300"})
    assert res.exit_code == 0, res.output
    assert "diverged" in res.output and "exceeds 10x its first value" in res.output
