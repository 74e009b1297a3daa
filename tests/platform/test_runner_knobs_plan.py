"""``ablations/runner-knobs-cpu.yaml``: a plan whose variants exercise every runner knob of issue 14.

Default suite: it validates and expands to exactly the expected config changes. Slow: it runs end to end
(``zolab run``, two local workers, the real runner) and every knob variant lands somewhere other than the
baseline. The distribution / estimator / sparsity / perturb_layers knobs are implemented on other branches
of this round (zolab/runners/kernels, zolab/runners/optim); until those are merged their variants run as
the baseline does and the slow test says so by failing on them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from zolab.cli import app
from zolab.platform.upload import prepare
from zolab.runners.config import RunConfig

ROOT = Path(__file__).resolve().parents[2]
PLAN = ROOT / "ablations" / "runner-knobs-cpu.yaml"

#: variant label -> the RunConfig change it makes against the baseline
EXPECTED = {
    "lr_schedule=linear": {"lr_schedule": "linear"},
    "lr_schedule=cosine": {"lr_schedule": "cosine"},
    "warmup_steps=20": {"warmup_steps": 20},
    "method=icl": {"method": "icl"},
    "method=linear-probe": {"method": "linear-probe"},
    "distribution=rademacher": {"distribution": "rademacher"},
    "distribution=sphere": {"distribution": "sphere"},
    "estimator=forward": {"estimator": "forward"},
    "estimator=one-point": {"estimator": "one-point"},
    "method=zo-sign": {"method": "zo-sign"},          # with the baseline's sign_rule: scalar
    "sparsity=0.5": {"sparsity": 0.5},                # with the baseline's sparsity_rule: magnitude
    "perturb_layers=[1]": {"perturb_layers": [1]},
    "lr=1.0": {"lr": 1.0},                            # meant to diverge
}
#: every knob issue 14 adds, and where the plan sets it
ISSUE_14_KNOBS = {"lr_schedule", "warmup_steps", "distribution", "estimator", "sign_rule", "sparsity",
                  "sparsity_rule", "perturb_layers", "icl_demos"}


def _diff(base: dict, cfg: dict) -> dict:
    return {k: v for k, v in cfg.items() if base.get(k) != v}


def test_plan_validates():
    res = CliRunner().invoke(app, ["plan", "validate", str(PLAN)])
    assert res.exit_code == 0, res.output + res.stderr


def test_plan_expands_to_one_variant_per_knob_setting():
    prep = prepare(PLAN)
    assert not prep.unresolved and all(r.status == "resolved" for r in prep.resolutions)
    (base,) = [v for v in prep.variants if v.is_baseline]
    others = {v.label: v for v in prep.variants if not v.is_baseline}
    assert set(others) == set(EXPECTED)
    for label, variant in others.items():
        assert _diff(base.config, variant.config) == EXPECTED[label], label
        RunConfig.from_dict({**variant.config, "task": "synthetic-sentiment", "seed": 1})  # each one can run
    assert base.config["method"] == "mezo" and base.config["peft"] == "none"
    assert (base.config["sign_rule"], base.config["sparsity_rule"], base.config["icl_demos"]) == ("scalar", "magnitude", 8)
    touched = {k for ch in EXPECTED.values() for k in ch} | {"sign_rule", "sparsity_rule", "icl_demos"}
    assert ISSUE_14_KNOBS <= touched
    assert {"icl", "linear-probe"} <= {ch.get("method") for ch in EXPECTED.values()}
    assert len(prep.variants) * len(prep.plan.seeds) * len(prep.plan.tasks) == 14  # a few minutes on a CPU


@pytest.mark.slow
def test_plan_runs_end_to_end_and_every_knob_changes_the_run(tmp_path):
    """`zolab run` on SQLite with two workers and the real runner (about 2 minutes here)."""
    from zolab.db.repo import jobs as repo
    from zolab.db.session import session_scope

    db = f"sqlite:///{tmp_path / 'knobs.db'}"
    env = {k: v for k, v in os.environ.items() if k not in ("ZOLAB_DB", "ZOLAB_RUNNER")}
    out = subprocess.run([sys.executable, "-m", "zolab", "run", str(PLAN), "--workers", "2", "--no-progress",
                          "--estimate-for", "cpu", "--db", db], cwd=tmp_path,
                         env=dict(env, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=900,
                         check=False)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    with session_scope(db) as s:
        jobs = repo.jobs_of_plan(s)
        labels = repo.variant_labels(s, [j.variant_id for j in jobs])
        results = {labels[j.variant_id]: (j.status, repo.result_of(s, j.id)) for j in jobs}
    assert len(results) == 14
    status = {label: st for label, (st, _) in results.items()}
    assert status.pop("lr=1.0") == "diverged" and results["lr=1.0"][1].diverged
    assert set(status.values()) == {"succeeded"}, status
    curve = {label: (r.final_loss, tuple(map(tuple, r.extra["loss_curve"]))) for label, (_, r) in results.items()}
    base = curve["baseline"]
    same = sorted(label for label in EXPECTED if curve[label] == base)
    assert not same, f"these knobs ran exactly as the baseline (not implemented on this branch?): {same}"
    icl = results["method=icl"][1]
    assert icl.forward_passes == 0 and icl.extra["icl_demos"] == 8
    assert results["method=linear-probe"][1].extra["trainable_params"] == 2 * 16
