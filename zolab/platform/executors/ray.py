"""Ray executor (extra ``zolab[ray]``): the same worker loop, run as Ray tasks.

Each of ``workers`` Ray tasks runs :class:`zolab.platform.worker.Worker` until the plan is drained.
On clusters with GPUs a task asks for a *fraction* of a GPU sized by the largest memory estimate of
the plan's queued jobs (``num_gpus = est / GPU memory``, rounded up to 1/20), so Ray packs several
small MeZO workers onto one GPU; Ray sets ``CUDA_VISIBLE_DEVICES`` for each task, and the worker's
own packing check (estimates vs free memory) still applies. Without GPUs each task takes one CPU.
Results reach the database exactly as with the local executor: through the queue, by the workers.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from zolab.db.repo import jobs as repo
from zolab.db.retry import outlast, retry_on_transient
from zolab.db.session import session_scope
from zolab.platform.executors.local import Progress, sigterm_as_interrupt, snapshot, watch
from zolab.platform.queue import JobQueue
from zolab.platform.worker import RUNNER_ENV


def gpu_fraction(est_bytes: int | None, gpu_bytes: int | None, step: float = 0.05) -> float:
    """The share of one GPU a worker asks Ray for: its largest job's estimate, rounded up to ``step``."""
    if not est_bytes or not gpu_bytes:
        return 1.0
    frac = math.ceil(min(1.0, est_bytes / gpu_bytes) / step) * step
    return round(max(step, min(1.0, frac)), 4)


def _run_worker(url: str | None, plan_id: int | None, runner: str | None, lease_s: float | None) -> dict[str, Any]:
    """The body of one Ray task (module-level so Ray can pickle it by reference)."""
    from zolab.platform.worker import Worker

    return asdict(Worker(url, runner=runner, plan_id=plan_id, lease_s=lease_s).run())


def _gpu_memory() -> int | None:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return None
    if not torch.cuda.is_available():
        return None
    return int(torch.cuda.get_device_properties(0).total_memory)


def run_ray(
    url: str | None,
    workers: int = 2,
    *,
    plan_id: int | None = None,
    runner: str | None = None,
    lease_s: float | None = None,
    address: str | None = None,
    gpu_memory_bytes: int | None = None,
    show_progress: bool = False,
    poll_s: float = 0.5,
    console=None,
    on_tick: Callable[[Progress], None] | None = None,
) -> Progress:
    """Drain the queue with ``workers`` Ray tasks; starts a local Ray instance unless one is running
    (or ``address`` names a cluster), and shuts down only what it started. While the tasks run, the
    same live progress as the local executor (read from the database) is shown; Ctrl-C cancels the
    tasks (each worker gives its job back with its checkpoint)."""
    import ray

    outlast(lambda: JobQueue(url).requeue_expired(), "requeue expired leases", who="zolab run")
    root = str(Path(__file__).resolve().parents[3])
    env = {"PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)}
    if runner or os.environ.get(RUNNER_ENV):
        env[RUNNER_ENV] = runner or os.environ[RUNNER_ENV]
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, num_cpus=None if address else max(workers, 1), include_dashboard=False,
                 runtime_env={"env_vars": env}, log_to_driver=True, configure_logging=False)
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        options: dict[str, Any] = {"num_cpus": 1, "max_retries": 0}
        if gpus:
            def read():
                with session_scope(url) as s:
                    return repo.max_queued_memory(s, plan_id)

            est = retry_on_transient(read, what="read memory estimates")
            options["num_gpus"] = gpu_fraction(est, gpu_memory_bytes or _gpu_memory())
        task = ray.remote(_run_worker).options(**options)
        refs = [task.remote(url, plan_id, runner, lease_s) for _ in range(workers)]

        def alive() -> int:
            return len(ray.wait(refs, num_returns=len(refs), timeout=0)[1])

        def cancel() -> None:
            for ref in refs:
                ray.cancel(ref)

        with sigterm_as_interrupt():
            watch(url, plan_id, alive, workers=workers, show_progress=show_progress, poll_s=poll_s,
                  console=console, on_tick=on_tick, on_interrupt=cancel)
        ray.get(refs)  # a task that raised raises here; per-worker counts: the database holds the truth
    finally:
        if started:
            ray.shutdown()
    return outlast(lambda: snapshot(url, plan_id, workers, running=0), "read the final progress", who="zolab run")


__all__ = ["gpu_fraction", "run_ray"]
