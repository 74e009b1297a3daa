"""LM-planner markdown: ablation blocks in the styles planners write, HTML wrappers and all.

The seed files wrap markdown in ``<div>`` boxes with ``<h2>`` titles; other planners write plain
markdown. An ablation is a *title* followed by *field* lines, wherever it sits in the document
(except inside the "Reasoning Trace" box, which becomes the plan's description)::

    ### Ablation of Perturbation Scale          ## 2. Perturbation scale        **Ablation 3: Batch size**
    - **Ablated Part**: Perturbation scale      - Ablated part: epsilon         * **Ablated Part:** batch size
    - **Action**: REPLACE                       - Action: replace               * **Action:** REPLACE
    - **Replacement**:                          - Replacement: 1e-2, 1e-4       * **Replacement:** [4, 64]
      - 0.1
      - 0.5
    - **Metrics**: accuracy, F1

A plan may also be one markdown table, a row per ablation, its header naming the fields (``| # |
Name | Ablated part | Action | Replacement | Metrics |``; a column the parser does not know is
skipped, a ``#`` column too).

Titles are markdown headings, HTML ``<hN>`` headings, bold-only lines or numbered items; field
labels are bold or plain, with the colon inside or outside the bold; list fields take inline lists
(commas or semicolons outside brackets, optionally in ``[...]``) or deeper bullets. Numbering that
runs 1, 2, 3 over every title is dropped from the names. Labels that planners add for their own
reasons ("Rationale", "Expected outcome") are skipped; a label one typo away from a field is an
error that says which field was meant.

The plan's name is the first ``# `` heading; its description is the "Reasoning Trace" box as text,
else the paragraphs before the first ablation.
"""

from __future__ import annotations

import difflib
import html
import re
from pathlib import PurePath
from typing import Any

from zolab.platform.errors import PlanError
from zolab.platform.parsers.defaults import with_defaults
from zolab.platform.parsers.replacement import normalise_ablations
from zolab.platform.plan import Plan, validate_plan

_TRACE_HEADING = re.compile(
    r"^\s*(?:#{1,6}\s+.*\b(?:reasoning\s+trace|reasoning|discussion)\b|"
    r"<h[1-6][^>]*>.*\b(?:reasoning\s+trace|reasoning|discussion)\b.*</h[1-6]>)", re.IGNORECASE)
_TRACE_END = re.compile(r"^\s*(?:</div>|#{1,6}\s|<h[1-6][\s>])", re.IGNORECASE)
_HEADING = re.compile(r"^\s*#{1,6}\s+(?P<t>.+?)\s*#*\s*$")
_HTML_HEADING = re.compile(r"^\s*<h[1-6][^>]*>(?P<t>.*?)</h[1-6]>\s*$", re.IGNORECASE)
_BOLD_LINE = re.compile(r"^\s*(?:[-*+]\s+|\d+[.)]\s+)?(?:\*\*|__)(?P<t>[^*_].*?)(?:\*\*|__)\s*:?\s*$")
_NUMBERED = re.compile(r"^(?P<t>\d+[.)]\s+\S.*)$")  # at column 0 only
_FIELD = re.compile(
    r"^(?P<indent>\s*)(?:[-*+\u2022]\s+|\d+[.)]\s+)?(?P<b1>\*\*|__)?\s*(?P<label>[A-Za-z][A-Za-z ()/_'-]{0,40}?)\s*"
    r"(?::\s*(?P<b2>\*\*|__)|(?P<b3>\*\*|__)\s*:|:)\s*(?P<value>.*)$")
