"""How well the component resolver reads the corpus (issue 13): precision, recall, ambiguous and
unresolved rates per component, per format and per corpus half.

    PYTHONPATH=. python benchmarks/resolver_report.py [--json out.json] [--wrong] [--half NAME ...]

The corpus is ``tests/platform/resolver_corpus/`` (see its README): single cases written out in
their format (YAML, AblationBench JSONL, planner markdown, raw planner response) and whole
documents, each ablation with the reading a careful reader gives it. Every case goes through the
real parser (:func:`zolab.platform.parsers.load_source`) and :func:`resolve_plan`.

Definitions (per group of cases):

* *read as expected*: the status is an expected one and, where given, the component and the
  changes (compared without the keys equal to the baseline) match;
* *silent wrong*: the resolver says ``resolved``/``inverted`` but the changes are not the
  expected ones (including cases that should not run at all): the failure that must be zero;
* *precision*: of the cases the resolver runs (resolved/inverted), the share with the expected
  changes (1 - silent wrong / runs; *read as expected* also checks the component named); *recall*: of the cases that should run, the share that run as expected;
* *ambiguous* / *unresolved*: the share of cases the resolver left for the user to pick;
* *refused*: the parser refused the whole plan (each of its ablations counts as not read as
  expected); a case whose ``expect`` gives ``metrics`` is read as expected only when the plan
  stores exactly those metric keys for it.

``tests/platform/test_resolver_corpus.py`` asserts the thresholds; this script prints the figures.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "platform" / "resolver_corpus"
FORMATS = ("yaml", "jsonl", "markdown", "ablationbench")
_EXT = {"yaml": "yaml", "jsonl": "jsonl", "markdown": "md", "ablationbench": "txt"}
RUNNABLE = ("resolved", "inverted")


# ---------------------------------------------------------------------------------------------
# the corpus
# ---------------------------------------------------------------------------------------------
@dataclass
class Case:
    """One ablation with its expectation; ``source`` is the text the parser reads."""

    id: str
    half: str
    format: str
    name: str
    expect: dict[str, Any]
    source: str
    filename: str
    defaults: dict[str, Any]
    document: str | None = None     # the document it belongs to (None: a single case)


def corpus_defaults(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    data = yaml.safe_load((CORPUS / "baseline.yaml").read_text(encoding="utf-8"))
    data.pop("zolab", None)
    if overrides:
        data["baseline"] = {**data["baseline"], **overrides}
    return data


def _ablation(case: dict[str, Any]) -> dict[str, Any]:
    out = {"name": case["name"], "ablated_part": case["ablated_part"], "action": case["action"]}
    if case.get("replacement") is not None:
        out["replacement"] = case["replacement"]
    out["metrics"] = list(case.get("metrics") or ["accuracy"])
    return out


def _markdown_items(replacement: Any) -> list[str]:
    if isinstance(replacement, dict):
        return [f"{k}: {x}" for k, v in replacement.items() for x in (v if isinstance(v, list) else [v])]
    if isinstance(replacement, list):
        return [str(x) for x in replacement]
    return [str(replacement)]


def render(case: dict[str, Any], defaults: dict[str, Any]) -> str:
    """The single case written out in its format, as that format's planners write it."""
    ab = _ablation(case)
    fmt = case["format"]
    if fmt == "yaml":
        return yaml.safe_dump({"zolab": 1, "name": f"case-{case['id']}", **copy.deepcopy(defaults),
                               "ablations": [ab]}, sort_keys=False, allow_unicode=True)
    line = json.dumps(ab, ensure_ascii=False)
    if fmt == "jsonl":
        return line + "\n"
    if fmt == "ablationbench":
        return (f"<discussion>\nOne ablation of the method: {case['name']}.\n</discussion>\n\n"
                f"<predictions>\n{line}\n</predictions>\n")
    lines = [f"# case {case['id']}", "", "## Ablation Plan", "", f"### {case['name']}",
             f"- **Ablated Part**: {case['ablated_part']}", f"- **Action**: {case['action']}"]
    if case.get("replacement") is not None:
        lines.append("- **Replacement**:")
        lines += [f"  - {item}" for item in _markdown_items(case["replacement"])]
    lines.append(f"- **Metrics**: {', '.join(ab['metrics'])}")
    return "\n".join(lines) + "\n"


