"""Stored plan -> jobs: every variant x task x seed, with estimates and the budget verdict.

The variants themselves (baseline + each resolved/inverted ablation x replacement, duplicates by
config hash merged and labelled with every ablation they serve) are made at upload
(``zolab.platform.variants``); this module reads them back, adds tasks and seeds, and enqueues.
``no_op`` and ``unresolved`` ablations have no variant and no job; they are listed with their reason.
A variant's ``tuned_params[task]`` (written by Optuna tuning) override its config in the final jobs; tuning
trials are jobs too (stage ``tune``, ``study_name``, ``trial_number``, key from :func:`job_key` with
``trial=``) and go through the same queue.

Enqueueing is idempotent: a job's key is ``p<plan>:v<variant>:<task>:s<seed>:final``, so running a plan
again (after a crash, or to add nothing) never duplicates a job; finished jobs stay finished.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from zolab.db.models import Job, JobStage
from zolab.db.repo import jobs as repo
from zolab.db.retry import retry_on_transient
from zolab.db.session import session_scope
from zolab.platform.estimates import (
    JobEstimate,
    StepTimeModel,
    card_for,
    default_estimate_device,
    estimate_job,
    is_hub_model,
)
from zolab.platform.queue import JobQueue
from zolab.runners.config import RunConfig

SKIPPED_STATUSES = ("no_op", "unresolved")


class SchedulerError(Exception):
    """The plan cannot be scheduled (one human line)."""


#: above this many GPU-hours a plan without a budget needs a confirmation (UI) or --force (CLI)
CONFIRM_ABOVE_GPU_HOURS = 10.0


class BudgetExceeded(SchedulerError):
    """Launching needs a confirmation: over the plan's budget, or large with no budget set."""

    def __init__(self, estimated: float, budget: float | None, label: str = "GPU-hours", reason: str | None = None) -> None:
        super().__init__((reason or f"estimated {estimated:.2f} {label} exceeds the plan's budget of {budget or 0:.2f}")
                         + " (use --force to run anyway)")
        self.estimated, self.budget = estimated, budget


@dataclass(frozen=True)
class LaunchCheck:
    """Whether launching needs a confirmation (UI) or ``--force`` (CLI), and why."""

    needs_confirmation: bool
    reason: str


def job_key(plan_id: int, variant_id: int, task: str, seed: int, stage: str = JobStage.FINAL.value,
            trial: int | None = None) -> str:
    """The idempotency key of a job (unique in the DB)."""
    key = f"p{plan_id}:v{variant_id}:{task}:s{seed}:{stage}"
    return key if trial is None else f"{key}:t{trial}"


@dataclass(frozen=True)
class JobSpec:
    key: str
    variant_id: int
    variant_label: str
    task: str
    seed: int
    config: dict[str, Any]
    estimate: JobEstimate
    stage: str = JobStage.FINAL.value


@dataclass(frozen=True)
class VariantInfo:
    id: int
    label: str
    is_baseline: bool
    ablations: list[str]
    config_hash: str


@dataclass(frozen=True)
class SkippedAblation:
    name: str
    status: str
    reason: str


