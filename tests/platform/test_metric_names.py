"""Plan metrics in free words (the lead's probe of issue 13): read by meaning as the leaderboard's
keys; a metric zolab does not measure never refuses a plan, it is kept and warned about, in every
format, on upload and in ``plan show``; only the tuning objective must be measured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from zolab.cli import app, common
from zolab.platform.errors import PlanError
from zolab.platform.metrics import METRICS, normalise_metric
from zolab.platform.parsers import load_plan
from zolab.platform.upload import prepare, upload_plan

BASELINE = Path(__file__).parent / "resolver_corpus" / "baseline.yaml"


@pytest.mark.parametrize("text,key", [
    ("peak GPU memory", "peak_memory"), ("GPU memory usage", "peak_memory"), ("memory footprint", "peak_memory"),
    ("VRAM", "peak_memory"), ("memory (GB)", "peak_memory"), ("convergence speed", "convergence"),
    ("steps to converge", "convergence"), ("time to convergence", "convergence"), ("training time", "wall_time"),
    ("wall-clock time", "wall_time"), ("runtime", "wall_time"), ("F1 score", "f1"), ("macro-F1", "f1"),
    ("test accuracy", "accuracy"), ("Accuracy (%)", "accuracy"), ("dev accuracy", "accuracy"),
    ("GPU-hours", "gpu_hours"), ("GPU time", "gpu_hours"), ("compute cost", "gpu_hours"), ("peak_memory", "peak_memory"),
])
def test_metric_phrasings_are_read_by_meaning(text, key):
    assert normalise_metric(text) == key


@pytest.mark.parametrize("text", ["perplexity", "throughput", "stability", "number of forward passes",
                                  "accuracy vs memory"])
def test_a_metric_zolab_does_not_measure_is_kept_as_written(text):
    assert normalise_metric(text) == text and text not in METRICS


def test_a_metric_that_is_not_text_is_still_bad_input():
    with pytest.raises(ValueError, match="metric must be text"):
        normalise_metric(3)
    with pytest.raises(ValueError, match="must not be empty"):
        normalise_metric("  ")


ABLATION = {"name": "eps sweep", "ablated_part": "perturbation scale", "action": "REPLACE",
            "replacement": ["1e-2"], "metrics": ["peak GPU memory", "perplexity"]}
DOCUMENTS = {
    "yaml": ("p.yaml", ("zolab: 1\nname: p\ntasks: [sst2]\nseeds: [1]\nmetrics: [test accuracy, throughput]\n"
                        "ablations:\n  - name: eps sweep\n    ablated_part: perturbation scale\n    action: REPLACE\n"
                        "    replacement: [1e-2]\n    metrics: [peak GPU memory, perplexity]\n")),
    "jsonl": ("p.jsonl", json.dumps(ABLATION) + "\n"),
    "ablationbench": ("p.txt", f"<discussion>x</discussion>\n<predictions>\n{json.dumps(ABLATION)}\n</predictions>\n"),
    "markdown": ("p.md", ("# p\n\n## Ablation Plan\n\n### eps sweep\n- **Ablated Part**: perturbation scale\n"
                          "- **Action**: REPLACE\n- **Replacement**: 1e-2\n- **Metrics**: peak GPU memory, perplexity\n")),
}


@pytest.mark.parametrize("fmt", list(DOCUMENTS))
def test_free_metrics_never_refuse_a_plan_in_any_format(fmt):
    name, text = DOCUMENTS[fmt]
    prepared = prepare(text, filename=name, baseline=BASELINE)
    assert prepared.format == fmt
    assert prepared.plan.ablations[0].metrics == ["peak_memory", "perplexity"]
    assert prepared.resolutions[0].status == "resolved"
    (line, *rest) = [w for w in prepared.warnings if "perplexity" in w]
    assert "zolab does not measure perplexity" in line and "the leaderboard shows accuracy" in line
    assert "'eps sweep'" in line and not rest
    if fmt == "yaml":
        assert prepared.plan.metrics == ["accuracy", "throughput"]
        assert any("throughput" in w and "the plan" in w for w in prepared.warnings)


def test_the_tuning_objective_must_be_measured():
    _, text = DOCUMENTS["yaml"]
    with pytest.raises(PlanError, match="cannot tune for 'perplexity'"):
        load_plan(text.replace("ablations:", "tuning: {metric: perplexity}\nablations:"), filename="p.yaml")


def test_unknown_metrics_are_stored_and_shown_by_validate_upload_and_show(tmp_path, db_url, monkeypatch):
    monkeypatch.setattr(common.console, "width", 400)
    name, text = DOCUMENTS["jsonl"]
    path = tmp_path / name
    path.write_text(text)
    runner = CliRunner()
    report = json.loads(runner.invoke(app, ["plan", "validate", str(path), "--baseline", str(BASELINE), "--json"]).stdout)
    assert report["ok"] is True and any("perplexity" in w for w in report["warnings"])
    up = runner.invoke(app, ["plan", "upload", str(path), "--baseline", str(BASELINE), "--db", db_url])
    assert up.exit_code == 0, up.output
    assert "warning" in up.output and "perplexity" in up.output
    plan_id = upload_plan(path, baseline=BASELINE, url=db_url).plan_id
    shown = json.loads(runner.invoke(app, ["plan", "show", str(plan_id), "--db", db_url, "--json"]).stdout)
    assert shown["ablations"][0]["metrics"] == ["peak_memory", "perplexity"]
    assert any("perplexity" in w for w in shown["warnings"])
