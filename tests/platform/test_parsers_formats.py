"""Issue 13 formats: the raw AblationBench planner response and markdown from other planners.

Each test parses real text through :func:`load_source` and checks the plan it gives (names, actions,
replacements, description) or the located error (file, line, column) for broken input.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from zolab.platform.errors import PlanError
from zolab.platform.parsers import FORMATS, detect_format, load_plan, load_source

FIX = Path(__file__).parent / "fixtures"
BASE = FIX / "eq_baseline.yaml"

RESPONSE = """\
<discussion>
MeZO estimates gradients from two forward passes.
The plan isolates the estimator and the memory trick.
</discussion>

<predictions>
{"name": "Ablation A", "ablated_part": "in-place perturbation", "action": "REMOVE", "metrics": ["accuracy"]}
{"name": "Ablation B", "ablated_part": "perturbation scale", "action": "REPLACE", "replacement": ["1e-2", "1e-4"], "metrics": ["accuracy"]}
{"name": "Ablation C", "ablated_part": "learning rate", "action": "REPLACE", "replacement": {"lr": [1e-5, 1e-4]}, "metrics": ["accuracy"]}
</predictions>
"""


def _parts(plan):
    return [(a.name, a.ablated_part, a.action.value, list(a.replacement)) for a in plan.ablations]


# ------------------------------------------------------------------ the raw planner response
def test_planner_response_parses_with_the_discussion_as_description():
    loaded = load_source(RESPONSE, filename="response.txt", baseline=BASE)
    assert loaded.format == "ablationbench" and "ablationbench" in FORMATS
    plan = loaded.plan
    assert plan.description == ("MeZO estimates gradients from two forward passes.\n"
                                "The plan isolates the estimator and the memory trick.")
    assert _parts(plan) == [
        ("Ablation A", "in-place perturbation", "REMOVE", []),
        ("Ablation B", "perturbation scale", "REPLACE", ["1e-2", "1e-4"]),
        ("Ablation C", "learning rate", "REPLACE", ["lr: 1e-05", "lr: 0.0001"]),  # a mapping becomes knob: value
    ]
    assert plan.name == "response" and plan.tasks == ["synthetic-sentiment"]  # the baseline file's


def test_planner_response_in_the_ways_models_bend_it():
    bent = """Here is the plan you asked for.
<discussion>reasons</discussion>
<predictions>
```json
[
  {"name": "A", "ablated_part": "perturbation scale", "action": "REPLACE",
   "replacement": [0.1]},
  {"name": "B", "ablated_part": "optimizer", "action": "REPLACE", "replacement": {"from": "ZO-SGD", "to": "ZO-Adam"}},
]
```
"""  # a fence, a JSON array, an object over two lines, trailing commas, no closing tag
    plan = load_plan(bent, filename="bent.md", baseline=BASE)  # the tag wins over the .md extension
    assert _parts(plan) == [("A", "perturbation scale", "REPLACE", ["0.1"]), ("B", "optimizer", "REPLACE", ["ZO-Adam"])]
    assert plan.description == "reasons"


def test_planner_response_errors_name_file_line_and_column():
    broken = RESPONSE.replace('"action": "REMOVE",', '"action": REMOVE,')
    with pytest.raises(PlanError) as err:
        load_plan(broken, filename="r.txt", baseline=BASE)
    issue = err.value.issues[0]
    assert (issue.file, issue.line) == ("r.txt", 7) and "invalid JSON" in issue.message and issue.column > 1
    bad_action = RESPONSE.replace('"action": "REMOVE"', '"action": "DISABLE"')
    with pytest.raises(PlanError) as err:
        load_plan(bad_action, filename="r.txt", baseline=BASE)
    assert (err.value.line, err.value.field) == (7, "ablations[0].action")
    with pytest.raises(PlanError, match="holds no JSON objects"):
        load_plan("<discussion>x</discussion>\n<predictions>\n</predictions>\n", filename="r.txt", baseline=BASE)
    with pytest.raises(PlanError, match="expected a JSON object") as err:
        load_plan("<predictions>\nnot json at all\n</predictions>\n", filename="r.txt", baseline=BASE)
    assert err.value.line == 2


def test_cli_validates_a_planner_response(tmp_path):
    from typer.testing import CliRunner

    from zolab.cli import app

    path = tmp_path / "response.txt"
    path.write_text(RESPONSE, encoding="utf-8")
    result = CliRunner().invoke(app, ["plan", "validate", str(path), "--baseline", str(BASE), "--json"])
    assert result.exit_code == 0, result.stderr
    import json

    report = json.loads(result.stdout)
    assert report["format"] == "ablationbench"
    assert [a["component"] for a in report["ablations"]] == ["in_place", "eps", "lr"]
    assert report["ablations"][2]["changes"][1]["changes"] == {"lr": 0.0001}


# ------------------------------------------------------------------ markdown of other planners
PLAIN_NUMBERED = """\
# A plan without any wrapper

