"""Checkpoints: trajectory (ZO) and torch.save blobs (first-order).

A ZO run's state is its base weights' identity plus the list of ``(seed, projected_grad)`` pairs
(and the tiny state replay cannot rebuild, e.g. one-point RF's last loss): a few KB for thousands
of steps. Resuming rebuilds the base weights and replays every update in order.
First-order runs save trainable weights and optimizer state with ``torch.save``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from zolab.runners.config import RunConfig
from zolab.runners.optim.base import ZOOptimizer
from zolab.runners.reporter import Checkpoint


def checkpoint_dir(config: RunConfig) -> Path:
    """``task_options.checkpoint_dir``, else ``$ZOLAB_HOME/checkpoints``."""
    raw = config.task_options.get("checkpoint_dir")
    if raw:
        return Path(raw).expanduser()
    from zolab.config import home_dir  # stdlib-only settings module

    return home_dir() / "checkpoints"


def zo_checkpoint(opt: ZOOptimizer, base: str) -> Checkpoint:
    return Checkpoint(step=opt.step_count, base=base, trajectory=list(opt.trajectory),
                      optimizer_state=opt.zo_state())


def replay(opt: ZOOptimizer, ckpt: Checkpoint, base: str,
           before_step: Callable[[int], object] | None = None) -> None:
    """Re-apply a trajectory's updates in order, ``n_samples`` records per step; ``before_step(t)``
    runs before 0-based step t as it did live (the LR schedule sets that step's lr)."""
    if ckpt.base != base:
        raise ValueError(f"checkpoint was taken on base weights {ckpt.base!r}, this run starts from {base!r}")
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
