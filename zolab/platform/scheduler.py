"""Stored plan -> jobs: every variant x task x seed, with estimates and the budget verdict.

The variants themselves (baseline + each resolved/inverted ablation x replacement, duplicates by
config hash merged and labelled with every ablation they serve) are made at upload
(``zolab.platform.variants``); this module reads them back, adds tasks and seeds, and enqueues.
``no_op`` and ``unresolved`` ablations have no variant and no job; they are listed with their reason.
A variant's ``tuned_params[task]`` (written by Optuna tuning) override its config in the final jobs; tuning
trials are jobs too (stage ``tune``, ``study_name``, ``trial_number``, key from :func:`job_key` with
``trial=``) and go through the same queue.

A plan makes at most ``max_jobs`` jobs (default 10,000, ``--max-jobs``): :func:`expand` counts
variants x tasks x (seeds + trials) from the stored rows before it builds a single job.

Enqueueing is idempotent: a job's key is ``p<plan>:v<variant>:<task>:s<seed>:final``, so running a plan
again (after a crash, or to add nothing) never duplicates a job; finished jobs stay finished.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from zolab.db.models import Job, JobStage
from zolab.db.repo import jobs as repo
from zolab.db.retry import retry_on_transient
from zolab.db.session import session_scope
from zolab.platform.estimates import JobEstimate, StepTimeModel, estimate_job
from zolab.platform.intake_checks import DEFAULT_MAX_JOBS, JobCount, cap_message, stored_count
from zolab.platform.queue import JobQueue
from zolab.runners.config import RunConfig

SKIPPED_STATUSES = ("no_op", "unresolved")


class SchedulerError(Exception):
    """The plan cannot be scheduled (one human line)."""


class BudgetExceeded(SchedulerError):
    def __init__(self, estimated: float, budget: float) -> None:
        super().__init__(
            f"estimated {estimated:.2f} GPU hours exceeds the plan's budget of {budget:.2f} GPU hours "
            "(use --force to run anyway)"
        )
        self.estimated, self.budget = estimated, budget


class JobCapExceeded(SchedulerError):
    def __init__(self, count: JobCount, max_jobs: int) -> None:
        super().__init__(cap_message(count, max_jobs, bound=False))
        self.count, self.max_jobs = count, max_jobs


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

    @property
    def total_gpu_hours(self) -> float:
        return sum(j.estimate.gpu_hours for j in self.jobs)

    @property
    def max_memory_bytes(self) -> int:
        return max((j.estimate.memory_bytes for j in self.jobs), default=0)

    @property
    def within_budget(self) -> bool:
        return self.budget_gpu_hours is None or self.total_gpu_hours <= self.budget_gpu_hours

    def verdict(self) -> str:
        if self.budget_gpu_hours is None:
            return f"no budget set; estimated {self.total_gpu_hours:.3f} GPU hours"
        word = "within" if self.within_budget else "OVER"
        return f"{word} budget: estimated {self.total_gpu_hours:.3f} of {self.budget_gpu_hours:.3f} GPU hours"


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


def expand(url: str | None, plan_id: int, *, device: str | None = None,
           max_jobs: int | None = DEFAULT_MAX_JOBS) -> Expansion:
    """Read a stored plan and list its jobs with estimates (writes nothing).

    ``device`` (``cpu`` | ``gpu``) is where jobs with ``device: auto`` are estimated to run
    (default: this machine); jobs that name their device keep it. More than ``max_jobs`` jobs
    (None: no cap) raise :class:`JobCapExceeded` before any is built."""
    device = device or default_device()

    def tx():
        with session_scope(url) as s:
            parts = repo.plan_parts(s, plan_id)
            if parts is None:
                raise SchedulerError(f"no plan with id {plan_id}")
            plan, ablations, variants = parts
            samples = {}
            for v in variants:
                key = (v.config.get("model"), v.config.get("method"))
                if key not in samples:
                    samples[key] = repo.step_time_samples(s, *key)
            return plan, ablations, variants, samples

    plan, ablations, variants, samples = retry_on_transient(tx, what="read a plan")
    pj = plan.plan_json or {}
    tasks, seeds = list(pj.get("tasks") or []), [int(x) for x in pj.get("seeds") or []]
    if not tasks or not seeds:
        raise SchedulerError(f"plan {plan.id} ({plan.name}) lists no tasks or no seeds")
    count = stored_count(len(variants), pj)
    if max_jobs is not None and count.jobs > max_jobs:
        raise JobCapExceeded(count, max_jobs)
    skipped = [SkippedAblation(a.name, a.status, a.explanation or a.status) for a in ablations
               if a.status in SKIPPED_STATUSES]
    infos, jobs = [], []
    for v in variants:
        infos.append(VariantInfo(v.id, v.label, v.is_baseline, list(v.ablations or []), v.config_hash))
        times = StepTimeModel(samples[(v.config.get("model"), v.config.get("method"))])
        for task in tasks:
            if pj.get("tuning"):  # Optuna trials first (zolab.platform.tuning), then the final seeds
                from zolab.platform import tuning

                jobs.extend(tuning.planned_trials(
                    plan.id, pj, v.id, v.label, v.config, task,
                    lambda c, times=times: estimate_job(c, times, _job_device(c, device))))
            for seed in seeds:
                try:
                    tuned = (v.tuned_params or {}).get(task) or {}  # {task: best params} from tuning
                    cfg = RunConfig.from_dict({**v.config, **tuned, "task": task, "seed": seed})
                except (ValueError, TypeError) as exc:
                    raise SchedulerError(f"variant {v.label!r} of plan {plan.id}: {exc}") from exc
                jobs.append(JobSpec(job_key(plan.id, v.id, task, seed), v.id, v.label, task, seed,
                                    cfg.to_dict(), estimate_job(cfg, times, _job_device(cfg, device))))
    budget = (pj.get("budget") or {}).get("gpu_hours")
    return Expansion(plan.id, plan.name, tasks, seeds, infos, jobs, skipped,
                     float(budget) if budget is not None else None, device)


def schedule(url: str | None, plan_id: int, *, force: bool = False, device: str | None = None,
             max_attempts: int = 3, max_jobs: int | None = DEFAULT_MAX_JOBS) -> ScheduleReport:
    """Enqueue the plan's jobs that do not exist yet; refuse a plan over budget unless ``force``,
    and one of more than ``max_jobs`` jobs."""
    expansion = expand(url, plan_id, device=device, max_jobs=max_jobs)
    if not expansion.within_budget and not force:
        raise BudgetExceeded(expansion.total_gpu_hours, expansion.budget_gpu_hours or 0.0)
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
    "BudgetExceeded",
    "Expansion",
    "JobCapExceeded",
    "JobSpec",
    "ScheduleReport",
    "SchedulerError",
    "SkippedAblation",
    "VariantInfo",
    "expand",
    "job_key",
    "schedule",
]
