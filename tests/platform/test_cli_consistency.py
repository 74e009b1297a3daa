"""One CLI: names or ids everywhere, unknown things are one-line errors, one --db option, --version."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from tests.platform._boards import seed_fixed_plan
from zolab import __version__
from zolab.cli import app, common

UNRESOLVED_PLAN = """\
zolab: 1
name: half-resolved
baseline: {method: mezo, model: tiny-opt, steps: 2, device: cpu}
tasks: [synthetic-sentiment]
seeds: [1]
ablations:
  - {name: bigger eps, ablated_part: perturbation scale, action: REPLACE, replacement: [1.0e-2]}
  - {name: no dropout, ablated_part: dropout rate, action: REMOVE}
"""
#: every command that reads or writes the database
DB_COMMANDS = {"plan upload", "plan list", "plan show", "plan expand", "run", "worker", "status", "leaderboard",
               "cancel", "retry", "demo", "export", "import", "ui", "tune-status", "db upgrade", "db current",
               "db downgrade"}


@pytest.fixture(autouse=True)
def wide(monkeypatch):
    monkeypatch.setattr(common.console, "width", 300)
    monkeypatch.setattr(common.err_console, "width", 300)


def cli(*args: str):
    return CliRunner().invoke(app, list(args))


def _commands(group, prefix: str = ""):
    for name, cmd in group.commands.items():
        full = f"{prefix}{name}"
        if hasattr(cmd, "commands"):  # a group (typer may vendor its own click)
            yield from _commands(cmd, full + " ")
        else:
            yield full, cmd


def test_version():
    res = cli("--version")
    assert res.exit_code == 0 and res.stdout.strip() == f"zolab {__version__}"


def test_every_database_command_has_db_with_url_alias():
    root = typer.main.get_command(app)
    found = {}
    for name, cmd in _commands(root):
        opts = [p for p in cmd.params if p.param_type_name == "option" and "--db" in p.opts]
        if opts:
            found[name] = opts[0].opts
        assert not any("--url" in p.opts and "--db" not in p.opts for p in cmd.params), name
    assert set(found) == DB_COMMANDS
    assert all(set(o) == {"--db", "--url"} for o in found.values()), found


def test_db_help_names_exactly_its_commands():
    root = typer.main.get_command(app)
    group = root.commands["db"]
    res = cli("db", "--help")
    assert res.exit_code == 0
    summary = group.help
    for name in group.commands:
        assert name in summary and name in res.stdout
    assert "show" not in summary and "show" not in res.stdout


def test_unknown_plan_task_or_job_is_one_line_exit_1(sqlite_url):
    fixed = seed_fixed_plan(sqlite_url)
    cases = [
        ("leaderboard", "99"), ("leaderboard", "no-such-plan"), ("leaderboard", str(fixed.plan_id), "--task", "rte"),
        ("status", "99"), ("plan", "show", "99"), ("plan", "expand", "nope"), ("tune-status", "99"),
        ("worker", "--plan", "99"), ("cancel", "999"), ("retry", "999"), ("run", "99", "--dry-run"),
        ("run", "missing.yaml", "--dry-run"), ("export", "99", "out-dir"),
    ]
    for args in cases:
        res = cli(*args)
        assert res.exit_code == 1, (args, res.output)
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), (args, res.output)
    assert "no plan with id 99" in cli("leaderboard", "99").output
    assert "has no task 'rte' (its tasks: sst2)" in cli("leaderboard", str(fixed.plan_id), "--task", "rte").output
    assert "no such plan file" in cli("run", "missing.yaml", "--dry-run").output


def test_names_work_where_ids_do(sqlite_url, tmp_path):
    fixed = seed_fixed_plan(sqlite_url, name="named-plan")
    for args in (("plan", "show"), ("plan", "expand"), ("status",), ("leaderboard",)):
        by_id, by_name = cli(*args, str(fixed.plan_id)), cli(*args, "named-plan")
        assert by_id.exit_code == 0 and by_name.exit_code == 0, (args, by_name.output)
        assert by_id.output == by_name.output, args
    seed_fixed_plan(sqlite_url, name="named-plan")     # a second plan of that name: ambiguous
    res = cli("leaderboard", "named-plan")
    assert res.exit_code == 1 and "2 stored plans are named 'named-plan': use an id" in res.output


def test_run_file_allow_unresolved(sqlite_url, tmp_path):
    path = tmp_path / "half.yaml"
    path.write_text(UNRESOLVED_PLAN)
    refused = cli("run", str(path), "--dry-run")
    assert refused.exit_code == 1 and "no dropout" in refused.output
    ok = cli("run", str(path), "--dry-run", "--allow-unresolved")
    assert ok.exit_code == 0, ok.output
    assert "2 jobs = 2 variants" in ok.output and "no dropout" in ok.output and "unresolved" in ok.output


def test_leaderboard_command_table_and_exports(sqlite_url, tmp_path):
    fixed = seed_fixed_plan(sqlite_url)
    res = cli("leaderboard", str(fixed.plan_id))
    assert res.exit_code == 0, res.output
    out = res.output
    assert "+7.0 pts [+2.7, +11.3] *" in out and "77.0 ± 2.5" in out
    assert "+10.0 pts (1 paired seed: no interval)" in out and "zo-broken [diverged 1/3]" in out
    assert "family: per task, per metric" in out and "not shown: GPU peak allocated" in out
    assert out.index("eps 0.1") < out.index("zo-broken [diverged")    # diverged ranks last
    md = cli("leaderboard", str(fixed.plan_id), "--format", "markdown")
    assert md.exit_code == 0 and "| fo-adam | 3 | 77.0 ± 2.5 | +7.0 pts [+2.7, +11.3] * |" in md.stdout
    target = tmp_path / "board.tex"
    tex = cli("leaderboard", str(fixed.plan_id), "--format", "latex", "--out", str(target))
    assert tex.exit_code == 0 and r"\begin{tabular}" in target.read_text()
    csv_out = cli("leaderboard", str(fixed.plan_id), "-f", "csv").stdout
    assert csv_out.splitlines()[0].startswith("task,rank,variant,baseline,seeds")
    assert cli("leaderboard", str(fixed.plan_id), "--format", "html").exit_code == 1


def test_leaderboard_of_a_plan_without_results(sqlite_url, tmp_path):
    from tests.platform._factories import make_plan

    plan_id, _ = make_plan(sqlite_url)
    res = cli("leaderboard", str(plan_id))
    assert res.exit_code == 0 and "no finished results yet" in res.output
