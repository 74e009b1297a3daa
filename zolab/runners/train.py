"""``run(config, reporter, resume) -> Result``: the only entry point the platform calls.

Flow: load model + task, sample seeded splits, zero-shot eval (dev and test), then the step loop
(one optimizer step per batch; train loss, progress and heartbeat to the reporter; dev eval every
``eval_every``; a checkpoint every ``checkpoint_every``), then the final test eval. ``steps=0``
is evaluation only. The batch at step t is a pure function of (seed, t), so replay and resume need
no data-loader state; so is the lr of step t (:mod:`zolab.runners.schedule`). The model stays in
eval mode (no dropout) for every method. A run whose loss blows up stops early and is reported
``diverged`` (:mod:`zolab.runners.divergence`); ``icl`` and ``linear-probe`` are set up by
:mod:`zolab.runners.baselines`.

Resume: every checkpoint carries the run's :class:`~zolab.runners.checkpoint.RunTotals`; a resumed
run starts from them (forward passes, wall time, GPU seconds, zero-shot metrics, curves, the loss
window), so its Result equals an uninterrupted run's in every column but the measured times.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from zolab.runners import baselines
from zolab.runners import checkpoint as ckpts
from zolab.runners.checkpoint import RunTotals, peak, totals_of
from zolab.runners.config import RunConfig
from zolab.runners.confine import check_run_paths
from zolab.runners.divergence import DivergenceMonitor, watch_scores
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
from zolab.runners.schedule import LRSchedule
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
        self.scorer = baselines.make_scorer(config, self.tokenizer, task, self.splits.train, self.device)
        baselines.prepare_model(config, self.model, self.scorer)
        self.trains = baselines.trains(config)
        self.steps = config.steps if self.trains else 0   # icl: steps is ignored
        self.named = trainable_parameters(self.model) if self.trains else []
        self.opt: Any = (build_optimizer(baselines.optimizer_config(config), self.named, model=self.model,
                                         device=self.device) if self.trains else None)
        self.memory = MethodMemory(self.model, self.opt)   # weights + optimizer state + z buffers held
        needs_grad = getattr(self.opt, "needs_grad", False)
        self.loss_fn = make_loss(self.model, self.scorer, get_objective(config.objective, needs_grad))
        self.schedule = BatchSchedule(self.splits.train, config.batch_size, config.seed)
        self.lr_schedule = LRSchedule.from_config(config)
        self.divergence = DivergenceMonitor()
        self.ended_at = self.steps                         # the last step trained (earlier when diverged)
        self.eval_bs = max(32, config.batch_size)
        self.log_every = max(1, config.steps // _MAX_CURVE_POINTS)
        # what earlier segments of this run accumulated (resume), and what a checkpoint must carry
        self.carried = RunTotals()
        self.totals_incomplete = False
        self.zero_acc: float | None = None
        self.zero_dev: float | None = None
        self.loss_window: list[float] = []     # train losses since the last logged loss point
        self.last_loss: float | None = None    # the last finite train loss

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
        with watch_scores(self.model) as watch:
            acc, _ = evaluate(self.model, self.scorer, self.splits.dev, self.eval_bs)
        if self.splits.dev:
            self.divergence.check_eval(step, "dev accuracy", acc, watch.finite)
        self.meter.dev_curve.append((step, acc))
        self.reporter.metric(step, "dev_accuracy", acc)
        return acc

    def checkpoint(self, step: int) -> Checkpoint:
        self.settle()
        if isinstance(self.opt, ZOOptimizer):
            ckpt = ckpts.zo_checkpoint(self.opt, self.base)
        else:
            ckpt = ckpts.fo_checkpoint(self.opt, self.named, step, self.base, self.config)
        ckpt.rng_state["divergence"] = self.divergence.state()
        ckpt.totals = self.totals().to_dict()
        return ckpt

    def restore(self, resume: Checkpoint) -> int:
        if self.opt is None:   # icl: nothing was trained, nothing to restore
            return 0
        if isinstance(self.opt, ZOOptimizer):
            ckpts.replay(self.opt, resume, self.base, before_step=lambda t: self.lr_schedule.apply(self.opt, t),
                         kernel=self.config.kernel)
        else:
            ckpts.fo_restore(self.opt, self.named, resume, self.base)
        self.divergence.load(resume.rng_state.get("divergence"))
        self.adopt(totals_of(resume))
        return resume.step

    # -- resume: running totals ------------------------------------------------------------------
    def adopt(self, carried: RunTotals | None) -> None:
        """Continue from earlier segments' totals (None: a checkpoint from before totals existed;
        the result is then marked ``totals_incomplete`` instead of passing a segment off as the run)."""
        if carried is None:
            self.totals_incomplete = True
            return
        self.carried = carried
        self.meter.forward_passes += carried.forward_passes
        self.meter.dev_curve[:0] = carried.dev_curve
        self.meter.losses[:0] = carried.loss_curve
        self.loss_window = list(carried.loss_window)
        self.last_loss = carried.last_loss
        self.zero_acc, self.zero_dev = carried.zero_shot_accuracy, carried.zero_shot_dev_accuracy

    def totals(self) -> RunTotals:
        """This run so far: earlier segments plus this one."""
        c = self.carried
        alloc, reserved = gpu_peaks(self.device)
        return RunTotals(
            forward_passes=self.meter.forward_passes, wall_time_s=c.wall_time_s + self.meter.wall_time,
            gpu_seconds=c.gpu_seconds + self.meter.gpu_hours() * 3600.0, segments=c.segments + 1,
            zero_shot_accuracy=self.zero_acc, zero_shot_dev_accuracy=self.zero_dev,
            dev_curve=list(self.meter.dev_curve), loss_curve=list(self.meter.losses),
            loss_window=list(self.loss_window), last_loss=self.last_loss,
            peak_memory_allocated=peak(c.peak_memory_allocated, alloc),
            peak_memory_reserved=peak(c.peak_memory_reserved, reserved),
            peak_rss=peak(c.peak_rss, peak_rss_bytes()),
        )

    def train(self, start: int) -> float | None:
        """Steps ``start+1 .. steps``; stops early at the step the run diverges (:attr:`ended_at`)."""
        cfg, rep = self.config, self.reporter
        window = self.loss_window       # carried across a resume: the points stay on the same steps
        self.ended_at = self.steps
        for t in range(start, self.steps):
            step = t + 1
            lr = self.lr_schedule.apply(self.opt, t)
            batch = self.scorer.encode(self.schedule.batch(t))
            loss = self.opt.step(_closure(self.loss_fn, batch, self.opt, self.meter))
            value = float(loss.detach() if isinstance(loss, torch.Tensor) else loss)
            if not math.isfinite(value) and not isinstance(self.opt, ZOOptimizer):
                raise NonFiniteLossError(step, value)
            self.last_loss = value if math.isfinite(value) else self.last_loss
            window.append(value)
            self.divergence.update(step, value)
            if step % self.log_every == 0 or step == cfg.steps:
                self._log_loss(step, window, lr)
            if step % cfg.eval_every == 0 or step == cfg.steps:
                self.eval_dev(step)
            if step % cfg.checkpoint_every == 0:
                rep.checkpoint(self.checkpoint(step))
            rep.heartbeat()
            rep.progress(step, cfg.steps, value)
            if self.divergence.found is not None:  # stop early: the rest of the run would be noise
                self._log_loss(step, window, lr)
                self.ended_at = step
                break
        return self.last_loss

    def _log_loss(self, step: int, window: list[float], lr: float) -> None:
        """One train-loss curve point: the mean loss since the last one (and the step's lr when
        scheduled); empties the window in place (it is the run's carried ``loss_window``)."""
        if window:
            mean = sum(window) / len(window)
            self.meter.losses.append((step, mean))
            self.reporter.metric(step, "train_loss", mean)
            if not self.lr_schedule.trivial:
                self.reporter.metric(step, "lr", lr)
        window.clear()


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


def confine_paths(config: RunConfig) -> None:
    """Refuse plan paths outside ``ZOLAB_DATA_ROOTS`` before anything is opened (job files run by
    ``run-one`` or the batch runner never went through an upload's check)."""
    from zolab.runners.assets import model_aliases

    check_run_paths(config, lambda m: parse_tiny(m) is not None or m in model_aliases())


def _run(config: RunConfig, reporter: Reporter, resume: Checkpoint | None) -> Result:
    confine_paths(config)
    r = _Run(config, reporter)
    reporter.heartbeat()
    start = 0
    zero_f1: float | None = None
    if resume is not None:
        start = r.restore(resume)
    else:
        r.zero_dev = r.eval_dev(0)
        r.zero_acc, zero_f1 = r.evaluate_test()
    r.train(start)
    if r.steps == 0 and resume is None:
        acc, f1 = r.zero_acc, zero_f1  # zero-shot reference (or icl): the weights did not move, evaluate once
    else:
        acc, f1 = r.evaluate_test()
    return _result(r, acc, f1, start)


def _result(r: _Run, acc: float, f1: float, start: int) -> Result:
    """The whole run's Result: every count, time, curve and curve summary from :meth:`_Run.totals`."""
    t = r.totals()
    return Result(
        accuracy=acc, f1=f1, steps=r.ended_at, forward_passes=t.forward_passes,
        wall_time_s=t.wall_time_s, gpu_hours=t.gpu_seconds / 3600.0,
        peak_memory_allocated=t.peak_memory_allocated, peak_memory_reserved=t.peak_memory_reserved,
        peak_rss=t.peak_rss, final_loss=t.last_loss,
        # icl: its only evaluation has demonstrations in the prompt, it is not zero-shot
        zero_shot_accuracy=t.zero_shot_accuracy if r.trains else None,
        convergence_step=convergence_step(t.dev_curve), loss_slope=loss_slope(t.loss_curve),
        dev_accuracy=t.dev_curve[-1][1] if t.dev_curve else None, device=str(r.device),
        diverged=r.divergence.found is not None, method_memory_bytes=r.memory.total(),
        extra=_extra(r, t, start),
    )


def _extra(r: _Run, t: RunTotals, start: int) -> dict[str, Any]:
    return {
        "method": r.config.method, "base": r.base, "resumed_from": start or None, "segments": t.segments,
        **({"totals_incomplete": True} if r.totals_incomplete else {}),
        "zero_shot_dev_accuracy": t.zero_shot_dev_accuracy if r.trains else None,  # icl's has demonstrations
        "trainable_params": sum(p.numel() for _, p in r.named),
        "train_examples": len(r.splits.train), "dev_examples": len(r.splits.dev),
        "test_examples": len(r.splits.test),
        "forwards_per_step": getattr(r.opt, "forwards_per_step", None),
        **({"z_stream": r.opt.z_stream} if isinstance(r.opt, ZOOptimizer) else {}),   # which backend drew z
        "dev_curve": t.dev_curve, "loss_curve": t.loss_curve,
        **r.divergence.extra(), **baselines.extra(r.config, r.scorer),
        **({} if r.lr_schedule.trivial else {"lr_schedule": r.config.lr_schedule,
                                             "warmup_steps": r.config.warmup_steps}),
        "method_memory": r.memory.parts(),
    }
