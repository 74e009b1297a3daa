"""What the dashboard's buttons do: parse/resolve an upload, save, preview, launch, cancel, retry.

Thin calls into ``zolab.platform`` (parsers, components, upload, scheduler, queue, executors); no
SQL and no business rules here, so the CLI and the UI behave the same. Every write clears the
cached reads (:func:`zolab.ui.data.clear`).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zolab import config
from zolab.platform.components import component_names
from zolab.platform.errors import PlanError
from zolab.platform.estimates import StepTimeModel, estimate_job
from zolab.platform.parsers.source import MAX_BYTES
from zolab.platform.upload import Prepared, prepare, store
from zolab.runners.config import RunConfig
from zolab.ui import data

#: file types the upload accepts (``.txt``: planner trajectories such as the seed plans)
UPLOAD_TYPES = ("yaml", "yml", "md", "jsonl", "txt")
BASELINES_DIR = config.ABLATIONS_DIR / "baselines"


def check_upload(name: str, size: int) -> None:
    """Refuse a file by extension or size before reading it (PlanError naming the file)."""
    ext = Path(name).suffix.lower().lstrip(".")
    if ext not in UPLOAD_TYPES:
        raise PlanError.single(
            f"unsupported file type {'.' + ext if ext else '(none)'}; upload one of "
            + ", ".join("." + t for t in UPLOAD_TYPES), file=name)
    if size > MAX_BYTES:
        raise PlanError.single(f"file is {size:,} bytes; plans are limited to {MAX_BYTES:,} bytes", file=name)


def baseline_files() -> list[Path]:
    """Baselines a JSONL/markdown plan can take its RunConfig, tasks and seeds from: the shipped
    ``ablations/baselines/`` plus any folders in ``ZOLAB_BASELINES`` (os.pathsep-separated)."""
    dirs = [BASELINES_DIR, *(Path(p) for p in os.environ.get("ZOLAB_BASELINES", "").split(os.pathsep) if p)]
    return sorted({f for d in dirs if d.is_dir() for f in d.glob("*.y*ml")}, key=lambda f: (f.name, str(f)))


def prepare_upload(raw: bytes, name: str, *, baseline: str | Path | None = None,
                   tasks: list[str] | None = None, seeds: list[int] | None = None,
                   overrides: Mapping[str, str] | None = None) -> Prepared:
    """Parse, validate, resolve (with the user's component overrides) and expand; writes nothing.
    Raises PlanError with every problem located."""
    check_upload(name, len(raw))
    return prepare(raw, filename=name, baseline=baseline, tasks=tasks, seeds=seeds, overrides=overrides)


def components() -> list[str]:
    return component_names()


@dataclass(frozen=True)
class UploadEstimate:
    """What launching would cost, before saving (default step times: no past runs consulted)."""

    variants: int
    jobs: int
    gpu_hours: float             # hours on ``device`` (GPU-hours, or CPU-hours for device "cpu")
    max_memory_bytes: int
    budget_gpu_hours: float | None
    device: str = "cpu"

    @property
    def within_budget(self) -> bool:
        return self.budget_gpu_hours is None or self.gpu_hours <= self.budget_gpu_hours


def estimate_upload(prepared: Prepared, device: str = "cpu") -> UploadEstimate:
    """Variants, jobs (tuning trials included), hours and peak memory of a plan before it is saved
    (thread-safe: ``estimates.model_shape`` serialises transformers' first use across Streamlit's
    script threads)."""
    from zolab.platform import tuning

    plan = prepared.plan
    times = StepTimeModel()
    tune = tuning.settings_of(plan.canonical()) if plan.tuning is not None else None
    configs: list[RunConfig] = []
    for v in prepared.variants:
        for task in plan.tasks:
            if tune is not None and tuning.is_tunable(v.config):
                configs += [tuning.trial_config(v.config, task, tune, {})] * tune.trials
            configs += [RunConfig.from_dict({**v.config, "task": task, "seed": seed}) for seed in plan.seeds]
    hours, mem = 0.0, 0
    for cfg in configs:
        est = estimate_job(cfg, times, device)
        hours += est.gpu_hours
        mem = max(mem, est.memory_bytes)
    jobs = len(configs)
    budget = plan.budget.gpu_hours if plan.budget is not None else None
    return UploadEstimate(len(prepared.variants), jobs, hours, mem, budget, device)


#: launching more than this many estimated hours with no budget in the plan asks for confirmation
CONFIRM_HOURS_WITHOUT_BUDGET = 10.0


def hours_unit(device: str) -> str:
    """What an estimate's hours are: GPU-hours, or CPU-hours of this machine."""
    return "CPU-hours on this machine" if device == "cpu" else "GPU-hours"


def launch_needs_confirmation(hours: float, budget: float | None, unit: str = "GPU-hours") -> str | None:
    """Why launching should be confirmed first (None: launch at once): above the plan's budget, or
    above :data:`CONFIRM_HOURS_WITHOUT_BUDGET` when the plan sets no budget."""
    if budget is not None and hours > budget:
        return f"the estimate ({hours:.3g} {unit}) is over the plan's budget of {budget:.3g}"
    if budget is None and hours > CONFIRM_HOURS_WITHOUT_BUDGET:
        return (f"the estimate ({hours:.3g} {unit}) is above {CONFIRM_HOURS_WITHOUT_BUDGET:g} and the plan sets "
                "no budget")
    return None


def save(prepared: Prepared, *, allow_unresolved: bool = False) -> tuple[int, bool]:
    """Store the prepared plan (one transaction); ``(plan id, created)``. Raises PlanError."""
    result = store(prepared, url=data.db_url(), allow_unresolved=allow_unresolved)
    data.clear()
    return result.plan_id, result.created


def expansion(plan_id: int) -> Any:
    """Jobs, estimates and the budget verdict of a stored plan (writes nothing)."""
    from zolab.platform.scheduler import expand

    return expand(data.db_url(), plan_id)


def launch(plan_id: int, *, force: bool = False, workers: int = 1) -> tuple[int, int, int]:
    """Enqueue the plan's jobs and start local workers when none is running.

    Returns (jobs created, jobs already there, workers started). Raises ``BudgetExceeded``.
    """
    from zolab.platform.scheduler import schedule

    report = schedule(data.db_url(), plan_id, force=force)
    started = 0
    if report.created and data._active_workers(data.db_url()) == 0:  # fresh read, not the cached one
        started = start_workers(plan_id, workers)
    data.clear()
    return len(report.created), report.existing, started


def start_workers(plan_id: int | None, n: int = 1) -> int:
    """Start ``n`` detached local worker processes (the local executor's command and GPU pinning);
    they outlive the page, log under ``ZOLAB_HOME/logs`` and exit when the plan's queue is drained."""
    from zolab.platform.executors.local import gpu_count, worker_command, worker_env
    from zolab.platform.queue import JobQueue

    url = data.db_url()
    JobQueue(url).requeue_expired()  # jobs of workers that died earlier go first
    logs = config.home_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    gpus = gpu_count()
    for i in range(n):
        with open(logs / f"ui-worker-plan{plan_id}-{i}.log", "ab") as log:
            subprocess.Popen(worker_command(url, plan_id=plan_id), env=worker_env(i, gpus), stdout=log,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    return n


def cancel(job_id: int) -> str:
    from zolab.platform.queue import JobQueue

    status = JobQueue(data.db_url()).cancel(job_id, by="ui")
    data.clear()
    return str(getattr(status, "value", status))


def retry(job_id: int) -> str:
    from zolab.platform.queue import JobQueue

    status = JobQueue(data.db_url()).retry(job_id, by="ui")
    data.clear()
    return str(getattr(status, "value", status))
