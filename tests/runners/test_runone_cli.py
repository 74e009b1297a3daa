"""``zolab run-one``: one config with overrides, JSON output, folder mode with job_id passthrough, bad input."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from zolab.cli import app

FAST = """\
method: mezo
model: tiny-gpt2-h16-l1
task: synthetic-sentiment
device: cpu
steps: 3
batch_size: 4
train_size: 20
dev_size: 8
test_size: 8
"""

runner = CliRunner()


def test_run_one_json_with_override(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(FAST + "job_id: 17\n")
    res = runner.invoke(app, ["run-one", "--config", str(cfg), "--set", "steps=2", "--set", "lr=1e-3", "--json"])
    assert res.exit_code == 0, res.output
    line = json.loads(res.stdout.strip().splitlines()[-1])
    assert line["job_id"] == 17 and line["config"]["steps"] == 2 and line["config"]["lr"] == 1e-3
    assert line["result"]["forward_passes"] == 4 and 0.0 <= line["result"]["accuracy"] <= 1.0


def test_run_one_prints_accuracy_before_and_after(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(FAST)
    res = runner.invoke(app, ["run-one", "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    assert "accuracy before -> after" in res.output and "3 / 6" in res.output


def test_run_one_folder_writes_json_lines(tmp_path):
    folder = tmp_path / "cfgs"
    folder.mkdir()
    (folder / "a.yaml").write_text(FAST + "job_id: a-1\n")
    (folder / "b.yaml").write_text(FAST + "job_id: b-2\nmethod: zo-sign\n".replace("method: zo-sign", "seed: 5"))
    (folder / "notes.txt").write_text("ignored")
    out = tmp_path / "results.jsonl"
    res = runner.invoke(app, ["run-one", "--config", str(folder), "--out", str(out)])
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["job_id"] for x in lines] == ["a-1", "b-2"]
    assert lines[1]["config"]["seed"] == 5 and all("result" in x for x in lines)


def test_bad_config_names_file_and_field(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(FAST + "learning_rate: 1\n")
    res = runner.invoke(app, ["run-one", "--config", str(cfg)])
    assert res.exit_code == 1 and "bad.yaml" in res.output and "learning_rate" in res.output
    cfg.write_text(FAST + "lr: -1\n")
    res = runner.invoke(app, ["run-one", "--config", str(cfg)])
    assert res.exit_code == 1 and "lr must be > 0" in res.output
    cfg.write_text("method: [unclosed\n")
    res = runner.invoke(app, ["run-one", "--config", str(cfg)])
    assert res.exit_code == 1 and "line" in res.output and "invalid YAML" in res.output
    res = runner.invoke(app, ["run-one", "--config", str(tmp_path / "x.yaml"), "--set", "oops"])
    assert res.exit_code == 1


def test_json_job_file_is_read_as_json(tmp_path):
    """Export writes JSON job files; '1e-05' must stay a float (YAML 1.1 would read it as a string)."""
    cfg = tmp_path / "job-1.json"
    cfg.write_text('{"method": "mezo", "model": "tiny-gpt2-h16-l1", "task": "synthetic-sentiment", "device": "cpu",'
                   ' "steps": 1, "batch_size": 4, "train_size": 8, "dev_size": 4, "test_size": 4, "lr": 1e-05,'
                   ' "job_id": 5}')
    res = runner.invoke(app, ["run-one", "--config", str(cfg), "--json"])
    assert res.exit_code == 0, res.output
    line = json.loads(res.stdout.strip().splitlines()[-1])
    assert line["job_id"] == 5 and line["config"]["lr"] == 1e-05
    bad = tmp_path / "bad.json"
    bad.write_text('{"method": "mezo",\n "steps": }')
    res = runner.invoke(app, ["run-one", "--config", str(bad)])
    assert res.exit_code == 1 and "bad.json: line 2: invalid JSON" in " ".join(res.output.split())
