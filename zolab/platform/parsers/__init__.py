"""Plan parsers: YAML, AblationBench JSON lines, the raw AblationBench planner response and
LM-planner markdown -> one validated Plan.

:func:`load_plan` is the single entry point. The format comes from ``fmt``, else the file
extension (``.yaml/.yml``, ``.jsonl/.ndjson/.json``), else the content: a ``<predictions>`` tag is a
planner response (``ablationbench``, also in ``.md`` files), a ``{`` first line is JSONL, a top-level
``zolab:`` or ``ablations:`` key is YAML, an "Ablation Plan" heading, an "Ablated Part:" label
(bold or plain) or a table with an "Ablated part" column is markdown, anything else is YAML. ``.txt`` files, like the seed trajectories,
are detected by content.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from zolab.platform.errors import PlanError
from zolab.platform.parsers.ablationbench import parse_ablationbench
from zolab.platform.parsers.defaults import DEFAULT_BASELINE_FILE, load_defaults
from zolab.platform.parsers.planner_markdown import parse_planner_markdown
from zolab.platform.parsers.planner_response import looks_like_response, parse_planner_response
from zolab.platform.parsers.source import check_text, decode, read_bytes
from zolab.platform.parsers.yaml import parse_yaml
from zolab.platform.plan import Plan

Format = Literal["yaml", "jsonl", "markdown", "ablationbench"]
#: ``ablationbench``: the raw AblationBench planner response (<discussion> + <predictions> JSON lines)
FORMATS: tuple[str, ...] = ("yaml", "jsonl", "markdown", "ablationbench")
_BY_EXTENSION = {".yaml": "yaml", ".yml": "yaml", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
_TEXT_EXTENSIONS = {".md": "markdown", ".markdown": "markdown"}
_YAML_HINT = re.compile(r"^(?:zolab|ablations)\s*:", re.MULTILINE)
_MARKDOWN_HINT = re.compile(
    r"ablation\s+plan|^\s*(?:[-*+]\s+|\d+[.)]\s+)?(?:\*\*|__)?\s*ablated\s+(?:part|component)\s*(?:\*\*|__)?\s*:"
    r"|^\s*\|.*\bablated\s+(?:part|component)\b.*\|\s*$",  # a table with an "Ablated part" column
    re.IGNORECASE | re.MULTILINE)

__all__ = ["DEFAULT_BASELINE_FILE", "FORMATS", "Loaded", "detect_format", "load_plan", "load_source"]


def detect_format(text: str, filename: str | None = None) -> str:
    """The plan format from the file name's extension, else from the content."""
    ext = Path(filename).suffix.lower() if filename else ""
    if ext in _BY_EXTENSION:
        return _BY_EXTENSION[ext]
    if looks_like_response(text):
        return "ablationbench"
    if ext in _TEXT_EXTENSIONS:
        return _TEXT_EXTENSIONS[ext]
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if first.startswith("{"):
        return "jsonl"
    if _YAML_HINT.search(text):
        return "yaml"
    if _MARKDOWN_HINT.search(text):
        return "markdown"
    return "yaml"


class Loaded:
    """A parsed plan with its source text and format (what an upload stores)."""

    def __init__(self, plan: Plan, text: str, fmt: str, filename: str | None) -> None:
        self.plan, self.text, self.format, self.filename = plan, text, fmt, filename


def _is_file(text: str) -> bool:
    """Whether a one-line string names an existing file; a line of plan text that is no valid path
    (too long for the OS: ENAMETOOLONG) is text, not an error."""
    try:
        return Path(text).is_file()
    except (OSError, ValueError):
        return False


def _source(path_or_text: str | bytes | Path, filename: str | None) -> tuple[str, str | None]:
    if isinstance(path_or_text, Path) or (
        isinstance(path_or_text, str) and "\n" not in path_or_text and len(path_or_text) < 4096
        and _is_file(path_or_text)
    ):
        path = Path(path_or_text)
        name = filename or str(path)
        return decode(read_bytes(path, name), name), name
    if isinstance(path_or_text, bytes):
        return decode(path_or_text, filename or "<input>"), filename
    return check_text(str(path_or_text), filename or "<input>"), filename


def load_source(
    path_or_text: str | bytes | Path,
    *,
    filename: str | None = None,
    fmt: str | None = None,
    baseline: str | Path | dict[str, Any] | None = None,
    tasks: list[str] | None = None,
    seeds: list[int] | None = None,
) -> Loaded:
    """Like :func:`load_plan` but also returns the text and the detected format."""
    text, name = _source(path_or_text, filename)
    if fmt is not None and fmt not in FORMATS:
        raise PlanError.single(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}", file=name)
    kind = fmt or detect_format(text, name)
    if kind == "yaml":
        plan = parse_yaml(text, file=name, tasks=tasks, seeds=seeds)
    else:
        defaults = load_defaults(baseline)
        parse = {"jsonl": parse_ablationbench, "markdown": parse_planner_markdown,
                 "ablationbench": parse_planner_response}[kind]
        plan = parse(text, file=name, defaults=defaults, tasks=tasks, seeds=seeds)
    return Loaded(plan, text, kind, name)


def load_plan(
    path_or_text: str | bytes | Path,
    *,
    filename: str | None = None,
    fmt: str | None = None,
    baseline: str | Path | dict[str, Any] | None = None,
    tasks: list[str] | None = None,
    seeds: list[int] | None = None,
) -> Plan:
    """Parse and validate a plan file (a path) or plan text; raises :class:`PlanError`.

    ``baseline`` (a baseline YAML file or a dict) supplies baseline/tasks/seeds for JSONL and
    markdown plans; ``tasks`` and ``seeds`` replace the plan's own for every format.
    """
    return load_source(path_or_text, filename=filename, fmt=fmt, baseline=baseline, tasks=tasks, seeds=seeds).plan
