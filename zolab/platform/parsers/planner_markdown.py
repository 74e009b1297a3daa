"""LM-planner markdown: the "Ablation Plan" section of a planner trajectory, HTML wrappers and all.

The seed files wrap markdown in ``<div>`` boxes with ``<h2>`` titles. The plan section starts at a
heading (markdown ``#..`` or HTML ``<hN>``) containing "Ablation Plan" and ends at the closing
``</div>``, the next top-level heading or the end of the file. Inside it::

    ### Ablation of Perturbation Scale
    - **Ablated Part**: Perturbation scale
    - **Action**: REPLACE
    - **Replacement**:
      - 0.1
      - 0.5
    - **Metrics**: accuracy, F1

The plan's name is the first ``# `` heading; its description is the "Reasoning Trace" box as text.
"""

from __future__ import annotations

import html
import re
from pathlib import PurePath
from typing import Any

from zolab.platform.errors import PlanError
from zolab.platform.parsers.defaults import with_defaults
from zolab.platform.plan import Plan, validate_plan

_PLAN_HEADING = re.compile(r"^\s*(?:#{1,6}\s+.*\bablation\s+plan\b|<h[1-6][^>]*>.*\bablation\s+plan\b.*</h[1-6]>)", re.IGNORECASE)
_TRACE_HEADING = re.compile(r"^\s*(?:#{1,6}\s+.*\breasoning\s+trace\b|<h[1-6][^>]*>.*\breasoning\s+trace\b.*</h[1-6]>)", re.IGNORECASE)
_SECTION_END = re.compile(r"^\s*(?:</div>|#{1,2}\s|<h[12][\s>])", re.IGNORECASE)
_TITLE = re.compile(r"^\s*###\s+(.+?)\s*#*\s*$")
_FIELD = re.compile(r"^(\s*)[-*+]\s+\*\*([^*]+?)\*\*\s*:?\s*(.*)$")
_ITEM = re.compile(r"^(\s*)[-*+]\s+(.*)$")
_H1 = re.compile(r"^#\s+(.+?)\s*$")
_TAG = re.compile(r"<[^>]+>")
_EMPTY = {"", "none", "n/a", "na", "-", "null"}
_FIELD_NAMES = {
    "ablated part": "ablated_part", "ablated component": "ablated_part", "part": "ablated_part",
    "action": "action", "replacement": "replacement", "replacements": "replacement",
    "metrics": "metrics", "metric": "metrics", "component": "component", "name": "name",
}
_LIST_FIELDS = {"replacement", "metrics"}


def _clean(text: str) -> str:
    text = html.unescape(_TAG.sub("", text)).strip()
    return text.strip("`").strip()


def _field_key(label: str) -> str:
    norm = " ".join(label.strip().rstrip(":").lower().split())
    return _FIELD_NAMES.get(norm, norm.replace(" ", "_"))


def _split_inline(value: str) -> list[str]:
    return [p for p in (_clean(x) for x in value.split(",")) if p.lower() not in _EMPTY]


def _section(lines: list[str], heading: re.Pattern[str]) -> tuple[int, int] | None:
    """(first line index after the heading, end index) of a section."""
    for i, line in enumerate(lines):
        if heading.search(line):
            end = i + 1
            while end < len(lines) and not _SECTION_END.search(lines[end]):
                end += 1
            return i + 1, end
    return None


def _description(lines: list[str]) -> str:
    span = _section(lines, _TRACE_HEADING)
    if span is None:
        return ""
    paragraphs, current = [], []
    for line in lines[span[0]:span[1]]:
        text = _clean(line)
        if text:
            current.append(text)
        elif current:
            paragraphs.append(" ".join(current))
            current = []
    if current:
        paragraphs.append(" ".join(current))
    return "\n\n".join(paragraphs)


def _ablations(lines: list[str], start: int, end: int, file: str | None):
    ablations: list[dict[str, Any]] = []
    marks: dict[tuple[Any, ...], tuple[int, int]] = {}
    current: dict[str, Any] | None = None
    field: tuple[str, int] | None = None  # (key, indent of its bullet)
    for idx in range(start, end):
        raw = lines[idx]
        lineno = idx + 1
        if m := _TITLE.match(raw):
            current = {"name": _clean(m.group(1))}
            ablations.append(current)
            i = len(ablations) - 1
            marks[("ablations", i)] = marks[("ablations", i, "name")] = (lineno, raw.index("#") + 1)
            field = None
            continue
        if current is None or not raw.strip():
            continue
        i = len(ablations) - 1
        if m := _FIELD.match(raw):
            key = _field_key(m.group(2))
            value = m.group(3)
            marks[("ablations", i, key)] = (lineno, len(m.group(1)) + 1)
            if key in _LIST_FIELDS:
                current[key] = _split_inline(value)
            else:
                current[key] = _clean(value)
            field = (key, len(m.group(1)))
            continue
        if (m := _ITEM.match(raw)) and field is not None and len(m.group(1)) > field[1]:
            key = field[0]
            item = _clean(m.group(2))
            if key in _LIST_FIELDS:
                if item.lower() not in _EMPTY:
                    current.setdefault(key, [])
                    marks[("ablations", i, key, len(current[key]))] = (lineno, len(m.group(1)) + 1)
                    current[key].append(item)
            else:  # a sub-bullet under a text field continues it
                current[key] = (str(current.get(key, "")) + " " + item).strip()
            continue
        if field is not None and raw.startswith((" ", "\t")):  # wrapped continuation line
            key = field[0]
            if key not in _LIST_FIELDS:
                current[key] = (str(current.get(key, "")) + " " + _clean(raw)).strip()
    for ab in ablations:  # a REMOVE without a replacement line is a normal case
        if ab.get("replacement") == []:
            ab["replacement"] = None
    return ablations, marks


def parse_planner_markdown(text: str, *, file: str | None, defaults: dict[str, Any],
                           tasks: list[str] | None = None, seeds: list[int] | None = None) -> Plan:
    lines = text.splitlines()
    span = _section(lines, _PLAN_HEADING)
    if span is None:
        raise PlanError.single(
            "no 'Ablation Plan' section: expected a heading such as '## Ablation Plan' followed by "
            "'### <title>' blocks with '- **Ablated Part**:', '- **Action**:' ... bullets",
            file=file, line=1, column=1,
        )
    ablations, marks = _ablations(lines, span[0], span[1], file)
    if not ablations:
        raise PlanError.single(
            "the 'Ablation Plan' section holds no ablations ('### <title>' lines)", file=file, line=span[0], column=1
        )
    name = next((_clean(m.group(1)) for line in lines if (m := _H1.match(line))), None)
    name = name or (PurePath(file).stem if file else "planner-plan")
    document = {"name": name, "ablations": ablations}
    description = _description(lines)
    if description:
        document["description"] = description
    data = with_defaults(document, defaults, tasks, seeds)
    return validate_plan(data, file=file, locator=lambda loc: marks.get(tuple(loc)), marks=marks)
