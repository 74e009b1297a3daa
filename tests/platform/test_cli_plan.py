"""``zolab plan ...`` end to end: every shipped plan validates, JSON for scripts, upload/list/show/expand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from zolab.cli import app, common

ROOT = Path(__file__).resolve().parents[2]
FIX = Path(__file__).parent / "fixtures"
#: verbatim copies of the LM-planner seed plans 000 and 001 (HTML wrapper and all)
SEEDS = ROOT / "tests" / "reliability" / "fixtures"
PLAN_SUFFIXES = {".yaml", ".yml", ".jsonl", ".md"}
#: ablations/runs/ holds run configs for `zolab run-one`, not plans
SHIPPED = sorted(p for p in (ROOT / "ablations").rglob("*")
                 if p.suffix in PLAN_SUFFIXES and p.name != "README.md" and "runs" not in p.relative_to(ROOT).parts)


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    monkeypatch.setattr(common.err_console, "width", 400)
    monkeypatch.setattr(common.console, "width", 400)


def run(*args: str):
    return CliRunner().invoke(app, ["plan", *args])


def test_shipped_plans_exist():
    names = {p.name for p in SHIPPED}
    assert {"quickstart.yaml", "seed-000-mezo.yaml", "seed-001-mezo.yaml", "mezo-opt.yaml"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=[str(p.relative_to(ROOT)) for p in SHIPPED])
def test_every_shipped_plan_validates(path: Path):
    result = run("validate", str(path))
    assert result.exit_code == 0, result.output + result.stderr


@pytest.mark.parametrize("prefix", ["000", "001"])
def test_real_seed_files_validate(prefix: str):
    path = SEEDS / f"seed_{prefix}.md"
    result = run("validate", str(path), "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    statuses = [a["status"] for a in report["ablations"]]
    assert statuses == (["resolved", "resolved", "inverted", "inverted", "resolved"] if prefix == "000"
                        else ["resolved", "resolved", "resolved", "no_op", "resolved"])


def test_seed_yaml_matches_seed_markdown_resolutions():
    md = json.loads(run("validate", str(FIX / "planner_000.md"), "--json").stdout)
    yml = json.loads(run("validate", str(ROOT / "ablations" / "seed-000-mezo.yaml"), "--json").stdout)
    key = [(a["name"], a["component"], a["status"], a["changes"]) for a in md["ablations"]]
    assert key == [(a["name"], a["component"], a["status"], a["changes"]) for a in yml["ablations"]]


def test_validate_json_has_plan_and_resolutions():
    result = run("validate", str(FIX / "planner_001.md"), "--json", "--tasks", "rte", "--seeds", "1,2")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["ok"] and report["format"] == "markdown"
    assert report["plan"]["tasks"] == ["rte"] and report["plan"]["seeds"] == [1, 2]
    first = report["ablations"][0]
    assert set(first) >= {"name", "component", "status", "changes", "explanation", "confidence"}
    assert first["changes"][0] == {"label": "eps=0.1", "changes": {"eps": 0.1}}
    assert len(report["variants"]) == 8


def test_validate_table_and_unresolved_exit_code(tmp_path: Path):
    result = run("validate", str(ROOT / "ablations" / "seed-001-mezo.yaml"))
    assert result.exit_code == 0
    assert "MeZO has no layer-wise adaptive step size" in result.stdout and "no_op" in result.stdout
    path = tmp_path / "u.jsonl"
    path.write_text('{"name": "[bold]x[/]", "ablated_part": "colour of the loss curve", "action": "REMOVE"}\n'
                    '{"name": "sizes", "ablated_part": "step size and perturbation size", "action": "REPLACE", '
                    '"replacement": [0.01]}\n')
    result = run("validate", str(path), "--baseline", str(FIX / "eq_baseline.yaml"))
    assert result.exit_code == 0, result.stderr  # unsettled ablations are listed, not a refusal
    out = " ".join(result.stdout.split())
    assert "[bold]x[/]" in result.stdout  # plan text printed escaped, not as markup
    assert "not run [bold]x[/] (unresolved)" in out and "not run sizes (ambiguous)" in out
    assert "#2 sizes is ambiguous: candidates:" in out
    assert "runs lr=0.01" in out and "runs eps=0.01" in out and "pick one: --set-component 2=" in out
    strict = run("validate", str(path), "--baseline", str(FIX / "eq_baseline.yaml"), "--strict")
    assert strict.exit_code == 1 and "--strict" in strict.stderr and "sizes" in strict.stderr
    assert run("validate", str(path), "--allow-unresolved").exit_code == 0  # old scripts keep working
    picked = run("validate", str(path), "--baseline", str(FIX / "eq_baseline.yaml"), "--json",
                 "--set-component", "sizes=eps")
    report = json.loads(picked.stdout)
    assert [a["status"] for a in report["ablations"]] == ["unresolved", "resolved"]
    assert report["ablations"][1]["changes"] == [{"label": "eps=0.01", "changes": {"eps": 0.01}}]
    assert report["pending"] == ["[bold]x[/]"]
    assert all(c["score"] < 0.7 for c in report["ablations"][0]["candidates"])  # weak readings, shown not run


def test_upload_stores_unsettled_ablations_and_says_so_per_ablation(tmp_path: Path, sqlite_url: str):
    path = tmp_path / "u.jsonl"
    path.write_text('{"name": "eps", "ablated_part": "perturbation scale", "action": "REPLACE", "replacement": [0.1]}\n'
                    '{"name": "sizes", "ablated_part": "step size and perturbation size", "action": "REPLACE", '
                    '"replacement": [0.01]}\n')
    up = run("upload", str(path), "--db", sqlite_url, "--baseline", str(FIX / "eq_baseline.yaml"))
    assert up.exit_code == 0 and "plan_id=1" in up.stdout
    lines = [ln for ln in up.stdout.splitlines() if ln.startswith("not run")]
    assert len(lines) == 1 and lines[0].startswith("not run sizes (ambiguous)")
    shown = run("show", "1", "--db", sqlite_url)
    assert "#2 sizes is ambiguous: candidates:" in " ".join(shown.stdout.split())
    data = json.loads(run("show", "1", "--db", sqlite_url, "--json").stdout)
    assert {c["component"] for c in data["ablations"][1]["candidates"]} >= {"lr", "eps"}
    expanded = json.loads(run("expand", "1", "--db", sqlite_url, "--json").stdout)
    assert expanded["skipped"][0]["name"] == "sizes" and expanded["skipped"][0]["status"] == "ambiguous"
    # the pick is a new plan content (the component is part of it): uploaded as plan 2 with the variant
    again = run("upload", str(path), "--db", sqlite_url, "--baseline", str(FIX / "eq_baseline.yaml"),
                "--set-component", "2=lr")
    assert again.exit_code == 0 and "plan_id=2" in again.stdout and "not run" not in again.stdout
    strict = run("upload", str(path), "--db", tmp_path.joinpath("s.db").as_posix(), "--strict",
                 "--baseline", str(FIX / "eq_baseline.yaml"))
    assert strict.exit_code == 1 and "ambiguous" in strict.stderr


def test_bad_options_exit_1(tmp_path: Path):
    assert run("validate", str(FIX / "planner_001.md"), "--seeds", "a,b").exit_code == 1
    assert run("validate", str(FIX / "planner_001.md"), "--override", "nonsense").exit_code == 1
    assert run("validate", str(tmp_path / "missing.yaml")).exit_code == 1
    assert run("validate", str(FIX / "planner_001.md"), "--format", "toml").exit_code == 1


def test_upload_list_show_expand(sqlite_url: str):
    up = run("upload", str(ROOT / "ablations" / "quickstart.yaml"), "--db", sqlite_url)
    assert up.exit_code == 0 and "plan_id=1" in up.stdout and "stored as id 1" in up.stdout
    again = run("upload", str(ROOT / "ablations" / "quickstart.yaml"), "--db", sqlite_url)
    assert again.exit_code == 0 and "already stored as id 1" in again.stdout
    listed = run("list", "--db", sqlite_url)
    assert listed.exit_code == 0 and "quickstart" in listed.stdout
    shown = run("show", "1", "--db", sqlite_url, "--json")
    data = json.loads(shown.stdout)
    assert [a["component"] for a in data["ablations"]] == ["optimizer", "peft"]
    expanded = json.loads(run("expand", "1", "--db", sqlite_url, "--json").stdout)
    assert [v["label"] for v in expanded["variants"]] == ["baseline", "zero-shot", "method=fo-adam", "peft=none"]
    table = run("expand", "1", "--db", sqlite_url)
    assert table.exit_code == 0 and "4 variants x 1 tasks x 3 seeds = 12 runs" in table.stdout
    assert run("show", "99", "--db", sqlite_url).exit_code == 1


def test_database_errors_exit_2(tmp_path: Path):
    bad = f"sqlite:///{tmp_path}/no/such/dir/x.db"
    result = run("upload", str(ROOT / "ablations" / "quickstart.yaml"), "--db", bad)
    assert result.exit_code == 2 and "Traceback" not in result.stderr


def test_show_lists_tuned_hyperparameters(db_url):
    """Optuna's best params stored on a variant are shown by `plan show` (table and --json)."""
    from zolab.db.models import Variant
    from zolab.db.session import session_scope

    assert run("upload", str(ROOT / "ablations" / "quickstart.yaml"), "--db", db_url).exit_code == 0
    assert "Tuned hyperparameters" not in run("show", "1", "--db", db_url).stdout
    with session_scope(db_url) as s:
        v = s.query(Variant).filter_by(plan_id=1, is_baseline=True).one()
        v.tuned_params = {"synthetic-sentiment": {"lr": 0.0123456, "eps": 0.001}}
    shown = run("show", "1", "--db", db_url)
    assert shown.exit_code == 0 and "Tuned hyperparameters" in shown.stdout and "lr=0.0123" in shown.stdout
    data = json.loads(run("show", "1", "--db", db_url, "--json").stdout)
    assert data["tuned"] == [{"variant": "baseline", "task": "synthetic-sentiment",
                              "params": {"lr": 0.0123456, "eps": 0.001}}]
