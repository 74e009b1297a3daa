"""Bad input: every case gives a clear message naming line/field, exit code 1 and no DB rows.

Each case is checked three ways: the parser's PlanError (message, line, field), ``zolab plan upload``
(exit code 1, the message on stderr, no traceback) and the database afterwards (zero rows).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from zolab.cli import app, common
from zolab.db.repo import plans as repo
from zolab.db.session import session_scope
from zolab.platform.errors import PlanError
from zolab.platform.upload import upload_plan

FIX = Path(__file__).parent / "fixtures"

VALID = """\
zolab: 1
name: tiny
baseline:
  model: tiny-opt
  lr: 1.0e-3
  eps: 1.0e-3
  steps: 10
tasks: [synthetic-sentiment]
seeds: [1, 2]
ablations:
  - name: eps sweep
    ablated_part: perturbation scale
    action: REPLACE
    replacement: [1.0e-2]
  - name: no in-place
    ablated_part: in-place perturbation
    action: REMOVE
"""
VALID_JSONL = (
    '{"name": "eps sweep", "ablated_part": "perturbation scale", "action": "REPLACE", "replacement": [0.01]}\n'
    '{"name": "no in-place", "ablated_part": "in-place perturbation", "action": "REMOVE", "replacement": null}\n'
)
VALID_MD = (FIX / "planner_001.md").read_text(encoding="utf-8")


def sub(old: str, new: str) -> str:
    assert old in VALID
    return VALID.replace(old, new, 1)


@dataclass
class Case:
    id: str
    filename: str
    content: str | bytes
    fragment: str
    line: int | None = None
    field: str | None = None


BOMB = "zolab: 1\nname: bomb\n" + "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"a{i}: &a{i} [*a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}]\n"
    for i in range(1, 9))

CASES = [
    Case("malformed-yaml", "p.yaml", VALID + "  - name: [unclosed\n", "started on line 18", 19),
    Case("bad-indentation", "p.yaml", sub("  lr: 1.0e-3", "   lr: 1.0e-3"), "malformed YAML", 5),
    Case("name-wrong-type", "p.yaml", sub("name: tiny", "name: [1, 2]"), "valid string", 2, "name"),
    Case("seed-not-int", "p.yaml", sub("seeds: [1, 2]", "seeds: [1, two]"), "valid integer", 9, "seeds[1]"),
    Case("unknown-top-key", "p.yaml", sub("seeds:", "seeds_list: [3]\nseeds:"), "did you mean 'seeds'", 9,
         "seeds_list"),
    Case("unknown-baseline-key", "p.yaml", sub("  steps: 10", "  steps: 10\n  n_sample: 4"),
         "did you mean 'n_samples'", 8, "baseline.n_sample"),
    Case("unknown-ablation-key", "p.yaml", sub("    replacement: [1.0e-2]", "    replacment: [1.0e-2]"),
         "did you mean 'replacement'", 14, "ablations[0].replacment"),
    Case("negative-eps", "p.yaml", sub("eps: 1.0e-3", "eps: -1.0e-3"), "greater than 0", 6, "baseline.eps"),
    Case("zero-lr", "p.yaml", sub("lr: 1.0e-3", "lr: 0"), "greater than 0", 5, "baseline.lr"),
    Case("negative-steps", "p.yaml", sub("steps: 10", "steps: -5"), "greater than or equal to 0", 7, "baseline.steps"),
    Case("unknown-method", "p.yaml", sub("  model: tiny-opt", "  model: tiny-opt\n  method: mezzo"),
         "'mezo'", 5, "baseline.method"),
    Case("fo-with-f1", "p.yaml", sub("  model: tiny-opt", "  model: tiny-opt\n  method: fo-adam\n  objective: f1"),
         "needs a gradient", 3, "baseline"),
    Case("bad-action", "p.yaml", sub("action: REPLACE", "action: SWAP"), "REPLACE, REMOVE, ADD", 13,
         "ablations[0].action"),
    Case("replace-without-replacement", "p.yaml", sub("    replacement: [1.0e-2]", "    replacement: []"),
         "non-empty replacement", 14, "ablations[0].replacement"),
    Case("duplicate-ablation-names", "p.yaml", sub("name: no in-place", "name: EPS sweep"),
         "duplicate ablation name", 15, "ablations[1].name"),
    # an unknown metric is kept and warned about (tests/platform/test_metric_names.py); a metric that is not text is bad input
    Case("metric-not-text", "p.yaml", sub("seeds: [1, 2]", "seeds: [1, 2]\nmetrics: [accuracy, {peak: memory}]"),
         "metric must be text", 10, "metrics[1]"),
    Case("unknown-component", "p.yaml", sub("    action: REMOVE", "    action: REMOVE\n    component: flux"),
         "known: optimizer, eps", 18, "ablations[1].component"),
    Case("seed-out-of-range", "p.yaml", sub("seeds: [1, 2]", "seeds: [1, 99999999999]"), "less than or equal to 2147483647",
         9, "seeds[1]"),
    Case("negative-seed", "p.yaml", sub("seeds: [1, 2]", "seeds: [-1, 2]"), "greater than or equal to 0", 9, "seeds[0]"),
    Case("duplicate-seeds", "p.yaml", sub("seeds: [1, 2]", "seeds: [1, 1]"), "duplicate entries", 9, "seeds"),
    Case("no-tasks", "p.yaml", sub("tasks: [synthetic-sentiment]", "tasks: []"), "at least 1", 8, "tasks"),
    Case("wrong-version", "p.yaml", sub("zolab: 1", "zolab: 2"), "Input should be 1", 1, "zolab"),
    Case("missing-name", "p.yaml", sub("name: tiny\n", ""), "required field 'name'", 1, "name"),
    Case("duplicate-yaml-key", "p.yaml", sub("  steps: 10", "  steps: 10\n  steps: 20"), "duplicate key 'steps'", 8),
    Case("alias-bomb", "p.yaml", BOMB, "alias bomb"),
    Case("recursive-alias", "p.yaml", "zolab: 1\nname: &n [*n]\n", "recursive"),
    Case("python-object-tag", "p.yaml", sub("name: tiny", "name: !!python/object/apply:os.system [echo hi]"),
         "not allowed", 2),
    Case("custom-tag", "p.yaml", sub("name: tiny", "name: !secret tiny"), "not allowed", 2),
    Case("empty-file", "p.yaml", "", "empty", 1),
    Case("top-level-list", "p.yaml", "- a\n- b\n", "must be a mapping", 1),
    Case("ten-megabytes", "p.yaml", "# " + "x" * (10 * 1024 * 1024) + "\n", "limited to 1,000,000 bytes"),
    Case("binary-garbage", "p.yaml", bytes(range(256)) * 8, "binary"),
    Case("latin-1-encoding", "p.yaml", sub("name: tiny", "name: caf\u00e9").encode("latin-1"), "not UTF-8", 2),
    Case("jsonl-bad-json", "p.jsonl", VALID_JSONL + '{"name": "x", "action": REMOVE}\n', "invalid JSON", 3),
    Case("jsonl-not-object", "p.jsonl", '[1, 2]\n' + VALID_JSONL, "must be a JSON object", 1),
    Case("jsonl-bad-action", "p.jsonl", VALID_JSONL.replace('"REMOVE"', '"DELETE"'), "REPLACE, REMOVE, ADD", 2,
         "ablations[1].action"),
    Case("jsonl-missing-part", "p.jsonl", VALID_JSONL.replace('"ablated_part": "in-place perturbation", ', ""),
         "required field 'ablated_part'", 2, "ablations[1].ablated_part"),
    Case("markdown-without-plan-section", "p.md", "# notes\n\nSome reasoning, no plan.\n",
         "no 'Ablation Plan' section", 1),
    Case("markdown-bad-action", "p.md", VALID_MD.replace("- **Action**: REMOVE", "- **Action**: DISABLE"),
         "REPLACE, REMOVE, ADD", VALID_MD.splitlines().index("- **Action**: REMOVE") + 1, "ablations[3].action"),
    Case("markdown-unknown-field", "p.md", VALID_MD.replace("- **Metrics**: accuracy\n", "- **Metrix**: accuracy\n", 1),
         "did you mean 'metrics'", None, "ablations[0].metrix"),
]


@pytest.fixture
def wide_console(monkeypatch):
    monkeypatch.setattr(common.err_console, "width", 400)
    monkeypatch.setattr(common.console, "width", 400)


def _write(tmp_path: Path, case: Case) -> Path:
    path = tmp_path / case.filename
    if isinstance(case.content, bytes):
        path.write_bytes(case.content)
    else:
        path.write_text(case.content, encoding="utf-8")
    return path


def test_there_are_at_least_25_cases():
    assert len(CASES) >= 25


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path: Path, sqlite_url: str, wide_console) -> None:
    path = _write(tmp_path, case)
    with pytest.raises(PlanError) as err:
        upload_plan(path, url=sqlite_url)
    text = str(err.value)
    assert case.fragment in text
    matching = [i for i in err.value.issues if case.fragment in str(i)]
    issue = matching[0]
    assert issue.file == str(path)
    if case.line is not None:
        assert issue.line == case.line, text
    if case.field is not None:
        assert issue.field == case.field, text

    result = CliRunner().invoke(app, ["plan", "upload", str(path), "--db", sqlite_url])
    assert result.exit_code == 1, result.output
    assert case.fragment in " ".join(result.stderr.split())
    assert "Traceback" not in result.output and "Traceback" not in result.stderr

    with session_scope(sqlite_url) as s:
        assert repo.count_rows(s) == {"plans": 0, "ablations": 0, "variants": 0}


def test_file_size_is_checked_before_reading(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "big.yaml"
    with path.open("wb") as fh:  # sparse 50 MB file: reading it would be slow, stat is instant
        fh.truncate(50 * 1024 * 1024)
    opened = []
    real_open = Path.open
    monkeypatch.setattr(Path, "open", lambda self, *a, **k: opened.append(self) or real_open(self, *a, **k))
    from zolab.platform.parsers import load_plan

    with pytest.raises(PlanError, match="limited to"):
        load_plan(path)
    assert path not in opened


def test_bad_baseline_file_names_that_file(tmp_path: Path) -> None:
    base = tmp_path / "base.yaml"
    base.write_text("baseline:\n  eps: 0\ntasks: [t]\nseeds: [1]\n", encoding="utf-8")
    from zolab.platform.parsers import load_plan

    with pytest.raises(PlanError) as err:
        load_plan(FIX / "planner_001.md", baseline=base)
    assert err.value.file == str(base) and err.value.line == 2 and err.value.field == "baseline.eps"
    base.write_text("baseline: {}\nablations: []\n", encoding="utf-8")
    with pytest.raises(PlanError, match="unknown key 'ablations' in a baseline file"):
        load_plan(FIX / "planner_001.md", baseline=base)


def test_all_issues_are_reported_at_once(tmp_path: Path) -> None:
    text = sub("eps: 1.0e-3", "eps: -1").replace("action: SWAP", "x").replace("action: REPLACE", "action: SWAP")
    from zolab.platform.parsers import load_plan

    with pytest.raises(PlanError) as err:
        load_plan(text, filename="multi.yaml")
    fields = {i.field for i in err.value.issues}
    assert {"baseline.eps", "ablations[0].action"} <= fields


def test_json_report_is_not_printed_for_bad_input(tmp_path: Path, wide_console) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(sub("eps: 1.0e-3", "eps: -1"), encoding="utf-8")
    result = CliRunner().invoke(app, ["plan", "validate", str(path), "--json"])
    assert result.exit_code == 1 and result.stdout == ""
    with pytest.raises(json.JSONDecodeError):
        json.loads(result.stdout)
