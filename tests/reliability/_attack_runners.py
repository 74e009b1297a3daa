"""Run functions for the orchestrator attacks (loaded by worker processes via ``--runner``)."""

from __future__ import annotations

import os
import signal

from tests.platform._runners import instant
from zolab.runners.config import RunConfig
from zolab.runners.reporter import Checkpoint, Reporter, Result


def dies(config: RunConfig, reporter: Reporter, resume: Checkpoint | None = None) -> Result:
    """A job with ``task_options.die`` kills its own worker process (SIGKILL) at its first step: a
    worker that dies every time it runs the job (a segfaulting extension, the OOM killer)."""
    if config.task_options.get("die"):
        reporter.progress(1, config.steps, 1.0)
        os.kill(os.getpid(), signal.SIGKILL)
    return instant(config, reporter, resume)
