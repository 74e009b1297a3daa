"""Divergence: a run that finished its steps but blew up ends ``diverged``, not ``succeeded``.

The rule (the issue's, made precise):

* **train loss**: the *smoothed* train loss is the mean of the last :data:`WINDOW` (10) step losses
  (fewer at the start, so its first value is the first step's loss). The run diverges at the first
  step where the smoothed loss exceeds :data:`RATIO` (10) times that first value. The ratio only
  means something for a positive loss (cross-entropy); the non-differentiable objectives' losses
  (minus accuracy / F1, in [-1, 0]) are bounded and never diverge by this rule.
* **dev metric**: a dev evaluation whose accuracy is not finite, or whose label-word scores
  contained a NaN/inf (the model's logits are no longer numbers, whatever argmax then says).

Once diverged the runner stops training at that step (recorded with the reason); the final test
evaluation still runs so the result row has its numbers. A non-finite *train loss* is not
divergence: it keeps raising :class:`~zolab.runners.errors.NonFiniteLossError` (the job fails, not
retried), as before. The monitor's state travels in checkpoints, so a resumed run compares against
the first loss of the original run, not the first loss after the resume.
"""

from __future__ import annotations

import contextlib
import math
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

RATIO = 10.0
WINDOW = 10


@dataclass(frozen=True)
class Divergence:
    """Where and why a run diverged."""

    step: int
    reason: str


class DivergenceMonitor:
    """Feeds on step losses and dev evaluations; :attr:`found` is the first divergence (or None)."""

    def __init__(self, ratio: float = RATIO, window: int = WINDOW) -> None:
        self.ratio = ratio
        self.window = window
        self.first: float | None = None
        self.recent: deque[float] = deque(maxlen=window)
        self.found: Divergence | None = None

    @property
    def smoothed(self) -> float | None:
        return sum(self.recent) / len(self.recent) if self.recent else None

    def update(self, step: int, loss: float) -> Divergence | None:
        """Record the loss of ``step`` (1-based); returns the divergence when this step causes it."""
        if self.found is not None or not math.isfinite(loss):
            return None  # non-finite losses are the optimizer's NonFiniteLossError, not divergence
        self.recent.append(float(loss))
        if self.first is None:
            self.first = self.smoothed
        smooth = self.smoothed
        if self.first is not None and self.first > 0 and smooth is not None and smooth > self.ratio * self.first:
            self.found = Divergence(step, f"smoothed train loss {smooth:.4g} (mean of the last {len(self.recent)} "
                                          f"steps) exceeds {self.ratio:g}x its first value {self.first:.4g}")
            return self.found
        return None

    def check_eval(self, step: int, name: str, value: float, scores_finite: bool = True) -> Divergence | None:
        """A dev evaluation at ``step``: non-finite ``value`` or scores diverge the run."""
        if self.found is not None:
            return None
        if not math.isfinite(value):
            self.found = Divergence(step, f"{name} is {value} at step {step}")
        elif not scores_finite:
            self.found = Divergence(step, f"{name} at step {step}: the model's label-word scores are not finite")
        return self.found

    # -- checkpoints -----------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"first": self.first, "recent": list(self.recent)}

    def load(self, state: dict[str, Any] | None) -> None:
        if not state:
            return
        self.first = state.get("first")
        self.recent = deque((float(x) for x in state.get("recent", [])), maxlen=self.window)

    def extra(self) -> dict[str, Any]:
        """What the Result's ``extra`` says about divergence (empty for a healthy run)."""
        if self.found is None:
            return {}
        return {"diverged_reason": self.found.reason, "diverged_at_step": self.found.step}


class FiniteWatch:
    """Set by :func:`watch_scores`: whether every logit the model produced was finite."""

    def __init__(self) -> None:
        self.finite = True


@contextlib.contextmanager
def watch_scores(model: nn.Module) -> Iterator[FiniteWatch]:
    """While active, note whether the model's output logits contain NaN/inf (a forward hook on the
    output head, or on the model when it has none; costs one reduction per forward)."""
    watch = FiniteWatch()
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    target = head if head is not None else model

    def hook(_module: nn.Module, _args: Any, output: Any) -> None:
        logits = output if isinstance(output, torch.Tensor) else getattr(output, "logits", None)
        if isinstance(logits, torch.Tensor) and watch.finite and not bool(torch.isfinite(logits).all()):
            watch.finite = False

    handle = target.register_forward_hook(hook)
    try:
        yield watch
    finally:
        handle.remove()