@dataclass
class Expansion:
    plan_id: int
    plan_name: str
    tasks: list[str]
    seeds: list[int]
    variants: list[VariantInfo]
    jobs: list[JobSpec]
    skipped: list[SkippedAblation]
    budget_gpu_hours: float | None
    device: str = "cpu"
    device_reason: str = ""     # why the estimates assume ``device`` (e.g. a hub model on a machine without GPU)

    @property
    def total_hours(self) -> float:
        """Device-hours of every job (GPU-hours for GPU jobs, CPU-hours for CPU jobs: see :attr:`estimate_label`)."""
        return sum(j.estimate.hours for j in self.jobs)

    @property
    def total_gpu_hours(self) -> float:
        """Legacy name of :attr:`total_hours` (what the budget is checked against)."""
        return self.total_hours

    def hours_by_label(self) -> dict[str, float]:
        """``{"H100 GPU-hours": 12.3, "CPU-hours on this machine": 0.2}``: the totals per unit."""
        out: dict[str, float] = {}
        for j in self.jobs:
            out[j.estimate.label] = out.get(j.estimate.label, 0.0) + j.estimate.hours
        return out

    @property
    def estimate_label(self) -> str:
        """The unit of the totals, device class and card: ``H100 GPU-hours`` | ``CPU-hours on this machine``."""
        return " + ".join(self.hours_by_label()) or card_for(self.device).label

    @property
    def estimate_note(self) -> str:
        """What the time estimates rest on: the default model or a recalibration, per source, and why this device."""
        sources: dict[str, int] = {}
        for j in self.jobs:
            sources[j.estimate.source] = sources.get(j.estimate.source, 0) + 1
        parts = [f"{src} ({n} job{'s' if n != 1 else ''})" if len(sources) > 1 else src for src, n in sources.items()]
        note = "; ".join(parts)
        return f"{self.device_reason}; {note}" if self.device_reason else note

    @property
    def gpu_hours(self) -> float:
        return sum(j.estimate.hours for j in self.jobs if j.estimate.kind == "gpu")

    @property
    def max_memory_bytes(self) -> int:
        return max((j.estimate.memory_bytes for j in self.jobs), default=0)

    @property
    def within_budget(self) -> bool:
        return self.budget_gpu_hours is None or self.total_hours <= self.budget_gpu_hours

    def verdict(self) -> str:
        total = f"{self.total_hours:.3f} {self.estimate_label}"
        if self.budget_gpu_hours is None:
            return f"no budget set; estimated {total}"
        word = "within" if self.within_budget else "OVER"
        unit = "" if self.gpu_hours == self.total_hours else " (the budget's gpu_hours, applied to CPU-hours)"
        return f"{word} budget: estimated {total} of {self.budget_gpu_hours:.3f}{unit}"

    def launch_check(self) -> LaunchCheck:
        """Over the budget, or above :data:`CONFIRM_ABOVE_GPU_HOURS` GPU-hours with no budget: confirm first."""
        if not self.within_budget:
            return LaunchCheck(True, f"estimated {self.total_hours:.2f} {self.estimate_label} exceeds the plan's "
                                     f"budget of {self.budget_gpu_hours:.2f}")
        if self.budget_gpu_hours is None and self.gpu_hours > CONFIRM_ABOVE_GPU_HOURS:
            return LaunchCheck(True, f"estimated {self.gpu_hours:.1f} {self.estimate_label} and the plan sets no "
                                     f"budget (above {CONFIRM_ABOVE_GPU_HOURS:g} GPU-hours needs a confirmation)")
        return LaunchCheck(False, self.verdict())

    def refusal(self) -> BudgetExceeded | None:
        """The error to raise when launching without confirmation (None: no confirmation needed)."""
        check = self.launch_check()
        if not check.needs_confirmation:
            return None
        return BudgetExceeded(self.total_hours, self.budget_gpu_hours, self.estimate_label, check.reason)


@dataclass
class ScheduleReport:
    expansion: Expansion
    created: list[int] = field(default_factory=list)
    existing: int = 0


def default_device() -> str:
    """Where jobs of this machine will run: ``gpu`` when CUDA is visible, else ``cpu``."""
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"


def _job_device(config: RunConfig, default: str) -> str:
    if config.device == "cpu":
        return "cpu"
    return "gpu" if config.device.startswith("cuda") else default


@dataclass(frozen=True)
class _VariantRow:
    """What expansion needs of a variant, stored (ids from the DB) or only prepared (ids = positions)."""

    id: int
    label: str
    is_baseline: bool
    ablations: list[str]
    config_hash: str
    config: dict[str, Any]
    tuned_params: dict[str, Any] | None = None


def _estimate_device(device: str | None, variants: Sequence[_VariantRow]) -> tuple[str, str]:
    """(device the ``device: auto`` jobs are estimated on, why): ``device`` if given, else this
    machine's GPU, else GPU for real hub models (a laptop CPU is not where they would run)."""
    if device is not None:
        return device, ""
    auto = [v.config.get("model", "") for v in variants if v.config.get("device", "auto") == "auto"]
    chosen = default_estimate_device(auto)
    if chosen == "gpu" and default_device() == "cpu":
        hub = next(m for m in auto if is_hub_model(m))
        return "gpu", (f"GPU estimates by default for {hub} (a hub model) on this machine without a GPU; "
                       "--estimate-for cpu gives CPU-hours on this machine")
    return chosen, ""


def _samples(s: Any, variants: Iterable[_VariantRow]) -> dict[tuple[Any, Any], list]:
    out: dict[tuple[Any, Any], list] = {}
    for v in variants:
        key = (v.config.get("model"), v.config.get("method"))
        if key not in out:
            out[key] = repo.step_time_samples(s, *key)
    return out


def _expand(plan_id: int, plan_name: str, pj: dict[str, Any], variants: Sequence[_VariantRow],
            skipped: list[SkippedAblation], samples: dict[tuple[Any, Any], list], device: str | None,
            card: str | None) -> Expansion:
    """Jobs with estimates from a plan's data: the one code path of stored plans and previews."""
    tasks, seeds = list(pj.get("tasks") or []), [int(x) for x in pj.get("seeds") or []]
    if not tasks or not seeds:
        raise SchedulerError(f"plan {plan_id} ({plan_name}) lists no tasks or no seeds")
    device, why = _estimate_device(device, variants)
    card_for(device, card)  # an unknown --card is an error before anything is estimated
    infos, jobs = [], []
    for v in variants:
        infos.append(VariantInfo(v.id, v.label, v.is_baseline, list(v.ablations or []), v.config_hash))
        times = StepTimeModel(samples.get((v.config.get("model"), v.config.get("method")), []))

        def estimate(c: RunConfig, times: StepTimeModel = times) -> JobEstimate:
            return estimate_job(c, times, _job_device(c, device), card)

        for task in tasks:
            if pj.get("tuning"):  # Optuna trials first (zolab.platform.tuning), then the final seeds
                from zolab.platform import tuning

                jobs.extend(tuning.planned_trials(plan_id, pj, v.id, v.label, v.config, task, estimate))
            for seed in seeds:
                try:
                    tuned = (v.tuned_params or {}).get(task) or {}  # {task: best params} from tuning
                    cfg = RunConfig.from_dict({**v.config, **tuned, "task": task, "seed": seed})
                except (ValueError, TypeError) as exc:
                    raise SchedulerError(f"variant {v.label!r} of plan {plan_id}: {exc}") from exc
                jobs.append(JobSpec(job_key(plan_id, v.id, task, seed), v.id, v.label, task, seed,
                                    cfg.to_dict(), estimate(cfg)))
    budget = (pj.get("budget") or {}).get("gpu_hours")
    return Expansion(plan_id, plan_name, tasks, seeds, infos, jobs, skipped,
                     float(budget) if budget is not None else None, device, why)


