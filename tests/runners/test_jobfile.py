"""Job files: readable by JSON and by YAML 1.1 (``run-one`` accepts both) with identical values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from zolab.runners.config import RunConfig
from zolab.runners.jobfile import JobFile, read_job, result_line, write_job, yaml_safe_json


def test_floats_survive_yaml_and_json(tmp_path: Path) -> None:
    cfg = RunConfig(lr=1e-5, eps=1e-3, weight_decay=2.5e-10, betas=(0.9, 0.999), task_options={"path": "a 1e5 b"})
    path = write_job(tmp_path, JobFile(cfg, 17))
    via_json = json.loads(path.read_text())
    via_yaml = yaml.safe_load(path.read_text())
    assert via_json == via_yaml
    assert via_yaml["lr"] == 1e-5 and isinstance(via_yaml["lr"], float)
    assert via_yaml["task_options"] == {"path": "a 1e5 b"}
    back = read_job(path)
    assert back.job_id == 17 and back.config == cfg and back.config.config_hash() == cfg.config_hash()


def test_bad_job_files_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "job-000001.json"
    bad.write_text('{"job_id": 1, "lr": 0.1, "colour": "red"}')
    with pytest.raises(ValueError, match=r"job-000001.json: unknown RunConfig field\(s\): colour"):
        read_job(bad)
    bad.write_text("{oops")
    with pytest.raises(ValueError, match="job-000001.json: line 1: not valid JSON"):
        read_job(bad)
    with pytest.raises(ValueError, match="cannot be written"):
        yaml_safe_json({"lr": float("nan")})


def test_result_line_shapes() -> None:
    job = JobFile(RunConfig(), 3)
    failed = result_line(job, None, error="boom")
    assert failed["job_id"] == 3 and failed["error"] == "boom" and "result" not in failed
