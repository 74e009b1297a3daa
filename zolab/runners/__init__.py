"""The MeZO runner: everything a job executes. Imports only torch, transformers and peft
(plus the standard library), so GPU workers without sqlalchemy/optuna/pydantic can run it.

Public entry point: :func:`zolab.runners.train.run` (imported lazily to keep ``import zolab.runners`` cheap).
"""

from zolab.runners.config import RunConfig
from zolab.runners.reporter import Checkpoint, MemoryReporter, NullReporter, Reporter, Result

__all__ = ["RunConfig", "Reporter", "NullReporter", "MemoryReporter", "Result", "Checkpoint"]
