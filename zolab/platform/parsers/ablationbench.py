"""AblationBench JSON lines: one ablation per line.

``{"name", "ablated_part", "action", "replacement", "metrics"}`` (``replacement`` a list, a mapping,
a string or null; an optional ``component``). Blank lines are skipped; a bad line is reported with
its line number (and the JSON decoder's column). Mapping replacements are made into lists
(:mod:`zolab.platform.parsers.replacement`).
"""

from __future__ import annotations

import json
from pathlib import PurePath
from typing import Any

from zolab.platform.errors import Issue, PlanError
from zolab.platform.parsers.defaults import with_defaults
from zolab.platform.parsers.replacement import normalise_ablations
from zolab.platform.plan import Plan, validate_plan

Marks = dict[tuple[Any, ...], tuple[int, int]]


def plan_from_items(items: list[Any], marks: Marks, *, file: str | None, defaults: dict[str, Any],
                    tasks: list[str] | None, seeds: list[int] | None, name: str,
                    description: str = "") -> Plan:
    """Validate decoded ablation objects (with their marks) as a plan over the defaults."""
    document: dict[str, Any] = {"name": name, "ablations": normalise_ablations(items)}
    if description:
        document["description"] = description
    data = with_defaults(document, defaults, tasks, seeds)
    return validate_plan(data, file=file, locator=lambda loc: marks.get(tuple(loc)), marks=marks)


def parse_ablationbench(text: str, *, file: str | None, defaults: dict[str, Any],
                        tasks: list[str] | None = None, seeds: list[int] | None = None) -> Plan:
    ablations: list[Any] = []
    marks: Marks = {}
    issues: list[Issue] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
        except json.JSONDecodeError as exc:
            issues.append(Issue(f"invalid JSON: {exc.msg}", file, lineno, exc.colno))
            continue
        except RecursionError:  # "[[[[..." thousands deep
            issues.append(Issue("invalid JSON: nested too deeply", file, lineno, 1))
            continue
        except ValueError as exc:  # e.g. an integer over Python's 4300-digit conversion limit
            issues.append(Issue(f"invalid JSON: {exc}", file, lineno, 1))
            continue
        if not isinstance(item, dict):
            issues.append(Issue(f"each line must be a JSON object, got {type(item).__name__}", file, lineno, 1))
            continue
        index = len(ablations)
        marks[("ablations", index)] = (lineno, 1)
        for key in item:
            col = raw.find(json.dumps(key))
            marks[("ablations", index, key)] = (lineno, col + 1 if col >= 0 else 1)
        ablations.append(item)
    if issues:
        raise PlanError(issues)
    if not ablations:
        raise PlanError.single("no ablations: the file has no JSON lines", file=file, line=1)
    name = PurePath(file).stem if file else "ablationbench-plan"
    return plan_from_items(ablations, marks, file=file, defaults=defaults, tasks=tasks, seeds=seeds, name=name)
