"""Upload checks beyond the plan's schema: what its jobs will touch, and how many there will be.

:mod:`zolab.platform.plan` checks each value on its own (types, ranges, finite numbers, text). This
module checks what needs the registries, the file system or the database's column sizes, so that a
plan either fails here, located (``file:line: field: why``, a :class:`PlanError`), or stores and runs:

* :func:`check_job_cap` (before resolution, from counts alone: milliseconds for any plan): at most
  ``max_jobs`` jobs (default :data:`DEFAULT_MAX_JOBS`, ``--max-jobs``); variants are bounded by the
  replacement values, so a plan of 80k replacements is refused before 80k variants exist;
* :func:`check_plan` (before resolution): known tasks, tuning ranges that the baseline accepts, the
  baseline's model (a known alias or tiny config, a hub id ``org/name``, or an existing local folder
  under ``ZOLAB_DATA_ROOTS``; no URLs, no ``..``) and its paths (:mod:`zolab.runners.confine`);
* :func:`check_expansion` (after resolution and expansion, before any write): every variant's model
  and paths, the text that goes into length-limited columns (variant labels, job keys, the source
  file name), and the exact job count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from zolab.platform.errors import Issue, PlanError, did_you_mean
from zolab.platform.plan import Action, Baseline, Plan
from zolab.runners.confine import model_problem, path_problems

#: the most jobs a plan may make unless ``--max-jobs`` says otherwise
DEFAULT_MAX_JOBS = 10_000
#: variants an ablation without replacement values can make (REMOVE inverted to both PEFT kinds, ADD)
_NO_VALUE_VARIANTS = 2
#: a plan or variant id as large as a 32-bit id column holds (worst case for the job key's length)
_MAX_ID = 2**31 - 1


@dataclass(frozen=True)
class JobCount:
    """variants x tasks x (seeds + tuning trials) = jobs."""

    variants: int
    tasks: int
    seeds: int
    trials: int = 0

    @property
    def jobs(self) -> int:
        return self.variants * self.tasks * (self.seeds + self.trials)

    def __str__(self) -> str:
        trials = f" + {self.trials} tuning trials" if self.trials else ""
        return f"{self.variants:,} variants x {self.tasks} tasks x ({self.seeds} seeds{trials}) = {self.jobs:,} jobs"


def _trials(plan_json: dict[str, Any]) -> int:
    tuning = plan_json.get("tuning") or {}
    return int(tuning.get("trials", 12)) if tuning else 0


def _variant_bounds(plan: Plan) -> list[int]:
    """Running bound on the variants after each ablation: the baseline, the zero-shot row, and one
    variant per replacement value (duplicates and no-ops, merged later, only lower it)."""
    running, out = 1 + int(plan.zero_shot), []
    for ab in plan.ablations:
        running += len(ab.replacement) if ab.replacement else (0 if ab.action is Action.REPLACE else _NO_VALUE_VARIANTS)
        out.append(running)
    return out


def job_bound(plan: Plan) -> JobCount:
    """An upper bound on the plan's jobs from its counts alone."""
    bounds = _variant_bounds(plan)
    return JobCount(bounds[-1] if bounds else 1 + int(plan.zero_shot), len(plan.tasks), len(plan.seeds),
                    plan.tuning.trials if plan.tuning else 0)


def stored_count(n_variants: int, plan_json: dict[str, Any]) -> JobCount:
    """The jobs a stored plan's variants make (what :func:`zolab.platform.scheduler.expand` would list)."""
    return JobCount(n_variants, len(plan_json.get("tasks") or []), len(plan_json.get("seeds") or []),
                    _trials(plan_json))


def cap_message(count: JobCount, max_jobs: int, *, bound: bool) -> str:
    return (f"the plan would make {'up to ' if bound else ''}{count}, over the cap of {max_jobs:,} jobs: "
            "remove replacement values, tasks or seeds, or raise the cap with --max-jobs")


def check_job_cap(plan: Plan, max_jobs: int | None) -> None:
    """Refuse a plan whose bound exceeds ``max_jobs`` (None: no cap) before anything is resolved."""
    if max_jobs is None:
        return
    count = job_bound(plan)
    if count.jobs <= max_jobs:
        return
    per_variant = count.tasks * (count.seeds + count.trials)
    crossed = next((i for i, n in enumerate(_variant_bounds(plan)) if n * per_variant > max_jobs), None)
    loc: tuple[Any, ...] = ("ablations", crossed) if crossed is not None else ("seeds",)
    message = cap_message(count, max_jobs, bound=True)
    if crossed is not None:
        message += f" (the cap is crossed at ablation {plan.ablations[crossed].name!r})"
    raise PlanError([_at(plan, loc, message)])


