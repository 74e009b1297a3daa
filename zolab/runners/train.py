"""``run(config, reporter, resume) -> Result``: the only entry point the platform calls.

Flow: load model + task, sample seeded splits, zero-shot eval (dev and test), then the step loop
(one optimizer step per batch; train loss, progress and heartbeat to the reporter; dev eval every
``eval_every``; a checkpoint every ``checkpoint_every``), then the final test eval. ``steps=0``
is evaluation only. The batch at step t is a pure function of (seed, t), so replay and resume need
no data-loader state. The model stays in eval mode (no dropout) for every method.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from zolab.runners import checkpoint as ckpts
from zolab.runners.config import RunConfig
from zolab.runners.errors import NonFiniteLossError
from zolab.runners.metrics import (
    MethodMemory,
    RunMeter,
    accuracy,
    convergence_step,
    gpu_peaks,
    loss_slope,
    macro_f1,
    peak_rss_bytes,
)
from zolab.runners.models import base_identity, load_model, parse_tiny, trainable_parameters
from zolab.runners.objectives import Batch, LabelScorer, get_objective, make_loss
from zolab.runners.optim import build_optimizer
from zolab.runners.optim.base import ZOOptimizer
from zolab.runners.reporter import Checkpoint, NullReporter, Reporter, Result
from zolab.runners.tasks import get_task
from zolab.runners.tasks.base import Example, Splits
from zolab.runners.tasks.loaders import sample_splits

_MAX_CURVE_POINTS = 500


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available")
    return dev


class BatchSchedule:
    """Batch t = positions ``t*bs .. t*bs+bs-1`` of an endless stream of seeded per-epoch permutations."""

    def __init__(self, examples: Sequence[Example], batch_size: int, seed: int) -> None:
        self.examples = list(examples)
        self.batch_size = batch_size
        self.seed = seed
        self._perms: dict[int, list[int]] = {}

    def _perm(self, epoch: int) -> list[int]:
        if epoch not in self._perms:
            order = list(range(len(self.examples)))
            random.Random(f"batches:{self.seed}:{epoch}").shuffle(order)
            self._perms = {epoch: order}  # keep one epoch: O(n) memory
        return self._perms[epoch]

    def batch(self, step: int) -> list[Example]:
        n = len(self.examples)
        out = []
        for j in range(step * self.batch_size, (step + 1) * self.batch_size):
            out.append(self.examples[self._perm(j // n)[j % n]])
        return out


@torch.no_grad()
def evaluate(model: nn.Module, scorer: LabelScorer, examples: Sequence[Example], batch_size: int) -> tuple[float, float]:
    """(accuracy, macro-F1) of length-normalised label-word predictions."""
    if not examples:
        return math.nan, math.nan
    preds: list[int] = []
    for i in range(0, len(examples), batch_size):
        preds += scorer.predict(model, scorer.encode(examples[i:i + batch_size])).tolist()
    gold = [ex.label for ex in examples]
    return accuracy(preds, gold), macro_f1(preds, gold)


def _closure(loss_fn: Callable[[Batch], torch.Tensor], batch: Batch, opt: torch.optim.Optimizer,
             meter: RunMeter) -> Callable[[], torch.Tensor]:
    """ZO: the loss on ``batch`` (the optimizer calls it under no_grad); FO: loss + backward."""
    needs_grad = getattr(opt, "needs_grad", False)

    def closure() -> torch.Tensor:
        meter.forward_passes += 1
        if not needs_grad:
            return loss_fn(batch)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(batch)
        loss.backward()
        return loss

    return closure


class _Run:
    """The state of one run; methods are the phases of :func:`run`."""

    def __init__(self, config: RunConfig, reporter: Reporter) -> None:
        self.config = config
        self.reporter = reporter
        self.device = resolve_device(config.device)
        self.meter = RunMeter(self.device)
        self.model, self.tokenizer = load_model(config, self.device)
        self.base = base_identity(config)
        task = get_task(config.task, config.task_options)
        pool = task.loader({**task.options, **config.task_options}, config.seed)
        self.splits: Splits = sample_splits(
            pool, num_labels=task.num_labels, seed=config.seed, train_size=config.train_size,
            dev_size=config.dev_size, test_size=config.test_size, k_shot=config.k_shot)
        self.scorer = LabelScorer(self.tokenizer, task, prompt=config.prompt, max_length=config.max_length,
                                  device=self.device)
        self.named = trainable_parameters(self.model)
        self.opt = build_optimizer(config, self.named, model=self.model, device=self.device)
        self.memory = MethodMemory(self.model, self.opt)   # weights + optimizer state + z buffers held
        needs_grad = getattr(self.opt, "needs_grad", False)
        self.loss_fn = make_loss(self.model, self.scorer, get_objective(config.objective, needs_grad))
        self.schedule = BatchSchedule(self.splits.train, config.batch_size, config.seed)
        self.eval_bs = max(32, config.batch_size)
        self.log_every = max(1, config.steps // _MAX_CURVE_POINTS)

    def settle(self) -> None:
        """Weights = theta before anyone reads them (a no-op when the optimizer's settle points
        match this loop's eval/checkpoint steps, as :func:`settle_points` makes them)."""
        if isinstance(self.opt, ZOOptimizer):
            self.opt.settle()

    def evaluate_test(self) -> tuple[float, float]:
        self.settle()
        return evaluate(self.model, self.scorer, self.splits.test, self.eval_bs)

    def eval_dev(self, step: int) -> float:
        self.settle()
        acc, _ = evaluate(self.model, self.scorer, self.splits.dev, self.eval_bs)
        self.meter.dev_curve.append((step, acc))
        self.reporter.metric(step, "dev_accuracy", acc)
        return acc

    def checkpoint(self, step: int) -> Checkpoint:
        self.settle()
        if isinstance(self.opt, ZOOptimizer):
            return ckpts.zo_checkpoint(self.opt, self.base)
        return ckpts.fo_checkpoint(self.opt, self.named, step, self.base, self.config)

    def restore(self, resume: Checkpoint) -> int:
        if isinstance(self.opt, ZOOptimizer):
            ckpts.replay(self.opt, resume, self.base)
        else:
            ckpts.fo_restore(self.opt, self.named, resume, self.base)
        return resume.step

    def train(self, start: int) -> float | None:
        cfg, rep = self.config, self.reporter
        window: list[float] = []
        last: float | None = None
        for t in range(start, cfg.steps):
            step = t + 1
            batch = self.scorer.encode(self.schedule.batch(t))
            loss = self.opt.step(_closure(self.loss_fn, batch, self.opt, self.meter))
            value = float(loss.detach() if isinstance(loss, torch.Tensor) else loss)
            if not math.isfinite(value) and not isinstance(self.opt, ZOOptimizer):
                raise NonFiniteLossError(step, value)
            last = value if math.isfinite(value) else last
            window.append(value)
            if step % self.log_every == 0 or step == cfg.steps:
                mean = sum(window) / len(window)
                self.meter.losses.append((step, mean))
                rep.metric(step, "train_loss", mean)
                window = []
            if step % cfg.eval_every == 0 or step == cfg.steps:
                self.eval_dev(step)
            if step % cfg.checkpoint_every == 0:
                rep.checkpoint(self.checkpoint(step))
            rep.heartbeat()
            rep.progress(step, cfg.steps, value)
        return last


@contextlib.contextmanager
def _cpu_threads(config: RunConfig):
    """Tiny models on CPU run single-threaded: intra-op threads only add synchronisation (10x+ slower
    on a busy machine). Restored afterwards; real models keep torch's default."""
    if not (parse_tiny(config.model) and resolve_device(config.device).type == "cpu"):
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run(config: RunConfig, reporter: Reporter | None = None, resume: Checkpoint | None = None) -> Result:
    """Fine-tune ``config.model`` on ``config.task`` with ``config.method``; report as it goes."""
    with _cpu_threads(config):
        return _run(config, reporter or NullReporter(), resume)


def _run(config: RunConfig, reporter: Reporter, resume: Checkpoint | None) -> Result:
    r = _Run(config, reporter)
    reporter.heartbeat()
    start = 0
    zero_acc: float | None = None
    zero_dev: float | None = None
    if resume is not None:
        start = r.restore(resume)
    else:
        zero_dev = r.eval_dev(0)
        zero_acc, zero_f1 = r.evaluate_test()
    final_loss = r.train(start)
    if config.steps == 0 and zero_acc is not None:
        acc, f1 = zero_acc, zero_f1  # zero-shot reference: the weights did not move, evaluate once
    else:
        acc, f1 = r.evaluate_test()
    alloc, reserved = gpu_peaks(r.device)
    return Result(
        accuracy=acc, f1=f1, steps=config.steps, forward_passes=r.meter.forward_passes,
        wall_time_s=r.meter.wall_time, gpu_hours=r.meter.gpu_hours(),
        peak_memory_allocated=alloc, peak_memory_reserved=reserved, peak_rss=peak_rss_bytes(),
        final_loss=final_loss, zero_shot_accuracy=zero_acc if resume is None else None,
        convergence_step=convergence_step(r.meter.dev_curve), loss_slope=loss_slope(r.meter.losses),
        dev_accuracy=r.meter.dev_curve[-1][1] if r.meter.dev_curve else None, device=str(r.device),
        method_memory_bytes=r.memory.total(), extra=_extra(r, zero_dev, start),
    )


def _extra(r: _Run, zero_dev: float | None, start: int) -> dict[str, Any]:
    return {
        "method": r.config.method, "base": r.base, "resumed_from": start or None,
        "zero_shot_dev_accuracy": zero_dev,
        "trainable_params": sum(p.numel() for _, p in r.named),
        "train_examples": len(r.splits.train), "dev_examples": len(r.splits.dev),
        "test_examples": len(r.splits.test),
        "forwards_per_step": getattr(r.opt, "forwards_per_step", None),
        "dev_curve": r.meter.dev_curve, "loss_curve": r.meter.losses,
        "method_memory": r.memory.parts(),
    }
