"""Property: any plan rendered as YAML, JSONL or markdown parses back to an equal Plan."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zolab.platform.parsers import load_plan
from zolab.platform.parsers.render import defaults_of, to_jsonl, to_markdown, to_yaml
from zolab.platform.plan import METRICS, validate_plan

ROOT = Path(__file__).resolve().parents[2]
FIX = Path(__file__).parent / "fixtures"

_word = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFXYZ0123456789-.'", min_size=2, max_size=12).filter(
    lambda w: w.lower() not in {"none", "null", "n/a"} and not w.startswith(("-", ".")))
_phrase = st.lists(_word, min_size=1, max_size=4).map(" ".join)
_ablation = st.fixed_dictionaries({
    "ablated_part": _phrase,
    "action": st.sampled_from(["REPLACE", "REMOVE", "ADD", "replace", "Remove"]),
    "replacement": st.lists(_phrase, max_size=3),
    "metrics": st.lists(st.sampled_from(METRICS), min_size=1, max_size=3, unique=True),
    "component": st.one_of(st.none(), st.sampled_from(["eps", "optimizer", "peft"])),
})


@st.composite
def plans(draw):
    names = draw(st.lists(_phrase, min_size=1, max_size=4, unique_by=str.casefold))
    ablations = []
    for name in names:
        ab = dict(draw(_ablation), name=name)
        if ab["action"].upper() == "REPLACE" and not ab["replacement"]:
            ab["replacement"] = ["0.1"]
        if ab["component"] is None:
            del ab["component"]
        ablations.append(ab)
    return validate_plan({
        "name": draw(_phrase), "tasks": draw(st.lists(_word, min_size=1, max_size=2, unique=True)),
        "seeds": draw(st.lists(st.integers(0, 10_000), min_size=1, max_size=3, unique=True)),
        "baseline": {"lr": draw(st.floats(1e-7, 1e-1)), "eps": draw(st.floats(1e-5, 1.0)),
                     "n_samples": draw(st.integers(1, 8))},
        "ablations": ablations,
    })


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=plans())
def test_three_renderings_parse_back_equal(plan):
    defaults = defaults_of(plan)
    assert load_plan(to_yaml(plan), filename="p.yaml") == plan
    jsonl = load_plan(to_jsonl(plan), filename=f"{plan.name}.jsonl", baseline=defaults)
    jsonl.name = plan.name  # JSONL has no name of its own: the file name gives it
    assert jsonl == plan
    assert load_plan(to_markdown(plan), filename="p.md", baseline=defaults) == plan


@pytest.mark.parametrize("path", [ROOT / "ablations" / "seed-000-mezo.yaml", ROOT / "ablations" / "quickstart.yaml",
                                  FIX / "planner_001.md"])
def test_shipped_plans_round_trip(path):
    plan = load_plan(path)
    again = load_plan(to_markdown(plan), filename="x.md", baseline=defaults_of(plan))
    assert again == plan