#: the corpus halves the test and the report read by default (blind*: written before the rules they
#: measure, each first-run figure in benchmarks/results/)
HALVES = ("heldout", "dev", "blind2", "blind3")


def load_cases(halves: tuple[str, ...] = HALVES) -> list[Case]:
    cases: list[Case] = []
    for half in halves:
        path = CORPUS / f"{half}.yaml"
        if path.exists():
            for c in yaml.safe_load(path.read_text(encoding="utf-8"))["cases"]:
                defaults = corpus_defaults(c.get("baseline"))
                cases.append(Case(c["id"], half, c["format"], c["name"], c["expect"], render(c, defaults),
                                  f"{c['id']}.{_EXT[c['format']]}", defaults))
        for doc in sorted((CORPUS / "documents" / half).glob("*")):
            if doc.name.endswith(".expect.yaml"):
                continue
            spec = yaml.safe_load(doc.with_name(doc.stem + ".expect.yaml").read_text(encoding="utf-8"))
            defaults = corpus_defaults(spec.get("baseline"))
            text = doc.read_text(encoding="utf-8")
            for name, expect in spec["ablations"].items():
                cases.append(Case(f"{half}/{doc.name}#{name}", half, spec["format"], name, expect, text, doc.name,
                                  defaults, document=str(doc.relative_to(CORPUS))))
    return cases


# ---------------------------------------------------------------------------------------------
# reading it
# ---------------------------------------------------------------------------------------------
def _close(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) \
            and not isinstance(b, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-15)
    return a == b


def normalise_changes(variants: list[dict[str, Any]], base: dict[str, Any]) -> list[dict[str, Any]]:
    """Each variant without the keys equal to the baseline (``{}`` = a value equal to the baseline)."""
    return [{k: v for k, v in ch.items() if not _close(base.get(k), v)} for ch in variants]


