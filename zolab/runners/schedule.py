"""Learning-rate schedules: ``lr_schedule`` (constant | linear | cosine) with ``warmup_steps``.

The semantics are Hugging Face transformers' ``get_constant_schedule_with_warmup``,
``get_linear_schedule_with_warmup`` and ``get_cosine_schedule_with_warmup`` (num_cycles 0.5), which
the MeZO and ZO-Bench trainers use through ``lr_scheduler_type``: the update of 0-based step ``t``
uses ``lr * factor(t)`` with

* warmup (``t < warmup_steps``): ``t / max(1, warmup_steps)`` (so the first step of a warmup moves by 0);
* ``constant``: 1 after the warmup (MeZO's default: constant, no warmup);
* ``linear``:   ``max(0, (steps - t) / max(1, steps - warmup_steps))``, reaching 0 at ``steps``;
* ``cosine``:   ``max(0, 0.5 (1 + cos(pi progress)))``, ``progress = (t - warmup) / max(1, steps - warmup)``.

The factor is a pure function of ``t`` (no scheduler state), so a replayed or resumed run sets the
very same lr before each step and stays bit-identical to an uninterrupted one. It is written out
here rather than wrapping ``torch.optim.lr_scheduler.LambdaLR``: a LambdaLR's position is state that
a trajectory replay would have to step in lockstep; tests check parity with the transformers
functions step by step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from zolab.runners.config import RunConfig


def lr_factor(kind: str, step: int, warmup_steps: int, total_steps: int) -> float:
    """Multiplier of the base lr for the update of 0-based ``step`` (HF transformers semantics)."""
    if step < warmup_steps:
        return float(step) / float(max(1, warmup_steps))
    if kind == "constant":
        return 1.0
    span = float(max(1, total_steps - warmup_steps))
    if kind == "linear":
        return max(0.0, float(total_steps - step) / span)
    if kind == "cosine":
        progress = float(step - warmup_steps) / span
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * 0.5 * 2.0 * progress)))
    raise ValueError(f"lr_schedule {kind!r} is not one of constant, linear, cosine")


@dataclass(frozen=True)
class LRSchedule:
    """The lr of every step of one run; :meth:`apply` writes it into the optimizer's param groups."""

    kind: str
    base_lr: float
    warmup_steps: int
    total_steps: int

    @classmethod
    def from_config(cls, config: RunConfig) -> LRSchedule:
        return cls(config.lr_schedule, float(config.lr), int(config.warmup_steps), int(config.steps))

    @property
    def trivial(self) -> bool:
        """Constant with no warmup (MeZO): the optimizer's own lr is never touched."""
        return self.kind == "constant" and self.warmup_steps == 0

    def lr(self, step: int) -> float:
        """The lr of 0-based ``step``."""
        return self.base_lr * lr_factor(self.kind, step, self.warmup_steps, self.total_steps)

    def apply(self, opt: torch.optim.Optimizer, step: int) -> float:
        """Set every param group's lr to that of 0-based ``step`` (before its update); returns it."""
        lr = self.lr(step)
        if not self.trivial:
            for group in opt.param_groups:
                group["lr"] = lr
        return lr