Intro paragraph that says what the method does.

## Proposed ablations

### 1. Perturbation scale
- Ablated part: perturbation scale epsilon
- Action: replace
- Replacement: 1e-2, 1e-4
- Rationale: trades bias for variance.
- Metrics: accuracy

### 2. In-place trick
- Ablated part: in-place perturbation
- Action: REMOVE (store z instead)
- Metrics: accuracy, memory usage
"""

BOLD_INSIDE = """\
**Ablation 1: Batch size**
* **Ablated Part:** batch size
* **Action:** REPLACE
* **Replacement:** [4, 64]
* **Metrics:** accuracy

**Ablation 2: Optimizer**
* **Ablated Part:** optimizer
* **Action:** REPLACE
* **Replacement:**
    * ZO-Adam
    * Adam (beta1=0.9, beta2=0.999)
* **Metrics:** accuracy
"""

NUMBERED_ITEMS = """\
Ablations:

1. **Number of directions**
   - Ablated part: number of z samples per step
   - Action: replace
   - Replacement: 2; 8
2. **No prompt**
   - Ablated part: prompt template
   - Action: remove
"""


def test_markdown_with_plain_labels_numbered_headings_and_no_wrapper():
    plan = load_plan(PLAIN_NUMBERED, filename="p.md", baseline=BASE)
    assert _parts(plan) == [
        ("Perturbation scale", "perturbation scale epsilon", "REPLACE", ["1e-2", "1e-4"]),
        ("In-place trick", "in-place perturbation", "REMOVE", []),
    ]
    assert plan.name == "A plan without any wrapper"
    assert plan.description == "Intro paragraph that says what the method does."
    assert plan.ablations[1].metrics == ["accuracy", "peak_memory"]


def test_markdown_with_the_colon_inside_the_bold_and_bold_titles():
    plan = load_plan(BOLD_INSIDE, filename="p.md", baseline=BASE)
    assert _parts(plan) == [
        ("Ablation 1: Batch size", "batch size", "REPLACE", ["4", "64"]),
        ("Ablation 2: Optimizer", "optimizer", "REPLACE", ["ZO-Adam", "Adam (beta1=0.9, beta2=0.999)"]),
    ]


def test_markdown_numbered_items_with_indented_plain_fields():
    plan = load_plan(NUMBERED_ITEMS, filename="p.md", baseline=BASE)
    assert _parts(plan) == [
        ("Number of directions", "number of z samples per step", "REPLACE", ["2", "8"]),
        ("No prompt", "prompt template", "REMOVE", []),
    ]


def test_markdown_inline_lists_keep_commas_inside_brackets():
    text = "### Betas\n- **Ablated Part**: Adam betas\n- **Action**: REPLACE\n" \
           "- **Replacement**: (0.9, 0.99), (0.8, 0.999)\n"
    plan = load_plan(text, filename="p.md", baseline=BASE)
    assert plan.ablations[0].replacement == ["(0.9, 0.99)", "(0.8, 0.999)"]


def test_markdown_component_label_that_is_no_zolab_key_is_the_ablated_part():
    text = "### Sweep\n- **Component**: perturbation magnitude\n- **Action**: REPLACE\n- **Replacement**: 0.1\n"
    plan = load_plan(text, filename="p.md", baseline=BASE)
    assert (plan.ablations[0].ablated_part, plan.ablations[0].component) == ("perturbation magnitude", None)
    keyed = text.replace("perturbation magnitude", "eps").replace("### Sweep\n", "### Sweep\n- Ablated part: x\n")
    assert load_plan(keyed, filename="p.md", baseline=BASE).ablations[0].component == "eps"


def test_markdown_errors_still_name_the_line():
    broken = PLAIN_NUMBERED.replace("- Action: replace", "- Action: swap")
    with pytest.raises(PlanError) as err:
        load_plan(broken, filename="p.md", baseline=BASE)
    assert (err.value.file, err.value.line, err.value.field) == ("p.md", 9, "ablations[0].action")
    with pytest.raises(PlanError) as err:
        load_plan("# notes\n\njust text\n", filename="p.md", baseline=BASE)
    assert err.value.line == 1 and "no ablations found" in str(err.value)


@pytest.mark.parametrize("text,expected", [
    (RESPONSE, "ablationbench"), (PLAIN_NUMBERED, "markdown"), (BOLD_INSIDE, "markdown"),
    (NUMBERED_ITEMS, "markdown"), ("zolab: 1\nname: x\nablations: []\n", "yaml"),
    ('{"name": "a"}\n', "jsonl"),
])
def test_format_detection_of_the_new_styles(text, expected):
    assert detect_format(text, "plan.txt") == expected
    assert detect_format(text, None) == expected