_ITEM = re.compile(r"^(?P<indent>\s*)(?:[-*+\u2022]|\d+[.)])\s+(?P<value>.*)$")
_ENUM = re.compile(r"^\s*(?:[A-Za-z]{1,2}-?)?(\d+)[.):]\s+")  # "3. ", "A3. ", "E-3: " (not "Ablation 3: ")
#: an inline value written as one sentence ("Use a cosine schedule, with 500 warmup steps."): not a list
_SENTENCE_WORDS = 8
_H1 = re.compile(r"^#\s+(.+?)\s*$")
_TAG = re.compile(r"<[^>]+>")
_EMPTY = {"", "none", "n/a", "na", "-", "null", "(none)", "not applicable"}
_ACTION_WORD = re.compile(r"^\W*(replace|remove|add)\b", re.IGNORECASE)
_FIELD_NAMES = {
    "ablated part": "ablated_part", "ablated component": "ablated_part", "part": "ablated_part",
    "ablated element": "ablated_part", "component ablated": "ablated_part", "target": "ablated_part",
    "ablation target": "ablated_part", "what is ablated": "ablated_part", "ablated part(s)": "ablated_part",
    "action": "action", "operation": "action", "type": "action", "action type": "action",
    "replacement": "replacement", "replacements": "replacement", "replacement values": "replacement",
    "replace with": "replacement", "values": "replacement", "alternatives": "replacement",
    "replacement(s)": "replacement", "options": "replacement", "variants": "replacement",
    "metrics": "metrics", "metric": "metrics", "evaluation metrics": "metrics", "metrics to report": "metrics",
    "component": "component", "name": "name", "title": "name", "ablation name": "name",
}
#: labels planners add for their own reasons: skipped, not errors
_IGNORED = ("rationale", "reason", "reasoning", "motivation", "hypothesis", "expected outcome", "expected result",
            "expected results", "expected impact", "justification", "purpose", "description", "notes", "note",
            "details", "setup", "procedure", "why", "goal", "objective of the ablation", "implementation",
            "baseline", "comparison", "analysis", "importance", "priority", "cost", "risk", "objective", "aim",
            "focus", "research question", "expected effect", "intuition")
_LIST_FIELDS = {"replacement", "metrics"}
_TABLE_ROW = re.compile(r"^\s*\|(?P<cells>.*)\|\s*$")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(?:\|\s*:?-{2,}:?\s*)*\|?\s*$")
#: table header words for the ablation's name (a field label elsewhere, a column here)
_NAME_COLUMNS = {"ablation", "ablation name", "name", "title", "ablation title", "experiment"}


def _clean(text: str) -> str:
    text = html.unescape(_TAG.sub("", text)).strip()
    text = re.sub(r"(\*\*|__)(.+?)\1", r"\2", text)
    return text.strip().strip("`").strip()


def _split_inline(value: str) -> list[str]:
    """``a, b; c`` or ``[a, b]`` -> items; separators inside brackets or parentheses do not split, and
    neither do the commas of a value written as a sentence (a full stop after several words)."""
    value = _clean(value)
    if len(value) >= 2 and value[0] == "[" and value[-1] == "]":
        value = value[1:-1]
    elif value.endswith(".") and len(value.split()) >= _SENTENCE_WORDS and value.lower() not in _EMPTY:
        return [value]
    items, depth, current = [], 0, ""
    for ch in value:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        if ch in ",;" and depth == 0:
            items.append(current)
            current = ""
        else:
            current += ch
    items.append(current)
    return [p for p in (_unquote(_clean(x)) for x in items) if p.lower() not in _EMPTY]


