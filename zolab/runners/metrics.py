"""Run metrics: accuracy, macro-F1, peak memory, GPU hours, convergence, loss slope.

Pure Python / torch (no psutil, no numpy requirement): the runner must import on lean GPU images.
Peak RSS is the process's high-water mark (``VmHWM``), monotonic over the process's life, so
memory comparisons between methods need one fresh process per method.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch


def accuracy(pred: Sequence[int], gold: Sequence[int]) -> float:
    if len(pred) != len(gold):
        raise ValueError(f"{len(pred)} predictions for {len(gold)} labels")
    return sum(int(p == g) for p, g in zip(pred, gold)) / len(gold) if gold else 0.0


def macro_f1(pred: Sequence[int], gold: Sequence[int]) -> float:
    """Unweighted mean F1 over the labels present in ``gold`` or ``pred`` (sklearn's ``average='macro'``)."""
    if len(pred) != len(gold):
        raise ValueError(f"{len(pred)} predictions for {len(gold)} labels")
    labels = sorted(set(pred) | set(gold))
    if not labels:
        return 0.0
    total = 0.0
    for c in labels:
        tp = sum(1 for p, g in zip(pred, gold) if p == c and g == c)
        fp = sum(1 for p, g in zip(pred, gold) if p == c and g != c)
        fn = sum(1 for p, g in zip(pred, gold) if p != c and g == c)
        denom = 2 * tp + fp + fn
        total += (2 * tp / denom) if denom else 0.0
    return total / len(labels)


def peak_rss_bytes() -> int:
    """This process's peak resident set size (VmHWM on Linux, ru_maxrss elsewhere)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def gpu_peaks(device: torch.device) -> tuple[int | None, int | None]:
    if device.type != "cuda":
        return None, None
    return torch.cuda.max_memory_allocated(device), torch.cuda.max_memory_reserved(device)


def convergence_step(curve: Sequence[tuple[int, float]], fraction: float = 0.9) -> int | None:
    """First eval step whose dev accuracy reaches ``fraction`` of the final dev accuracy."""
    if not curve:
        return None
    target = fraction * curve[-1][1]
    for step, value in curve:
        if value >= target:
            return step
    return curve[-1][0]


def loss_slope(points: Sequence[tuple[int, float]]) -> float | None:
    """Least-squares slope of loss against step (negative = decreasing)."""
    if len(points) < 2:
        return None
    n = len(points)
    mx = sum(s for s, _ in points) / n
    my = sum(v for _, v in points) / n
    sxx = sum((s - mx) ** 2 for s, _ in points)
    if sxx == 0:
        return None
    return sum((s - mx) * (v - my) for s, v in points) / sxx


@dataclass
class RunMeter:
    """Counts and curves gathered during a run; wall time from construction."""

    device: torch.device
    start: float = field(default_factory=time.perf_counter)
    forward_passes: int = 0
    losses: list[tuple[int, float]] = field(default_factory=list)
    dev_curve: list[tuple[int, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    @property
    def wall_time(self) -> float:
        return time.perf_counter() - self.start

    def gpu_hours(self, gpus: int | None = None) -> float:
        """Wall time x GPUs held (0 on CPU)."""
        held = (1 if self.device.type == "cuda" else 0) if gpus is None else gpus
        return self.wall_time * held / 3600.0
