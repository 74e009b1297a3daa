"""Upload checks everything before any write (issue 17, item 5).

Each attack below was stored before (then failed in the database, at estimate time or three times at
run time, or silently ran the wrong thing); now each is a located PlanError (file, line, field) and
the database holds no row, on SQLite and PostgreSQL. The replacement splitting and NFKC names change
what is stored, so they are checked on the stored rows.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.reliability.db_rows import count_rows
from zolab.cli import app
from zolab.db.repo import jobs as job_repo
from zolab.db.session import session_scope
from zolab.platform.errors import PlanError
from zolab.platform.intake_checks import DEFAULT_MAX_JOBS, job_bound
from zolab.platform.parsers import load_plan
from zolab.platform.scheduler import JobCapExceeded, expand, schedule
from zolab.platform.upload import prepare, upload_plan

PLAN = """\
zolab: 1
name: attack
baseline:
  method: mezo
  model: tiny-opt
  lr: 1.0e-3
  eps: 1.0e-3
  steps: 4
  batch_size: 2
  task_options: {}
tasks: [synthetic-sentiment]
seeds: [1]
budget: {gpu_hours: 1.0}
ablations:
  - name: perturbation scale
    ablated_part: perturbation scale
    action: REPLACE
    replacement: [1.0e-2]
