"""Plan metrics: what planners write ("peak GPU memory", "wall-clock time", "F1 score") read as the
leaderboard's metric keys, by meaning.

A plan's metrics only choose what the leaderboard and the Compare page show; zolab measures the same
things for every run. So a metric is never a reason to refuse a plan: a phrase that names one of
zolab's measurements becomes its key, and a phrase that names something zolab does not measure
("perplexity", "throughput") is kept in the plan as written (lower-cased) and reported by
:func:`metric_warnings`, which the CLI, the upload preview and ``plan show`` print.

Reading by meaning: the phrase's words, less the qualifiers that do not change what is measured
("peak", "GPU", "test", "usage", "(GB)", ...), must name exactly one concept below; a phrase that
names two ("accuracy vs memory") is kept and warned about, not guessed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

#: the leaderboard's metric columns (zolab.ui.charts draws one chart per key)
METRICS = ("accuracy", "f1", "peak_memory", "gpu_hours", "convergence", "wall_time")
DEFAULT_METRICS = ["accuracy", "f1", "peak_memory", "gpu_hours"]
#: what each key shows, in words (for warnings)
SHOWN = {"accuracy": "test accuracy", "f1": "macro F1", "peak_memory": "peak memory",
         "gpu_hours": "GPU hours per run", "convergence": "steps to 90% of the final dev accuracy",
         "wall_time": "wall-clock time per run"}

#: concept -> word patterns (regexes over the phrase's words, any one names it); tried all at once
_CONCEPTS: dict[str, tuple[str, ...]] = {
    "convergence": (r"\bconverg\w*", r"\bsteps? to (?:reach|target)\b", r"\bsample efficiency\b"),
    "f1": (r"\bf ?1\b", r"\bf measure\b", r"\bf score\b"),
    "accuracy": (r"\bacc(?:uracy|uracies)?\b", r"\berror rate\b"),
    "peak_memory": (r"\bmemory\b", r"\bv?ram\b", r"\bhbm\b", r"\bmem\b"),
    "gpu_hours": (r"\bgpu ?(?:hours?|h|hrs?|time|days?)\b", r"\bcompute\b", r"\bcompute (?:cost|budget)\b",
                  r"\bcost\b"),
    "wall_time": (r"\b(?:wall|clock|wallclock|training|train|run|running|elapsed|total|fine tuning) ?time\b",
                  r"\bruntime\b", r"\brun time\b", r"\bduration\b", r"\btime to train\b", r"\btime per run\b",
                  r"^time$"),
}
#: a concept that contains another's words: "GPU time" is GPU hours, not wall time
_BEATS = {"gpu_hours": ("wall_time",), "convergence": ("wall_time", "accuracy")}


def metric_key(text: str) -> str:
    """Lower-case words separated by single spaces ("Wall-clock_time" -> "wall clock time")."""
    text = re.sub(r"\([^)]*\)", " ", str(text).lower())  # "(GB)", "(%)": units say nothing about the metric
    return " ".join(re.sub(r"[^a-z0-9%]+", " ", text).split())


def concepts(text: str) -> list[str]:
    """The metric keys ``text`` names (none, one, or several when it names a combination)."""
    key = metric_key(text)
    found = [c for c, patterns in _CONCEPTS.items() if any(re.search(p, key) for p in patterns)]
    for winner, losers in _BEATS.items():
        if winner in found:
            found = [c for c in found if c not in losers]
    return found


def normalise_metric(value: Any) -> str:
    """A plan metric: the leaderboard key it names, else the phrase itself (kept, warned about).

    Only a metric that is not text, or empty, is an error (a structural problem of the plan)."""
    if not isinstance(value, str):
        raise ValueError(f"metric must be text, got {type(value).__name__}")  # noqa: TRY004 - pydantic reports ValueError only
    key = metric_key(value)
    if not key:
        raise ValueError("metric must not be empty")
    if key.replace(" ", "_") in METRICS:
        return key.replace(" ", "_")
    found = concepts(value)
    return found[0] if len(found) == 1 else key


def measured_metric(value: Any) -> str:
    """A metric zolab must measure (the tuning objective): an unknown one is an error."""
    key = normalise_metric(value)
    if key not in METRICS:
        raise ValueError(f"cannot tune for {value!r}: {unmeasured(key)}")
    return key


def unmeasured(key: str) -> str:
    """Why ``key`` is not shown, and what is."""
    several = concepts(key)
    shown = ", ".join(f"{k} ({SHOWN[k]})" for k in METRICS)
    if len(several) > 1:
        return f"{key!r} names several metrics ({', '.join(several)}); list them separately. The leaderboard shows {shown}"
    return f"zolab does not measure {key}; the leaderboard shows {shown}"


def metric_warnings(plan: Any) -> list[str]:
    """One line per metric of ``plan`` (plan-level or an ablation's) that zolab does not measure:
    it is kept in the plan and shows no column."""
    where: dict[str, list[str]] = {}
    for name in plan.metrics or []:
        where.setdefault(name, []).append("the plan")
    for ab in plan.ablations:
        if ab.metrics is not None and ab.metrics != plan.metrics:
            for name in ab.metrics:
                where.setdefault(name, []).append(repr(ab.name))
    return [f"metric {key!r} ({', '.join(dict.fromkeys(places))}): {unmeasured(key)}; it is kept in the plan "
            "and shows no column" for key, places in where.items() if key not in METRICS]


def known(names: Iterable[str]) -> list[str]:
    """The names that are leaderboard keys, in order."""
    return [n for n in names if n in METRICS]