def _unquote(text: str) -> str:
    """``'SGD'`` -> ``SGD``: quotes around the whole item only."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1].strip()
    return text


def _label_key(label: str) -> str | None:
    """A field key, ``""`` for a label to skip, None when the line is not a field."""
    norm = " ".join(label.strip().rstrip(":").lower().replace("_", " ").split())
    if norm in _FIELD_NAMES:
        return _FIELD_NAMES[norm]
    if norm in _IGNORED or norm.split(" ")[0] in _IGNORED:
        return ""
    return None


def _typo_of(label: str) -> str | None:
    norm = " ".join(label.strip().lower().replace("_", " ").split())
    close = difflib.get_close_matches(norm, list(_FIELD_NAMES), n=1, cutoff=0.75)
    return close[0] if close else None


def _title(raw: str) -> str | None:
    """The title text if ``raw`` starts an ablation block (heading, bold line, numbered item)."""
    for pattern in (_HEADING, _HTML_HEADING, _BOLD_LINE):
        if m := pattern.match(raw):
            return _clean(m.group("t"))
    if m := _NUMBERED.match(raw):
        return _clean(m.group("t"))
    return None


def _trace_span(lines: list[str]) -> tuple[int, int] | None:
    for i, line in enumerate(lines):
        if _TRACE_HEADING.search(line):
            end = i + 1
            while end < len(lines) and not _TRACE_END.search(lines[end]):
                end += 1
            return i, end
    return None


def _paragraphs(lines: list[str]) -> str:
    paragraphs, current = [], []
    for line in lines:
        text = _clean(line)
        if text and not line.lstrip().startswith(("#", "<", ".", "}", "{")):
            current.append(text)
        elif current:
            paragraphs.append(" ".join(current))
            current = []
    if current:
        paragraphs.append(" ".join(current))
    return "\n\n".join(paragraphs)


class _Blocks:
    """Collects ablation blocks line by line, with the marks pydantic errors are located by."""

    def __init__(self) -> None:
        self.ablations: list[dict[str, Any]] = []
        self.marks: dict[tuple[Any, ...], tuple[int, int]] = {}
        self.typos: list[tuple[int, str, str]] = []  # (ablation index, label, meant field)
        self.titles: list[tuple[str, int, int]] = []  # (title, lineno, column) of the ablation
        self.pending: tuple[str, int, int] | None = None
        self.current: dict[str, Any] | None = None
        self.field: tuple[str, int] | None = None  # (key, indent of its line)

    def title(self, text: str, lineno: int, column: int) -> None:
        self.pending, self.current, self.field = (text, lineno, column), None, None

    def _open(self, lineno: int, column: int) -> int:
        if self.current is None:
            title = self.pending or (f"Ablation {len(self.ablations) + 1}", lineno, column)
            self.current = {}
            self.ablations.append(self.current)
            self.titles.append(title)
            self.marks[("ablations", len(self.ablations) - 1)] = (title[1], title[2])
            self.marks[("ablations", len(self.ablations) - 1, "name")] = (title[1], title[2])
            self.pending = None
        return len(self.ablations) - 1

    def add_field(self, key: str, value: str, lineno: int, indent: int) -> None:
        i = self._open(lineno, indent + 1)
        self.marks[("ablations", i, key)] = (lineno, indent + 1)
        if key in _LIST_FIELDS:
            self.current[key] = _split_inline(value)
        elif key == "action" and (m := _ACTION_WORD.match(_clean(value))):
            self.current[key] = m.group(1).upper()
        else:
            self.current[key] = _clean(value)
        self.field = (key, indent)

    def add_item(self, value: str, lineno: int, indent: int) -> bool:
        """A deeper bullet under the current field; False when it does not belong to one."""
        if self.current is None or self.field is None or indent <= self.field[1]:
            return False
        key = self.field[0]
        item = _clean(value)
        i = len(self.ablations) - 1
        if key in _LIST_FIELDS:
            if item.lower() not in _EMPTY:
                self.current.setdefault(key, [])
                self.marks[("ablations", i, key, len(self.current[key]))] = (lineno, indent + 1)
                self.current[key].append(item)
        elif key:
            self.current[key] = (str(self.current.get(key, "")) + " " + item).strip()
        return True

    def continue_text(self, raw: str) -> None:
        if self.current is not None and self.field is not None and self.field[0] \
                and self.field[0] not in _LIST_FIELDS:
            key = self.field[0]
            self.current[key] = (str(self.current.get(key, "")) + " " + _clean(raw)).strip()


def _cells(raw: str) -> list[str] | None:
    m = _TABLE_ROW.match(raw)
    return [c.strip() for c in re.split(r"(?<!\\)\|", m.group("cells"))] if m else None


def _table_columns(header: list[str]) -> list[str] | None:
    """The field key of each header cell ("" to skip); None when no column names an ablation field."""
    keys = []
    for cell in header:
        norm = " ".join(_clean(cell).lower().replace("_", " ").split())
        keys.append("name" if norm in _NAME_COLUMNS else (_label_key(norm) or ""))
    return keys if {"ablated_part", "action"} & set(keys) else None


def _scan_table(lines: list[str], start: int, blocks: _Blocks) -> int:
    """Rows of the table whose header is ``lines[start]`` as ablations; returns the index after it."""
    header = _cells(lines[start]) or []
    keys = _table_columns(header)
    if keys is None or start + 1 >= len(lines) or not _TABLE_RULE.match(lines[start + 1]):
        return start
    idx = start + 2
    while idx < len(lines) and (cells := _cells(lines[idx])) is not None:
        named = {k: c for k, c in zip(keys, cells) if k == "name" and _clean(c)}
        blocks.title(_clean(named["name"]) if named else f"Ablation {len(blocks.ablations) + 1}", idx + 1, 1)
        for key, cell in zip(keys, cells):
            if key and key != "name" and _clean(cell).lower() not in _EMPTY:
                blocks.add_field(key, cell, idx + 1, 0)
        blocks.field = None
        idx += 1
    return idx


def _scan(lines: list[str], skip: tuple[int, int] | None) -> _Blocks:
    blocks = _Blocks()
    table_end = 0
    for idx, raw in enumerate(lines):
        if idx < table_end or (skip and skip[0] <= idx < skip[1]):
            continue
        if _cells(raw) is not None and (end := _scan_table(lines, idx, blocks)) > idx:
            table_end = end
            continue
        lineno = idx + 1
        if not raw.strip():
            continue
        m = _FIELD.match(raw)
        key = _label_key(m.group("label")) if m else None
        bold = bool(m and (m.group("b1") or m.group("b2") or m.group("b3")))
        if m and key is None and bold and (meant := _typo_of(m.group("label"))):
            i = blocks._open(lineno, len(m.group("indent")) + 1)
            blocks.typos.append((i, _clean(m.group("label")), _FIELD_NAMES[meant]))
            blocks.marks[("ablations", i, _clean(m.group("label")).lower())] = (lineno, len(m.group("indent")) + 1)
            blocks.field = ("", len(m.group("indent")))
            continue
        if m and key is not None:
            if key == "":
                if blocks.current is not None:
                    blocks.field = ("", len(m.group("indent")))
                continue
            if key == "name" and blocks.current is not None and "name" in blocks.current:
                blocks.title(_clean(m.group("value")), lineno, len(m.group("indent")) + 1)
            if key == "name" and blocks.current is None:
                blocks.pending = (_clean(m.group("value")), lineno, len(m.group("indent")) + 1)
                continue
            blocks.add_field(key, m.group("value"), lineno, len(m.group("indent")))
            continue
        if (item := _ITEM.match(raw)) and blocks.add_item(item.group("value"), lineno, len(item.group("indent"))):
            continue
        title = _title(raw)
        if title is not None and (blocks.field is None or not raw.startswith((" ", "\t"))):
            blocks.title(title, lineno, len(raw) - len(raw.lstrip()) + 1)
            continue
        if raw.startswith((" ", "\t")):
            blocks.continue_text(raw)
    return blocks


def _drop_numbering(blocks: _Blocks) -> None:
    """Titles numbered 1, 2, 3 ... over the whole plan lose the numbers (a list style, not a name)."""
    numbers = [int(m.group(1)) if (m := _ENUM.match(t)) else None for t, _, _ in blocks.titles]
    if numbers and numbers == list(range(1, len(numbers) + 1)):
        blocks.titles = [(_ENUM.sub("", t, count=1), ln, col) for t, ln, col in blocks.titles]


def _component_or_part(ab: dict[str, Any]) -> None:
    """``Component: perturbation scale`` from a planner names the ablated part; it overrides the
    resolver only when it is a zolab component key (``Component: eps``) next to an ablated part."""
    if "component" not in ab:
        return
    from zolab.platform.components import COMPONENTS  # lazy: components imports the plan model

    text = str(ab["component"])
    if "ablated_part" not in ab:
        ab["ablated_part"] = text
        if text.strip().lower() not in COMPONENTS:
            ab.pop("component")


def parse_planner_markdown(text: str, *, file: str | None, defaults: dict[str, Any],
                           tasks: list[str] | None = None, seeds: list[int] | None = None) -> Plan:
    lines = text.splitlines()
    trace = _trace_span(lines)
    blocks = _scan(lines, trace)
    kept = [i for i, ab in enumerate(blocks.ablations)
            if any(k in ab for k in ("ablated_part", "action", "replacement"))
            or any(t[0] == i for t in blocks.typos)]
    if not kept:
        raise PlanError.single(
            "no 'Ablation Plan' section and no ablations found: expected a heading such as '## Ablation Plan' "
            "and blocks like '### <title>' followed by 'Ablated Part:', 'Action:', 'Replacement:', 'Metrics:' "
            "lines (bold or plain labels)", file=file, line=1, column=1)
    _drop_numbering(blocks)
    ablations, marks = [], {}
    for new, old in enumerate(kept):
        ab = blocks.ablations[old]
        ab.setdefault("name", blocks.titles[old][0])
        if ab.get("replacement") == []:  # a REMOVE without a replacement line is a normal case
            ab["replacement"] = None
        _component_or_part(ab)
        for (label, meant) in [(lbl, m) for i, lbl, m in blocks.typos if i == old]:
            ab[label.lower().replace(" ", "_")] = f"(a label one typo from '{meant}')"
        ablations.append(ab)
        for loc, pos in blocks.marks.items():
            if loc[1] == old:
                marks[("ablations", new, *loc[2:])] = pos
    name = next((_clean(m.group(1)) for line in lines if (m := _H1.match(line))), None)
    name = name or (PurePath(file).stem if file else "planner-plan")
    document: dict[str, Any] = {"name": name, "ablations": normalise_ablations(ablations)}
    if trace is not None:
        description = _paragraphs(lines[trace[0] + 1:trace[1]])
    else:
        first = min((blocks.titles[i][1] for i in kept), default=1) - 1
        description = _paragraphs([ln for ln in lines[:first] if not _H1.match(ln)])
    if description:
        document["description"] = description
    data = with_defaults(document, defaults, tasks, seeds)
    return validate_plan(data, file=file, locator=lambda loc: marks.get(tuple(loc)), marks=marks)