"""


def sub(*pairs: tuple[str, str]) -> str:
    text = PLAN
    for old, new in pairs:
        assert old in text, old
        text = text.replace(old, new)
    return text


def _r(value: str) -> tuple[str, str]:
    return ("replacement: [1.0e-2]", f"replacement: {value}")


def _model(value: str) -> tuple[str, str]:
    """The ablation becomes a model-scale ablation whose replacement is ``value``."""
    return ("ablated_part: perturbation scale\n    action: REPLACE\n    replacement: [1.0e-2]",
            f"ablated_part: backbone model\n    action: REPLACE\n    replacement: {value}")


# (id, plan text, field of the first issue, its line, words in its message)
ATTACKS = [
    # non-finite numbers
    ("lr-inf", sub(("  lr: 1.0e-3", "  lr: .inf")), "baseline.lr", 6, "finite"),
    ("eps-nan", sub(("  eps: 1.0e-3", "  eps: .nan")), "baseline.eps", 7, "finite"),
    ("budget-inf", sub(("{gpu_hours: 1.0}", "{gpu_hours: .inf}")), "budget.gpu_hours", 13, "finite"),
    ("task-option-inf", sub(("task_options: {}", "task_options: {scale: .inf}")), "baseline.task_options.scale", 10,
     "finite"),
    ("replacement-float-overflow", sub(_r("[1.0e+400]")), "ablations[0].replacement[0]", 18, "finite"),
    ("tuning-low-inf", sub(("budget: {gpu_hours: 1.0}", "tuning: {space: {lr: {low: .inf, high: 1.0}}}")),
     "tuning.space.lr.low", 13, "finite"),
    # integers beyond the 32-bit columns (jobs.progress_total, results.steps) or 64 bits (JSON)
    ("steps-3e9", sub(("  steps: 4", "  steps: 3000000000")), "baseline.steps", 8, "less than or equal to 2147483647"),
    ("batch-2**40", sub(("  batch_size: 2", "  batch_size: 1099511627776")), "baseline.batch_size", 9,
     "less than or equal"),
    ("tuning-steps-2**40", sub(("budget: {gpu_hours: 1.0}",
                                "tuning: {steps: 1099511627776, space: {lr: {low: 1.0e-4, high: 1.0e-2}}}")),
     "tuning.steps", 13, "less than or equal"),
    ("tuned-choice-out-of-range", sub(("budget: {gpu_hours: 1.0}",
                                       "tuning: {space: {steps: {choices: [4, 1000000000000]}}}")),
     "tuning.space.steps", 13, "less than or equal"),
    ("task-option-2**70", sub(("task_options: {}", "task_options: {n: 1180591620717411303424}")),
     "baseline.task_options.n", 10, "out of range"),
    # strings beyond their column (PostgreSQL refuses; SQLite would keep them)
    ("device-400-chars", sub(("  batch_size: 2", "  batch_size: 2\n  device: " + "x" * 400)), "baseline.device", 10,
     "pattern"),
    # unknown task
    ("unknown-task", sub(("tasks: [synthetic-sentiment]", "tasks: [synthetic-sentimnt]")), "tasks[0]", 11,
     "did you mean 'synthetic-sentiment'"),
    # model values
    ("model-url", sub(("model: tiny-opt", "model: 'https://evil.example/org/m'")), "baseline.model", 5, "URL"),
    ("model-traversal", sub(("model: tiny-opt", "model: ../../../../etc")), "baseline.model", 5, "traversal"),
    ("model-system-folder", sub(("model: tiny-opt", "model: /etc")), "baseline.model", 5, "outside the allowed"),
    ("model-file", sub(("model: tiny-opt", "model: /etc/hostname")), "baseline.model", 5, "is a file"),
    ("model-bare-name", sub(("model: tiny-opt", "model: gpt2")), "baseline.model", 5, "hub id (org/name)"),
    ("model-unknown-tiny", sub(("model: tiny-opt", "model: tiny-bert")), "baseline.model", 5, "not a known alias"),
    ("model-via-replacement", sub(_model("['/usr']")), "ablations[0].replacement.model", 18,
     "outside the allowed"),
    # text that reads differently from what it is
    ("bidi-override-name", sub(("name: attack", 'name: "att\\u202eack"')), "name", 2, "U+202E"),
    ("zero-width-ablation", sub(("  - name: perturbation scale", '  - name: "perturbation\\u200b scale"')),
     "ablations[0].name", 15, "U+200B"),
    ("zero-width-key", sub(("task_options: {}", 'task_options: {"pa\\u200dth": x}')), "baseline.task_options.pa\u200dth",
     10, "U+200D"),
    ("nfkc-duplicate-name", sub(("    replacement: [1.0e-2]\n", ("    replacement: [1.0e-2]\n"
                                 "  - name: ｐｅｒｔｕｒｂａｔｉｏｎ ｓｃａｌｅ\n    ablated_part: eps\n"
                                 "    action: REPLACE\n    replacement: [1.0e-4]\n"))),
     "ablations[1].name", 19, "duplicate ablation name"),
]


@pytest.mark.parametrize(("text", "field", "line", "words"), [a[1:] for a in ATTACKS], ids=[a[0] for a in ATTACKS])
def test_attack_is_refused_located_and_writes_nothing(db_url, text, field, line, words):
    with pytest.raises(PlanError) as info:
        upload_plan(text, fmt="yaml", filename="attack.yaml", url=db_url)
    issue = info.value.issues[0]
    assert (issue.file, issue.field, issue.line) == ("attack.yaml", field, line), str(info.value)
    assert words in issue.message, str(info.value)
    assert not any(count_rows(db_url).values())


@pytest.mark.parametrize("value", ["1e400", "steps: 1e12", "10^999"])
def test_a_value_no_knob_can_take_leaves_its_ablation_unresolved(db_url, value):
    """Free text that reads as an impossible number never refuses the plan (issue 13) and never
    reaches a column: its ablation is stored unresolved, with the reason, and gets no job."""
    res = upload_plan(sub(_r(f"['{value}']")), fmt="yaml", filename="attack.yaml", url=db_url)
    (r,) = res.prepared.resolutions
    assert r.status == "unresolved" and r.variants == [], r.explanation
    assert [v.is_baseline for v in res.prepared.variants] == [True]
    assert len(schedule(db_url, res.plan_id, device="cpu").created) == 1   # the baseline's job only


def test_the_unattacked_plan_is_stored(db_url):
    """The check of the checks: the same plan without the attack uploads and schedules."""
    res = upload_plan(PLAN, fmt="yaml", filename="attack.yaml", url=db_url)
    assert len(schedule(db_url, res.plan_id, device="cpu").created) == 2


def test_accepted_model_values(tmp_path, monkeypatch):
    """Known aliases, tiny configs, hub ids and a local folder under ZOLAB_DATA_ROOTS pass."""
    local = tmp_path / "my-model"
    local.mkdir()
    monkeypatch.setenv("ZOLAB_DATA_ROOTS", str(tmp_path))
    for model in ("tiny-opt", "tiny-llama-h32-l1", "smollm2-135m", "facebook/opt-125m", str(local)):
        prepare(sub(("model: tiny-opt", f"model: {model}")), fmt="yaml")


def test_a_local_folder_whose_label_overflows_the_column_is_refused(db_url, tmp_path, monkeypatch):
    deep = tmp_path / ("d" * 200) / ("e" * 120)
    deep.mkdir(parents=True)
    monkeypatch.setenv("ZOLAB_DATA_ROOTS", str(tmp_path))
    with pytest.raises(PlanError, match="label of .* characters; the database keeps 300") as info:
        upload_plan(sub(_model(f"['{deep}']")), fmt="yaml", filename="attack.yaml", url=db_url)
    assert info.value.field == "ablations[0].replacement" and info.value.line == 18
    assert not any(count_rows(db_url).values())


def test_a_file_name_longer_than_its_column_is_refused(db_url):
    with pytest.raises(PlanError, match="file name is 600 characters"):
        upload_plan(PLAN, fmt="yaml", filename="p" * 595 + ".yaml", url=db_url)
    assert not any(count_rows(db_url).values())


# -- comma-separated replacements ------------------------------------------------------------------
def _changes(db_url: str, text: str) -> list[dict]:
    res = upload_plan(text, fmt="yaml", filename="p.yaml", url=db_url)
    return [v.config for v in res.prepared.variants if not v.is_baseline]


def test_one_comma_separated_string_is_several_values(db_url):
    configs = _changes(db_url, sub(_r("['1e-2, 1e-4']")))
    assert sorted(c["eps"] for c in configs) == [1e-4, 1e-2]  # before: one variant, eps=1e-2, 1e-4 dropped


def test_commas_are_read_by_the_resolver_not_split_blindly():
    """Brackets, sentences, compound values and digit groups keep their commas; lists of values split."""
    from zolab.platform.components import resolve
    from zolab.platform.plan import Ablation, Baseline

    def changes(part: str, value: str) -> list[dict]:
        ab = Ablation(name=part, ablated_part=part, action="REPLACE", replacement=[value])
        return [c for _, c in resolve(ab, Baseline()).variants]

    assert changes("learning rate", "1e-3, 1e-4") == [{"lr": 1e-3}, {"lr": 1e-4}]
    assert changes("training steps", "5,000 steps") == [{"steps": 5000}]
    assert changes("perturbed layers", "[0, 1, 2]") == [{"perturb_layers": [0, 1, 2]}]
    assert changes("zeroth-order update rule", "ZO-Adam, beta1 = 0.8") == [{"method": "zo-adam", "betas": [0.8, 0.999]}]


def test_markdown_and_jsonl_read_commas_the_same_way():
    line = '{"name": "eps", "ablated_part": "perturbation scale", "action": "REPLACE", "replacement": ["1e-2, 1e-4"]}'
    md = "# p\n\n### eps\n- **Ablated Part**: perturbation scale\n- **Action**: REPLACE\n- **Replacement**: 1e-2, 1e-4\n"
    from zolab.platform.components import resolve_plan

    for text, fmt in ((line, "jsonl"), (md, "markdown")):
        (res,) = resolve_plan(load_plan(text, fmt=fmt))
        assert [c["eps"] for _, c in res.variants] == [1e-2, 1e-4], fmt


# -- NFKC names ------------------------------------------------------------------------------------
def test_names_are_nfkc_normalised(db_url):
    text = sub(("name: attack", "name: ａｔｔａｃｋ"), ("  - name: perturbation scale", "  - name: ﬁne eps"))
    res = upload_plan(text, fmt="yaml", filename="p.yaml", url=db_url)
    assert res.prepared.plan.name == "attack" and res.prepared.plan.ablations[0].name == "fine eps"


# -- the job cap -----------------------------------------------------------------------------------
def _many_replacements(lines: int = 4000, per_line: int = 20) -> str:
    """80,000 distinct n_samples values in JSONL (the builtin defaults: 2 tasks x 5 seeds = 800,010 jobs)."""
    rows = []
    for k in range(lines):
        values = ",".join(str(k * per_line + v + 2) for v in range(per_line))
        rows.append(f'{{"name":"q{k}","ablated_part":"n samples","action":"REPLACE","replacement":[{values}]}}')
    return "\n".join(rows) + "\n"


def test_80k_replacements_are_refused_from_counts_in_milliseconds(db_url):
    text = _many_replacements()
    plan = load_plan(text, fmt="jsonl", filename="big.jsonl")
    start = time.perf_counter()
    bound = job_bound(plan)
    assert time.perf_counter() - start < 0.1
    assert (bound.variants, bound.jobs) == (80_001, 800_010)
    start = time.perf_counter()
    with pytest.raises(PlanError) as info:
        upload_plan(text, fmt="jsonl", filename="big.jsonl", url=db_url)
    took = time.perf_counter() - start
    assert "800,010 jobs, over the cap of 10,000" in str(info.value)
    assert info.value.field == "ablations[49]" and info.value.line == 50  # (1 + 50 x 20) x 10 > 10,000
    assert took < 5.0, f"refusal took {took:.1f} s (parsing included); before: ~37 s to expand, minutes to enqueue"
    assert not any(count_rows(db_url).values())


def test_max_jobs_raises_and_lowers_the_cap(db_url, tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(PLAN)
    runner = CliRunner(env={"COLUMNS": "400"})
    out = runner.invoke(app, ["plan", "upload", str(path), "--db", db_url, "--max-jobs", "1"])
    assert out.exit_code == 1 and "2 jobs, over the cap of 1 jobs" in out.output
    assert not any(count_rows(db_url).values())
    assert runner.invoke(app, ["plan", "upload", str(path), "--db", db_url]).exit_code == 0
    assert DEFAULT_MAX_JOBS == 10_000


def test_stored_plans_are_capped_before_expansion(db_url):
    """A plan stored with a larger cap: expand/schedule/run count before building any job."""
    res = upload_plan(PLAN, fmt="yaml", filename="p.yaml", url=db_url, max_jobs=None)
    with pytest.raises(JobCapExceeded, match="2 jobs, over the cap of 1"):
        expand(db_url, res.plan_id, device="cpu", max_jobs=1)
    with pytest.raises(JobCapExceeded):
        schedule(db_url, res.plan_id, device="cpu", max_jobs=1)
    with session_scope(db_url) as s:
        assert job_repo.jobs_of_plan(s, res.plan_id) == []
    for args in (["run", str(res.plan_id), "--max-jobs", "1", "--dry-run"], ["plan", "expand", str(res.plan_id),
                                                                            "--max-jobs", "1"]):
        out = CliRunner(env={"COLUMNS": "400"}).invoke(app, [*args, "--db", db_url])
        assert out.exit_code == 1 and "over the cap of 1" in out.output, out.output


def test_an_unknown_task_given_on_the_command_line_is_refused(tmp_path: Path):
    path = tmp_path / "p.yaml"
    path.write_text(PLAN)
    out = CliRunner(env={"COLUMNS": "400"}).invoke(app, ["plan", "validate", str(path), "--tasks",
                                                         "synthetic-sentiment,nope"])
    assert out.exit_code == 1 and "unknown task 'nope'" in out.output
