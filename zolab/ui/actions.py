"""What the dashboard's buttons do: parse/resolve an upload, save, preview, launch, cancel, retry.

Thin calls into ``zolab.platform`` (parsers, components, upload, scheduler, queue, executors); no
SQL and no business rules here, so the CLI and the UI behave the same. Every write clears the
cached reads (:func:`zolab.ui.data.clear`).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from zolab import config
from zolab.platform.components import component_names
from zolab.platform.errors import PlanError
from zolab.platform.parsers.source import MAX_BYTES
from zolab.platform.upload import Prepared, prepare, store
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


def preview_expansion(prepared: Prepared) -> Any:
    """The jobs and estimates a prepared plan will have once stored (the same numbers the stored
    plan shows: ``scheduler.expand_prepared``); writes nothing."""
    from zolab.platform.scheduler import expand_prepared

    return expand_prepared(data.db_url(), prepared)


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
