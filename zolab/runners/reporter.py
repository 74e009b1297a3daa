"""The runner's only channel to the outside world.

``run(config, reporter)`` calls these methods; the platform implements them with the database
(``zolab.platform.worker``), tests and ``zolab run-one`` with :class:`MemoryReporter`.
A reporter may raise :class:`JobCancelled` from ``heartbeat``/``progress`` to stop a run cleanly.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


class JobCancelled(Exception):
    """Raised by a reporter to stop a run (the job was cancelled or lost its lease)."""


@dataclass
class Checkpoint:
    """Everything needed to resume a run.

    ZO runs: ``trajectory`` is the list of (seed, projected_grad) per step (a few KB) and
    ``optimizer_state`` the small extra state of momentum/Adam variants (tensors as lists),
    ``base`` identifies the starting weights. First-order runs: ``blob_path`` points to a
    ``torch.save`` of trainable weights + optimizer state. ``totals`` (every run) is
    :class:`zolab.runners.checkpoint.RunTotals` as a dict: what the run accumulated so far
    (counts, times, zero-shot metrics, curves), so a resumed run's result is the whole run's.
    """

    step: int
    base: str                                   # identity of the base weights (model id + init seed)
    trajectory: list[tuple[int, float]] = field(default_factory=list)
    optimizer_state: dict[str, Any] = field(default_factory=dict)
    blob_path: str | None = None
    rng_state: dict[str, Any] = field(default_factory=dict)  # data-order position etc.
    totals: dict[str, Any] = field(default_factory=dict)     # RunTotals.to_dict(); {} in old checkpoints

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Checkpoint:
        d = dict(d)
        d["trajectory"] = [tuple(x) for x in d.get("trajectory", [])]
        return cls(**d)


@dataclass
class Result:
    """What a finished run reports. Memory in bytes, times in seconds."""

    accuracy: float
    f1: float
    steps: int
    forward_passes: int
    wall_time_s: float
    gpu_hours: float
    peak_memory_allocated: int | None = None   # GPU: torch.cuda.max_memory_allocated
    peak_memory_reserved: int | None = None    # GPU: torch.cuda.max_memory_reserved
    peak_rss: int | None = None                # CPU: peak resident set size of the process
    final_loss: float | None = None
    zero_shot_accuracy: float | None = None
    convergence_step: int | None = None        # first eval step reaching 90% of final dev accuracy
    loss_slope: float | None = None            # fitted slope of the training loss per step
    dev_accuracy: float | None = None
    device: str = "cpu"
    diverged: bool = False                     # smoothed train loss > 10x its first value, or a non-finite dev metric
    method_memory_bytes: int | None = None     # bytes the method holds: weights + optimizer state + z buffers
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Result:
        return cls(**d)


@runtime_checkable
class Reporter(Protocol):
    """Callbacks from a running job. All must be cheap; the runner calls them from its step loop."""

    def progress(self, step: int, total: int, loss: float | None = None) -> None: ...

    def metric(self, step: int, name: str, value: float) -> None: ...

    def heartbeat(self) -> None: ...

    def checkpoint(self, ckpt: Checkpoint) -> None: ...


class NullReporter:
    """Discards everything."""

    def progress(self, step: int, total: int, loss: float | None = None) -> None:
        pass

    def metric(self, step: int, name: str, value: float) -> None:
        pass

    def heartbeat(self) -> None:
        pass

    def checkpoint(self, ckpt: Checkpoint) -> None:
        pass


class MemoryReporter:
    """Keeps everything in memory (tests, ``zolab run-one``). ``stop_at`` raises JobCancelled at a step."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.progress_calls: list[tuple[int, int, float | None]] = []
        self.metrics: list[tuple[int, str, float]] = []
        self.heartbeats: list[float] = []
        self.checkpoints: list[Checkpoint] = []
        self.stop_at = stop_at

    def progress(self, step: int, total: int, loss: float | None = None) -> None:
        self.progress_calls.append((step, total, loss))
        if self.stop_at is not None and step >= self.stop_at:
            raise JobCancelled(f"stopped at step {step}")

    def metric(self, step: int, name: str, value: float) -> None:
        self.metrics.append((step, name, value))

    def heartbeat(self) -> None:
        self.heartbeats.append(time.time())

    def checkpoint(self, ckpt: Checkpoint) -> None:
        self.checkpoints.append(Checkpoint.from_dict(ckpt.to_dict()))

    def series(self, name: str) -> list[tuple[int, float]]:
        return [(s, v) for s, n, v in self.metrics if n == name]
