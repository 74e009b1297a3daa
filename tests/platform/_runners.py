"""Trivial run functions with the runner's signature ``run(config, reporter, resume) -> Result``.

Workers load them through ``ZOLAB_RUNNER=tests.platform._runners:<name>`` so queue tests can drain
hundreds of jobs in seconds; the real path (``zolab.runners.train:run``) is tested separately.
Behaviour is driven by ``config.task_options`` so each job can ask for a fault.
"""

from __future__ import annotations

import os
import time

from zolab.runners.config import RunConfig
from zolab.runners.errors import NonFiniteLossError
from zolab.runners.reporter import Checkpoint, Reporter, Result


def instant(config: RunConfig, reporter: Reporter, resume: Checkpoint | None = None) -> Result:
    """Reports a few steps and returns numbers derived from the seed (so results are checkable)."""
    opts = config.task_options
    start = resume.step if resume else 0
    sleep = float(opts.get("sleep", 0.0))
    for step in range(start + 1, config.steps + 1):
        if sleep:
            time.sleep(sleep)
        loss = 1.0 / step
        if step == opts.get("nan_step"):
            raise NonFiniteLossError(step, float("nan"))
        if step == opts.get("oom_step"):
            import torch  # only here: workers of the fast tests start without torch

            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if step == opts.get("crash_step"):
            raise RuntimeError(f"boom at step {step}")
        reporter.progress(step, config.steps, loss)
        reporter.metric(step, "train_loss", loss)
        if step % config.checkpoint_every == 0:
            reporter.checkpoint(Checkpoint(step=step, base="fake", trajectory=[(step, loss)]))
    marker = opts.get("marker_dir")
    if marker:  # one file per execution: lets a test count how often a job body ran
        with open(os.path.join(marker, f"{config.seed}-{os.getpid()}-{time.time_ns()}"), "w") as fh:
            fh.write(str(start))
    return Result(accuracy=(config.seed % 100) / 100, f1=0.5, steps=config.steps, forward_passes=2 * config.steps,
                  wall_time_s=0.01, gpu_hours=0.0, final_loss=1.0 / max(1, config.steps),
                  extra={"resumed_from": start, "pid": os.getpid()})