def same_changes(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    return len(a) == len(b) and all(set(x) == set(y) and all(_close(x[k], y[k]) for k in x) for x, y in zip(a, b))


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@dataclass
class Outcome:
    case: str
    half: str
    format: str
    expected_component: str
    expected_status: list[str]
    status: str
    component: str | None
    changes: list[dict[str, Any]]
    correct: bool
    silent_wrong: bool
    explanation: str
    candidates: list[str] = field(default_factory=list)
    action: str = ""


def judge(case: Case, resolution: Any, base: dict[str, Any], metrics: list[str] | None = None) -> Outcome:
    """``metrics``: the metric keys the plan stores for the ablation (checked when ``expect`` has them)."""
    exp = case.expect
    statuses = _as_list(exp["status"])
    components = _as_list(exp["component"]) if exp.get("component") is not None else []
    changes = normalise_changes([c for _, c in resolution.variants], base)
    ok = resolution.status in statuses and (not components or resolution.component in components)
    if "metrics" in exp and metrics is not None:
        ok = ok and list(metrics) == list(exp["metrics"])
    if ok and "changes" in exp and resolution.status in RUNNABLE:
        ok = same_changes(changes, normalise_changes(exp["changes"], base))
    runs_expected = any(s in RUNNABLE for s in statuses) and "changes" in exp and \
        same_changes(changes, normalise_changes(exp.get("changes", []), base))
    silent = resolution.status in RUNNABLE and not (resolution.status in statuses and runs_expected)
    return Outcome(case.id, case.half, case.format, components[0] if components else "(none)", statuses,
                   resolution.status, resolution.component, changes, ok, silent, resolution.explanation,
                   [c.component for c in resolution.candidates])


def _refused(case: Case, error: Exception) -> Outcome:
    exp = case.expect
    components = _as_list(exp["component"]) if exp.get("component") is not None else []
    return Outcome(case.id, case.half, case.format, components[0] if components else "(none)",
                   _as_list(exp["status"]), "refused", None, [], False, False, f"plan refused: {error}")


def evaluate(cases: list[Case]) -> list[Outcome]:
    """Parse and resolve every case (documents once each) and judge it."""
    from zolab.platform.errors import PlanError
    from zolab.platform.parsers import load_source
    from zolab.platform.resolver import resolve_plan

    cache: dict[tuple[str, str], dict[str, Any] | PlanError] = {}
    out = []
    for case in cases:
        key = (case.document or case.id, case.half)
        if key not in cache:
            try:
                loaded = load_source(case.source, filename=case.filename, fmt=case.format, baseline=case.defaults)
            except PlanError as exc:
                cache[key] = exc
            else:
                base = loaded.plan.baseline.model_dump()
                cache[key] = {"base": base, "res": {r.ablation: r for r in resolve_plan(loaded.plan)},
                              "action": {a.name: a.action.value for a in loaded.plan.ablations},
                              "metrics": {a.name: list(a.metrics or []) for a in loaded.plan.ablations}}
        entry = cache[key]
        if isinstance(entry, PlanError):
            out.append(_refused(case, entry))
            continue
        outcome = judge(case, entry["res"][case.name], entry["base"], entry["metrics"][case.name])
        outcome.action = entry["action"][case.name]
        out.append(outcome)
    return out


# ---------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------
def figures(outcomes: list[Outcome]) -> dict[str, Any]:
    n = len(outcomes)
    ran = [o for o in outcomes if o.status in RUNNABLE]
    should_run = [o for o in outcomes if any(s in RUNNABLE for s in o.expected_status)]
    return {
        "n": n,
        "expected": sum(o.correct for o in outcomes) / n if n else math.nan,
        "precision": sum(not o.silent_wrong for o in ran) / len(ran) if ran else math.nan,
        "recall": sum(o.correct for o in should_run) / len(should_run) if should_run else math.nan,
        "ambiguous": sum(o.status == "ambiguous" for o in outcomes) / n if n else math.nan,
        "unresolved": sum(o.status == "unresolved" for o in outcomes) / n if n else math.nan,
        "refused": sum(o.status == "refused" for o in outcomes) / n if n else math.nan,
        "silent_wrong": sum(o.silent_wrong for o in outcomes),
    }


def grouped(outcomes: list[Outcome], key: str) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        groups[getattr(o, key)].append(o)
    return {k: figures(v) for k, v in sorted(groups.items())}


def report(outcomes: list[Outcome]) -> dict[str, Any]:
    return {"overall": figures(outcomes), "by_half": grouped(outcomes, "half"),
            "by_format": grouped(outcomes, "format"), "by_component": grouped(outcomes, "expected_component")}


def _pct(x: float) -> str:
    return "  -  " if isinstance(x, float) and math.isnan(x) else f"{100 * x:5.1f}"


def table(title: str, rows: dict[str, dict[str, Any]]) -> str:
    header = (f"{'':24} {'n':>4} {'expect%':>8} {'prec%':>6} {'recall%':>7} {'ambig%':>6} "
              f"{'unres%':>6} {'refus%':>6} {'silent':>6}")
    lines = [f"\n{title}", header]
    for name, f in rows.items():
        lines.append(f"{name:24} {f['n']:4d} {_pct(f['expected']):>8} {_pct(f['precision']):>6} "
                     f"{_pct(f['recall']):>7} {_pct(f['ambiguous']):>6} {_pct(f['unresolved']):>6} "
                     f"{_pct(f['refused']):>6} {f['silent_wrong']:6d}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="also write the figures (and every outcome) as JSON")
    parser.add_argument("--wrong", action="store_true", help="list the cases not read as expected")
    parser.add_argument("--half", action="append", help=f"corpus half to read (repeatable; default: {', '.join(HALVES)})")
    args = parser.parse_args(argv)
    outcomes = evaluate(load_cases(tuple(args.half) if args.half else HALVES))
    rep = report(outcomes)
    print(table("overall", {"all": rep["overall"]}))
    print(table("by corpus half (heldout, blind*: written before tuning)", rep["by_half"]))
    print(table("by format", rep["by_format"]))
    print(table("by expected component", rep["by_component"]))
    if args.wrong:
        print("\nnot read as expected:")
        for o in outcomes:
            if not o.correct:
                flag = "SILENT " if o.silent_wrong else ""
                print(f"  {flag}{o.case}: expected {o.expected_status}/{o.expected_component}, got {o.status}/"
                      f"{o.component} {o.changes} -- {o.explanation[:160]}")
    if args.json:
        args.json.write_text(json.dumps({**rep, "outcomes": [asdict(o) for o in outcomes]}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