# -- before resolution ---------------------------------------------------------------------------
def _is_named_model(model: str) -> bool:
    """Tiny test configs and the cache's aliases: names the runner resolves itself. (The runner's
    model module imports torch + transformers, seconds: only for names that may be tiny ones.)"""
    from zolab.runners.assets import model_aliases

    if model.startswith("tiny-"):
        from zolab.runners.models import parse_tiny

        return parse_tiny(model) is not None
    return model in model_aliases()


def _at(plan: Plan, loc: tuple[Any, ...], message: str) -> Issue:
    where = plan.locate(loc)
    return Issue(message, where.file, where.line, where.column, where.field)


def _task_issues(plan: Plan) -> list[Issue]:
    from zolab.runners.tasks import task_names

    known = task_names()
    return [_at(plan, ("tasks", i), f"unknown task {task!r}{did_you_mean(task, known)}; known: {', '.join(known)}")
            for i, task in enumerate(plan.tasks) if task not in known]


def _tuning_issues(plan: Plan) -> list[Issue]:
    """Each tuned value (choices, or low and high) must be a value the baseline accepts."""
    if plan.tuning is None:
        return []
    base = plan.baseline.model_dump()
    issues = []
    for key, rng in plan.tuning.space.items():
        for value in rng.choices if rng.choices is not None else (rng.low, rng.high):
            try:
                Baseline.model_validate({**base, key: value})
            except ValidationError as exc:
                why = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
                issues.append(_at(plan, ("tuning", "space", key), f"tuned value {value!r}: {why}"))
                break
    return issues


def _config_issues(plan: Plan, config: dict[str, Any], loc: tuple[Any, ...], label: str = "") -> list[Issue]:
    """The model and the path options of one config (the baseline, or a variant named ``label``)."""
    prefix = f"variant {label!r}: " if label else ""
    issues = []
    if why := model_problem(str(config.get("model", "")), _is_named_model):
        issues.append(_at(plan, (*loc, "model"), prefix + why))
    for key, why in path_problems(config.get("task_options") or {}):
        issues.append(_at(plan, (*loc, "task_options", key), prefix + why))
    return issues


def check_plan(plan: Plan) -> None:
    """Known tasks, tuning values, the baseline's model and paths; raises one PlanError with all."""
    issues = _task_issues(plan) + _tuning_issues(plan)
    issues += _config_issues(plan, plan.baseline.model_dump(), ("baseline",))
    if issues:
        raise PlanError(issues)


# -- after expansion -------------------------------------------------------------------------------
def _length(table: Any, column: str) -> int:
    return int(table.__table__.c[column].type.length)


def _column_issues(plan: Plan, variants: list[Any], filename: str | None) -> list[Issue]:
    """Text that goes into String(n) columns (PostgreSQL refuses longer; SQLite would keep it)."""
    from zolab.db import models
    from zolab.platform.scheduler import job_key

    issues = []
    limit = _length(models.Variant, "label")
    for v in variants:
        if len(v.label) > limit:
            issues.append(_at(plan, _origin(plan, v), f"variant {v.label[:60]!r}... has a label of {len(v.label):,} "
                                                      f"characters; the database keeps {limit}: shorten the value"))
    if filename is not None and len(filename) > (limit := _length(models.Plan, "source_name")):
        issues.append(Issue(f"the file name is {len(filename):,} characters; the database keeps {limit}", filename[:80]))
    key_limit, task_limit = _length(models.Job, "key"), _length(models.Job, "task")
    for i, task in enumerate(plan.tasks):
        key = job_key(_MAX_ID, _MAX_ID, task, 2**31 - 1, "final", 10_000)
        if len(task) > task_limit or len(key) > key_limit:
            issues.append(_at(plan, ("tasks", i), f"task name of {len(task)} characters is too long for the database"))
    return issues


def _origin(plan: Plan, variant: Any) -> tuple[Any, ...]:
    """Where a variant comes from: the replacement of the first ablation it serves."""
    names = [ab.name for ab in plan.ablations]
    for name in variant.ablations:
        if name in names:
            return ("ablations", names.index(name), "replacement")
    return ("ablations",)


def check_expansion(plan: Plan, variants: list[Any], *, filename: str | None, max_jobs: int | None) -> None:
    """Every variant's model and paths, column sizes and the exact job count, before any write."""
    issues: list[Issue] = []
    seen: set[str] = set()
    for v in variants:
        fingerprint = repr((v.config.get("model"), sorted((v.config.get("task_options") or {}).items())))
        if v.is_baseline or fingerprint in seen:
            continue
        seen.add(fingerprint)
        issues += _config_issues(plan, v.config, _origin(plan, v), v.label)
    issues += _column_issues(plan, variants, filename)
    count = JobCount(len(variants), len(plan.tasks), len(plan.seeds), plan.tuning.trials if plan.tuning else 0)
    if max_jobs is not None and count.jobs > max_jobs:
        issues.append(_at(plan, ("ablations",), cap_message(count, max_jobs, bound=False)))
    if issues:
        raise PlanError(issues)