def expand(url: str | None, plan_id: int, *, device: str | None = None, card: str | None = None) -> Expansion:
    """Read a stored plan and list its jobs with estimates (writes nothing).

    ``device`` (``cpu`` | ``gpu``) is where jobs with ``device: auto`` are estimated to run (default:
    this machine's GPU; without one, GPU for real hub models and CPU for tiny test models); ``card``
    names the GPU (default: this machine's, else H100). Jobs that name their device keep it."""

    def tx():
        with session_scope(url) as s:
            parts = repo.plan_parts(s, plan_id)
            if parts is None:
                raise SchedulerError(f"no plan with id {plan_id}")
            plan, ablations, variants = parts
            rows = [_VariantRow(v.id, v.label, v.is_baseline, list(v.ablations or []), v.config_hash, v.config,
                                v.tuned_params) for v in variants]
            skipped = [SkippedAblation(a.name, a.status, a.explanation or a.status) for a in ablations
                       if a.status in SKIPPED_STATUSES]
            return plan.id, plan.name, dict(plan.plan_json or {}), rows, skipped, _samples(s, rows)

    pid, name, pj, rows, skipped, samples = retry_on_transient(tx, what="read a plan")
    return _expand(pid, name, pj, rows, skipped, samples, device, card)


def expand_prepared(url: str | None, prepared: Any, *, device: str | None = None, card: str | None = None) -> Expansion:
    """The expansion a prepared (not yet stored) plan WILL have once stored: the same jobs, the same
    estimates from the same finished runs, so preview and stored plan agree. Variant ids are their
    positions and the plan id is 0 until it is stored."""
    plan = prepared.plan
    rows = [_VariantRow(i + 1, v.label, v.is_baseline, list(v.ablations), v.config_hash, v.config)
            for i, v in enumerate(prepared.variants)]
    skipped = [SkippedAblation(r.ablation, r.status, r.explanation or r.status) for r in prepared.resolutions
               if r.status in SKIPPED_STATUSES]

    def tx():
        with session_scope(url) as s:
            return _samples(s, rows)

    samples = retry_on_transient(tx, what="read finished runs")
    return _expand(0, plan.name, plan.canonical(), rows, skipped, samples, device, card)


def schedule(url: str | None, plan_id: int, *, force: bool = False, device: str | None = None,
             max_attempts: int = 3, card: str | None = None) -> ScheduleReport:
    """Enqueue the plan's jobs that do not exist yet; a plan that needs a confirmation
    (:meth:`Expansion.launch_check`: over budget, or > 10 GPU-hours without one) is refused unless ``force``."""
    expansion = expand(url, plan_id, device=device, card=card)
    refusal = expansion.refusal()
    if refusal is not None and not force:
        raise refusal
    if any(j.stage == JobStage.TUNE.value for j in expansion.jobs):
        # tuned plans: the studies enqueue their trials, then the final jobs with the best params
        from zolab.platform import tuning

        started = tuning.start(url, plan_id, device=expansion.device)
        return ScheduleReport(expansion, started.created, started.known)
    rows = [
        Job(key=j.key, plan_id=plan_id, variant_id=j.variant_id, task=j.task, seed=j.seed, stage=j.stage,
            config=j.config, max_attempts=max_attempts, est_memory_bytes=j.estimate.memory_bytes,
            est_gpu_hours=j.estimate.gpu_hours, est_step_seconds=j.estimate.step_seconds,
            progress_total=j.config["steps"])
        for j in expansion.jobs
    ]
    created, existing = JobQueue(url).enqueue(rows)
    return ScheduleReport(expansion, created, existing)


__all__ = [
    "CONFIRM_ABOVE_GPU_HOURS",
    "BudgetExceeded",
    "Expansion",
    "JobSpec",
    "LaunchCheck",
    "ScheduleReport",
    "SchedulerError",
    "SkippedAblation",
    "VariantInfo",
    "expand",
    "expand_prepared",
    "job_key",
    "schedule",
]
