"""Baseline, tasks and seeds for plans that carry none (AblationBench JSONL, planner markdown).

They come from a *baseline file*: a YAML plan without ``name`` and ``ablations``
(``ablations/baselines/mezo-opt.yaml`` by default), or from :data:`~zolab.platform.plan.BUILTIN_DEFAULTS`
when that file is absent (an installed package without the repository's ``ablations/`` folder).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from zolab.config import ABLATIONS_DIR
from zolab.platform.errors import Issue, PlanError, did_you_mean
from zolab.platform.parsers.source import decode, read_bytes
from zolab.platform.parsers.yaml import load_yaml_data, locator_for
from zolab.platform.plan import BUILTIN_DEFAULTS, validate_plan

DEFAULT_BASELINE_FILE = ABLATIONS_DIR / "baselines" / "mezo-opt.yaml"
#: keys a baseline file may hold (a plan's keys minus the document's own)
DEFAULT_KEYS = ("zolab", "description", "baseline", "tasks", "seeds", "metrics", "zero_shot", "tuning", "budget")
_PROBE = {"name": "defaults", "ablations": [{"name": "probe", "ablated_part": "probe", "action": "REMOVE"}]}


def load_defaults(baseline: str | Path | dict[str, Any] | None = None) -> dict[str, Any]:
    """Validated defaults as plain data; a bad baseline file is a located :class:`PlanError`."""
    if isinstance(baseline, dict):
        data, marks, name = copy.deepcopy(baseline), {}, "<baseline>"
    else:
        path = Path(baseline) if baseline is not None else DEFAULT_BASELINE_FILE
        if baseline is None and not path.exists():
            return copy.deepcopy(BUILTIN_DEFAULTS)
        name = str(path)
        data, marks = load_yaml_data(decode(read_bytes(path, name), name), name)
    if not isinstance(data, dict):
        raise PlanError.single("a baseline file must be a mapping (baseline:, tasks:, seeds:)", file=name, line=1)
    issues = [
        Issue(f"unknown key {k!r} in a baseline file{did_you_mean(str(k), DEFAULT_KEYS)}; allowed: "
              + ", ".join(DEFAULT_KEYS), name, *(marks.get((k,)) or (None, None)), str(k))
        for k in data if k not in DEFAULT_KEYS
    ]
    if issues:
        raise PlanError(issues)
    merged = {**copy.deepcopy(BUILTIN_DEFAULTS), **data}
    validate_plan({**merged, **_PROBE}, file=name, locator=locator_for(marks))
    merged.pop("description", None)
    return merged


def with_defaults(document: dict[str, Any], defaults: dict[str, Any], tasks: list[str] | None,
                  seeds: list[int] | None) -> dict[str, Any]:
    """The document's own keys (name, description, ablations) over the defaults and the CLI options."""
    out = {**copy.deepcopy(defaults), **document}
    if tasks:
        out["tasks"] = list(tasks)
    if seeds:
        out["seeds"] = list(seeds)
    return out
