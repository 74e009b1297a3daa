"""``zolab run FILE --set-component NAME=COMPONENT``: the pick travels with the upload, the
ablations that still wait for one are named (one line each), and only runnable ones get jobs."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from zolab.cli import app, common
from zolab.db.repo import plans as repo
from zolab.db.session import session_scope

PLAN = """\
zolab: 1
name: run-with-a-pick
baseline: {model: tiny-opt, lr: 1.0e-3, steps: 2, eval_every: 1, train_size: 8, dev_size: 4, test_size: 4}
tasks: [synthetic-sentiment]
seeds: [1]
ablations:
  - name: sizes
    ablated_part: step size and perturbation size
    action: REPLACE
    replacement: [0.01]
  - name: dropout
    ablated_part: dropout rate
    action: REPLACE
    replacement: [0.1]
"""


def test_run_dry_run_names_waiting_ablations_and_takes_a_pick(tmp_path: Path, sqlite_url: str, monkeypatch):
    monkeypatch.setattr(common.console, "width", 400)
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN, encoding="utf-8")
    runner = CliRunner()
    plain = runner.invoke(app, ["run", str(path), "--dry-run", "--db", sqlite_url])
    assert plain.exit_code == 0, plain.output
    lines = [ln for ln in plain.stdout.splitlines() if ln.startswith("not run:")]
    assert [ln.split(" is ")[0] for ln in lines] == ["not run: 'sizes'", "not run: 'dropout'"]
    assert "zolab has no dropout setting" in plain.stdout
    assert "1 jobs = 1 variants" in " ".join(plain.stdout.split())

    picked = runner.invoke(app, ["run", str(path), "--dry-run", "--db", sqlite_url, "--set-component", "1=eps"])
    assert picked.exit_code == 0, picked.output
    assert "2 jobs = 2 variants" in " ".join(picked.stdout.split())
    with session_scope(sqlite_url) as s:
        plans = repo.list_plans(s)
        assert len(plans) == 2  # the pick is part of the plan's content: a plan of its own
        rows = repo.plan_ablations(s, plans[0].id)
        assert (rows[0].component, rows[0].status, rows[0].overridden) == ("eps", "resolved", True)
    bad = runner.invoke(app, ["run", str(path), "--dry-run", "--db", sqlite_url, "--set-component", "nope"])
    assert bad.exit_code == 1 and "NAME=COMPONENT" in bad.stderr
    stored = runner.invoke(app, ["run", "1", "--dry-run", "--db", sqlite_url, "--set-component", "1=eps"])
    assert stored.exit_code == 1 and "applies to a plan file" in stored.stderr
