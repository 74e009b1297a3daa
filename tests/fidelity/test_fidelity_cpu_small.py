"""benchmarks/fidelity.py --cpu-small end to end: both seed plans through export -> run-one -> import."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_cpu_small_runs_both_seed_plans_and_reports(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("fidelity_bench_run", ROOT / "benchmarks" / "fidelity.py")
    fid = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fid)
    rc = fid.main(["--cpu-small", "--tasks", "synthetic-sentiment", "--seeds", "13", "--runner", "cli",
                   "--work", str(tmp_path / "work"), "--results-dir", str(tmp_path / "out"), "--stem", "smoke"])
    assert rc == 0
    report = json.loads((tmp_path / "out" / "smoke.json").read_text())
    assert report["meta"]["failed_jobs"] == 0 and report["meta"]["jobs"] == 19   # 10 + 9 variants x 1 task x 1 seed
    labels = {(v["plan"].split("-smollm2")[0], v["variant"]) for v in report["variants"]}
    assert ("seed-000", "zero-shot") in labels and ("seed-001", "n_samples=10") in labels
    assert all(v["accuracy"]["n"] == 1 for v in report["variants"])
    trends = {t["trend"] for t in report["trends"]}
    assert "seed-001: layer-wise adaptive ablation is a no-op, not run" in trends
    assert all(t["verdict"] in ("reproduced", "not reproduced", "not measured") for t in report["trends"])
    assert "## Expected trends (issue 9)" in (tmp_path / "out" / "smoke.md").read_text()


@pytest.mark.slow
def test_staged_air_gapped_flow(tmp_path: Path) -> None:
    """--stage export, `zolab run-one` per folder (as on the GPU box), --stage report."""
    from typer.testing import CliRunner

    from zolab.cli import app

    spec = importlib.util.spec_from_file_location("fidelity_bench_staged", ROOT / "benchmarks" / "fidelity.py")
    fid = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fid)
    work = tmp_path / "work"
    common = ["--cpu-small", "--tasks", "synthetic-sentiment", "--seeds", "13", "--work", str(work)]
    assert fid.main([*common, "--stage", "export"]) == 0
    state = json.loads((work / "state.json").read_text())
    assert len(state["plans"]) == 2
    for plan in state["plans"]:
        folder = Path(plan["folder"])
        res = CliRunner().invoke(app, ["run-one", "--config", str(folder), "--out", str(folder / "results.jsonl")])
        assert res.exit_code == 0, res.output
    rc = fid.main([*common, "--stage", "report", "--device-name", "test box", "--results-dir", str(tmp_path / "out"),
                   "--stem", "staged"])
    assert rc == 0
    report = json.loads((tmp_path / "out" / "staged.json").read_text())
    assert report["meta"]["jobs"] == 19 and report["meta"]["failed_jobs"] == 0
    assert report["meta"]["device"] == "test box"
