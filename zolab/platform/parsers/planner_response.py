"""The raw AblationBench planner response: a ``<discussion>`` block, then ``<predictions>`` JSON lines.

This is what the AblationBench LM planner answers (its prompt asks for exactly these two fields)::

    <discussion>
    step-by-step reasoning ...
    </discussion>

    <predictions>
    {"name": "Ablation A", "ablated_part": "...", "action": "REMOVE", "metrics": ["accuracy"]}
    {"name": "Ablation B", "ablated_part": "...", "action": "REPLACE", "replacement": ["x", "y"], ...}
    </predictions>

The discussion becomes the plan's description. Inside the predictions block the objects are read
one after another wherever they start, so the ways models bend the format still parse: a markdown
code fence around the lines, a JSON array instead of lines, trailing commas, an object spread over
several lines, a missing closing tag. A broken object is an error naming its line and column in the
file, and text outside the tags (a preamble) is ignored.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import PurePath
from typing import Any

from zolab.platform.errors import Issue, PlanError
from zolab.platform.parsers.ablationbench import Marks, plan_from_items
from zolab.platform.plan import Plan

_DISCUSSION = re.compile(r"<discussion>(.*?)(?:</discussion>|(?=<predictions>)|\Z)", re.IGNORECASE | re.DOTALL)
_PREDICTIONS = re.compile(r"<predictions>(.*?)(?:</predictions>|\Z)", re.IGNORECASE | re.DOTALL)
#: between objects: whitespace, list punctuation and markdown code fences
_FILLER = re.compile(r"(?:\s+|,|\[|\]|```[A-Za-z]*)+")


def looks_like_response(text: str) -> bool:
    """Whether ``text`` is a planner response (it has a ``<predictions>`` tag)."""
    return bool(re.search(r"<predictions>", text, re.IGNORECASE))


def _position(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _objects(text: str, start: int, end: int, file: str | None) -> tuple[list[Any], Marks]:
    decoder = json.JSONDecoder()
    items: list[Any] = []
    marks: Marks = {}
    issues: list[Issue] = []
    pos = start
    while pos < end:
        if m := _FILLER.match(text, pos, end):
            pos = m.end()
            continue
        line, col = _position(text, pos)
        if text[pos] != "{":
            stop = text.find("\n", pos, end)
            stop = end if stop < 0 else stop
            issues.append(Issue(f"expected a JSON object, got {text[pos:stop].strip()[:40]!r}", file, line, col))
            pos = stop
            continue
        try:
            item, after = decoder.raw_decode(text[:end], pos)
        except json.JSONDecodeError as exc:
            issues.append(Issue(f"invalid JSON: {exc.msg}", file, *_position(text, exc.pos)))
            stop = text.find("\n", exc.pos, end)
            pos = end if stop < 0 else stop
            continue
        except (RecursionError, ValueError) as exc:
            issues.append(Issue(f"invalid JSON: {exc if isinstance(exc, ValueError) else 'nested too deeply'}",
                                file, line, col))
            break
        index = len(items)
        marks[("ablations", index)] = (line, col)
        if isinstance(item, dict):
            for key in item:
                at = text.find(json.dumps(key), pos, after)
                marks[("ablations", index, key)] = _position(text, at) if at >= 0 else (line, col)
        items.append(item)
        pos = after
    if issues:
        raise PlanError(issues)
    return items, marks


def parse_planner_response(text: str, *, file: str | None, defaults: dict[str, Any],
                           tasks: list[str] | None = None, seeds: list[int] | None = None) -> Plan:
    found = _PREDICTIONS.search(text)
    if found is None:
        raise PlanError.single("no <predictions> block: a planner response has <discussion>...</discussion> "
                               "then <predictions> with one JSON object per line", file=file, line=1, column=1)
    items, marks = _objects(text, found.start(1), found.end(1), file)
    if not items:
        raise PlanError.single("the <predictions> block holds no JSON objects", file=file,
                               line=_position(text, found.start())[0], column=1)
    discussion = _DISCUSSION.search(text)
    description = textwrap.dedent(discussion.group(1)).strip() if discussion else ""
    name = PurePath(file).stem if file else "planner-response"
    return plan_from_items(items, marks, file=file, defaults=defaults, tasks=tasks, seeds=seeds, name=name,
                           description=description)
