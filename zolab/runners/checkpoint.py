"""Checkpoints: trajectory (ZO) and torch.save blobs (first-order).

A ZO run's state is its base weights' identity plus the list of ``(seed, projected_grad)`` pairs
(and the tiny state replay cannot rebuild, e.g. one-point RF's last loss): a few KB for thousands
of steps. Resuming rebuilds the base weights and replays every update in order.
First-order runs save trainable weights and optimizer state with ``torch.save``.

Every checkpoint also carries the run's :class:`RunTotals` (forward passes, wall time, GPU seconds,
zero-shot metrics, the dev and loss curves so far, the loss window not yet logged), so a resumed run
reports the whole run, not its last segment, on every path: the DB worker, ``zolab run-one`` and
``python -m zolab.runners.batch`` alike (none of them needs the database's metric points for it).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zolab.runners.config import RunConfig
from zolab.runners.confine import confined
from zolab.runners.optim.base import ZOOptimizer
from zolab.runners.reporter import Checkpoint


@dataclass
class RunTotals:
    """What a run accumulated up to a checkpoint (all its segments so far).

    Wall time and GPU seconds count each segment up to its last checkpoint (the work a killed
    segment did after it is redone, and counted, by the segment that resumes); memory peaks are the
    maximum over segments. ``loss_window`` holds the train losses since the last logged loss point,
    so a point that straddles a checkpoint is the same mean as in an uninterrupted run.
    """

    forward_passes: int = 0
    wall_time_s: float = 0.0
    gpu_seconds: float = 0.0
    segments: int = 0
    zero_shot_accuracy: float | None = None
    zero_shot_dev_accuracy: float | None = None
    dev_curve: list[tuple[int, float]] = field(default_factory=list)
    loss_curve: list[tuple[int, float]] = field(default_factory=list)
    loss_window: list[float] = field(default_factory=list)
    last_loss: float | None = None
    peak_memory_allocated: int | None = None
    peak_memory_reserved: int | None = None
    peak_rss: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunTotals:
        """Back from JSON: pairs become tuples; None (how JSON stores NaN) becomes NaN again in curves."""
        known = {f.name for f in fields(cls)}
        out = cls(**{k: v for k, v in d.items() if k in known})
        out.dev_curve = [(int(s), _num(v)) for s, v in out.dev_curve]
        out.loss_curve = [(int(s), _num(v)) for s, v in out.loss_curve]
        out.loss_window = [_num(v) for v in out.loss_window]
        return out


def _num(value: Any) -> float:
    return math.nan if value is None else float(value)


def totals_of(ckpt: Checkpoint) -> RunTotals | None:
    """The totals a checkpoint carries; None for checkpoints written before they existed."""
    return RunTotals.from_dict(ckpt.totals) if ckpt.totals else None


def peak(a: int | None, b: int | None) -> int | None:
    """The larger of two optional memory peaks."""
    return b if a is None else a if b is None else max(a, b)


def checkpoint_dir(config: RunConfig) -> Path:
    """``task_options.checkpoint_dir`` (resolved; refused outside ``ZOLAB_DATA_ROOTS``, see
    :mod:`zolab.runners.confine`), else ``$ZOLAB_HOME/checkpoints``."""
    raw = config.task_options.get("checkpoint_dir")
    if raw:
        return confined(raw, "task_options.checkpoint_dir")
    from zolab.config import home_dir  # stdlib-only settings module

    return home_dir() / "checkpoints"


def zo_checkpoint(opt: ZOOptimizer, base: str) -> Checkpoint:
    return Checkpoint(step=opt.step_count, base=base, trajectory=list(opt.trajectory),
                      optimizer_state=opt.zo_state())


def replay(opt: ZOOptimizer, ckpt: Checkpoint, base: str,
           before_step: Callable[[int], object] | None = None, kernel: str = "auto") -> None:
    """Re-apply a trajectory's updates in order, ``n_samples`` records per step; ``before_step(t)``
    runs before 0-based step t as it did live (the LR schedule sets that step's lr). ``kernel`` is the
    run's setting: under ``auto`` the replay (and the rest of the run) uses the z stream the checkpoint
    was recorded with (:func:`match_z_stream`)."""
    if ckpt.base != base:
        raise ValueError(f"checkpoint was taken on base weights {ckpt.base!r}, this run starts from {base!r}")
    match_z_stream(opt, ckpt, kernel)
    q = opt.n_samples
    records: Sequence[tuple[int, float]] = ckpt.trajectory
    if len(records) != ckpt.step * q:
        raise ValueError(f"checkpoint at step {ckpt.step} has {len(records)} records, expected {ckpt.step * q}")
    opt.begin_replay(ckpt.optimizer_state)   # zo-cons reads its recorded choices here
    for t in range(ckpt.step):
        if before_step is not None:
            before_step(t)
        opt.replay(records[t * q:(t + 1) * q])
    opt.load_zo_state(ckpt.optimizer_state)


#: what ``auto`` chose before checkpoints recorded their stream (the native kernel came later)
_LEGACY_STREAMS = ("torch", "triton")


def match_z_stream(opt: ZOOptimizer, ckpt: Checkpoint, kernel: str = "auto") -> None:
    """Make ``opt`` draw z from the stream the checkpoint recorded, or refuse: another stream would
    replay other directions, i.e. silently another model.

    Under ``kernel: auto`` the optimizer switches to the recorded stream (a run started on the torch
    backend resumes on it although ``auto`` now picks the native kernel); an explicit, different
    ``kernel`` is an error that names both. Checkpoints written before streams were recorded came from
    torch (CPU) or triton (CUDA): they resume on those, never on the native kernel."""
    if not ckpt.step:
        return
    recorded = (ckpt.optimizer_state or {}).get("z_stream")
    current = opt.z_stream
    if recorded is None:
        if current in _LEGACY_STREAMS:
            return
        recorded = "torch" if opt.params and opt.params[0].device.type == "cpu" else "triton"
    if recorded == current:
        return
    if kernel != "auto":
        raise ValueError(f"the checkpoint at step {ckpt.step} drew z from kernel {recorded!r}; this run asks for "
                         f"kernel {current!r}, whose z differ: resume with kernel {recorded!r} (or 'auto')")
    try:
        opt.adopt_z_stream(recorded)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"the checkpoint at step {ckpt.step} drew z from kernel {recorded!r}, which is not usable "
                         f"here ({exc}); it cannot be replayed exactly: resume where that kernel runs") from exc


def fo_checkpoint(opt: torch.optim.Optimizer, named: Sequence[tuple[str, nn.Parameter]], step: int, base: str,
                  config: RunConfig) -> Checkpoint:
    folder = checkpoint_dir(config)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{config.config_hash()}-step{step}.pt"
    tmp = path.with_suffix(".tmp")
    torch.save({"step": step, "weights": {n: p.detach().cpu() for n, p in named},
                "optimizer": opt.state_dict()}, tmp)
    os.replace(tmp, path)  # never leave a half-written blob under the final name
    return Checkpoint(step=step, base=base, blob_path=str(path))


def fo_restore(opt: torch.optim.Optimizer, named: Sequence[tuple[str, nn.Parameter]], ckpt: Checkpoint,
               base: str) -> None:
    if ckpt.base != base:
        raise ValueError(f"checkpoint was taken on base weights {ckpt.base!r}, this run starts from {base!r}")
    if not ckpt.blob_path or not Path(ckpt.blob_path).is_file():
        raise FileNotFoundError(f"first-order checkpoint blob {ckpt.blob_path!r} is missing")
    blob = torch.load(ckpt.blob_path, map_location="cpu", weights_only=True)
    with torch.no_grad():
        for n, p in named:
            p.copy_(blob["weights"][n])
    opt.load_state_dict(blob["optimizer"])
