"""Run metrics: accuracy, macro-F1, peak memory, GPU hours, convergence, loss slope.

Pure Python / torch (no psutil, no numpy requirement): the runner must import on lean GPU images.

Memory, three ways:

* CUDA: torch's allocator peaks (``max_memory_allocated`` / ``max_memory_reserved``): everything,
  activations included;
* the method's own bytes, on every device (:class:`MethodMemory` -> ``Result.method_memory_bytes``):
  weights + optimizer state + gradients + the peak of z buffers alive at once, counted from the
  tensors the run holds. This is what separates MeZO (z regenerated, one parameter-sized temporary
  at a time) from naive ZO (every z held for the step) and FO-Adam (gradients + two moments);
* peak RSS, secondary: the process's high-water mark (``VmHWM``), monotonic over the process's life
  and dominated by the Python runtime and libraries (~0.5 GiB), so on CPU it barely moves between
  methods.
"""

from __future__ import annotations

import resource
import sys
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

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


def tensor_bytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _unique_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the distinct storages among ``tensors`` (tied / aliased tensors counted once)."""
    seen: dict[tuple[str, int], int] = {}
    for t in tensors:
        if t.numel() == 0 or t.device.type == "meta":
            continue
        key = (str(t.device), t.untyped_storage().data_ptr())
        seen[key] = max(seen.get(key, 0), tensor_bytes(t))
    return sum(seen.values())


def optimizer_state_tensors(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """Tensors in ``optimizer.state`` (momentum buffers, Adam moments, step counters)."""
    out = []
    for state in optimizer.state.values():
        for value in state.values():
            if isinstance(value, torch.Tensor):
                out.append(value)
    return out


class MethodMemory:
    """The bytes a run's method holds: weights, optimizer state, gradients and z buffers.

    Weights, state and gradients are counted from the tensors themselves (:meth:`parts`, at the end
    of a run: state only grows). z buffers are measured as they live: the optimizer's perturbation
    backend(s) are wrapped so every tensor their ``z`` returns is counted until it is freed (a weak
    reference's finaliser), and the peak of the bytes alive at once is kept. In-place MeZO draws one
    parameter-sized z at a time (per worker thread); naive ZO holds every parameter's z for the
    step; forward-gradient holds all tangents. Activations are not counted (CUDA's allocator peak
    has them). Thread-safe: the torch backend draws z on several threads.
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.model = model
        self.optimizer = optimizer
        self._lock = threading.Lock()
        self._live: dict[int, int] = {}
        self._live_bytes = 0
        self.z_peak_bytes = 0
        for backend in self._backends(getattr(optimizer, "backend", None)):
            self._watch(backend)

    @staticmethod
    def _backends(backend: Any) -> list[Any]:
        """The backend and every backend it wraps (``.inner`` chains: materialised, masked, ...)."""
        chain = []
        while backend is not None and backend not in chain:
            chain.append(backend)
            backend = getattr(backend, "inner", None)
        return chain

    def _watch(self, backend: Any) -> None:
        draw = getattr(backend, "z", None)
        if draw is None:
            return

        def z(p: torch.Tensor, seed: int, index: int) -> torch.Tensor:
            t = draw(p, seed, index)
            self._track(t)
            return t

        backend.z = z  # an instance attribute: the backend's own ``self.z(...)`` calls come here too

    def _track(self, t: torch.Tensor) -> None:
        key, nbytes = id(t), tensor_bytes(t)
        with self._lock:
            if key in self._live:        # the same held tensor handed out again (materialised z)
                return
            self._live[key] = nbytes
            self._live_bytes += nbytes
            self.z_peak_bytes = max(self.z_peak_bytes, self._live_bytes)
        weakref.finalize(t, self._release, key)

    def _release(self, key: int) -> None:
        with self._lock:
            self._live_bytes -= self._live.pop(key, 0)

    def parts(self) -> dict[str, int]:
        """Bytes by kind, now (z buffers: their peak so far)."""
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        return {
            "weights": _unique_bytes(self.model.parameters()),
            "optimizer_state": _unique_bytes(optimizer_state_tensors(self.optimizer)),
            "gradients": _unique_bytes(p.grad for p in params if p.grad is not None),
            "z_buffers": self.z_peak_bytes,
        }

    def total(self) -> int:
        return sum(self.parts().values())
