"""Write a Plan back out as YAML, AblationBench JSON lines or planner markdown.

The inverse of the parsers (``load_plan(render(plan)) == plan``, with the baseline file for JSONL
and markdown): used to export plans and to test that the three formats describe the same plan.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from zolab.platform.plan import Plan


def _ablation_dict(plan: Plan, index: int) -> dict[str, Any]:
    ab = plan.ablations[index]
    out: dict[str, Any] = {"name": ab.name, "ablated_part": ab.ablated_part, "action": ab.action.value,
                           "replacement": list(ab.replacement) or None, "metrics": list(ab.metrics or [])}
    if ab.component:
        out["component"] = ab.component
    return out


def to_yaml(plan: Plan) -> str:
    data = plan.model_dump(mode="json", exclude_none=True)
    for ab in data["ablations"]:
        if not ab.get("replacement"):
            ab.pop("replacement", None)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def to_jsonl(plan: Plan) -> str:
    return "".join(json.dumps(_ablation_dict(plan, i), ensure_ascii=False) + "\n" for i in range(len(plan.ablations)))


def to_markdown(plan: Plan) -> str:
    lines = [f"# {plan.name}", ""]
    if plan.description:
        lines += ["## Reasoning Trace", "", plan.description, ""]
    lines += ["## Ablation Plan", ""]
    for i in range(len(plan.ablations)):
        ab = _ablation_dict(plan, i)
        lines += [f"### {ab['name']}", f"- **Ablated Part**: {ab['ablated_part']}", f"- **Action**: {ab['action']}"]
        if ab["replacement"]:
            lines.append("- **Replacement**:")
            lines += [f"  - {item}" for item in ab["replacement"]]
        lines.append(f"- **Metrics**: {', '.join(ab['metrics'])}")
        if "component" in ab:
            lines.append(f"- **Component**: {ab['component']}")
        lines.append("")
    return "\n".join(lines)


def defaults_of(plan: Plan) -> dict[str, Any]:
    """The baseline-file content that gives JSONL/markdown renderings this plan's shared parts."""
    data = plan.model_dump(mode="json", exclude_none=True)
    return {k: data[k] for k in ("baseline", "tasks", "seeds", "metrics", "zero_shot", "tuning", "budget") if k in data}
