"""Forward gradient (Baydin et al. 2022; ZO-Bench's FG baseline): an exact directional derivative.

``g_k = grad L(theta) . z_k`` from one forward-mode pass (``torch.func.jvp`` through
``functional_call``: no backward, no activations kept), then ``theta <- (1 - d) theta - lr ghat``
with ``ghat = (1/q) sum_k g_k z_k``. ZO-Bench zo-bench/trainer.py ``forward_grad_step`` l.1357-1424
(q = 1; ``p - lr (v jvp + wd p)`` for names without bias/layer_norm/layernorm: the same update).
Unbiased like SPSA but without the finite-difference error; costs one jvp (about 1.5 forwards,
counted as one closure call) per direction and the tangents z, materialised for every parameter.
The ``estimator`` knob does not apply (there is no finite difference).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from zolab.runners.optim.base import Oracle, ZOOptimizer


class _CallClosure(nn.Module):
    """Holds the model as a submodule so ``functional_call`` can swap its parameters around a closure."""

    def __init__(self, model: nn.Module, closure: Callable[[], torch.Tensor]) -> None:
        super().__init__()
        self.model = model
        self._closure = closure

    def forward(self) -> torch.Tensor:
        return self._closure()


class ForwardGrad(ZOOptimizer):
    """Needs ``model`` and the parameters' names in it (``named_params``) to run the closure functionally."""

    @property
    def forwards_per_step(self) -> int:  # type: ignore[override]
        return self.n_samples            # one jvp (one closure call) per direction

    def __init__(self, params: Any, *, lr: float, model: nn.Module, names: Sequence[str], **kw: Any) -> None:
        super().__init__(params, lr=lr, **kw)
        if len(names) != len(self.params):
            raise ValueError(f"{len(names)} names for {len(self.params)} parameters")
        self.model = model
        self.names = list(names)

    def _jvp(self, closure: Callable[[], torch.Tensor], seed: int) -> tuple[float, float]:
        params = self.params
        tangents = tuple(self.backend.z(p, seed, i) for i, p in enumerate(params))
        wrapper = _CallClosure(self.model, closure)

        def f(*values: torch.Tensor) -> torch.Tensor:
            swap = {f"model.{n}": v for n, v in zip(self.names, values)}
            return torch.func.functional_call(wrapper, swap, ())

        loss, dot = torch.func.jvp(f, tuple(p.detach() for p in params), tangents)
        return float(loss), float(dot)

    def _zo_step(self, seeds: Sequence[int], oracle: Oracle) -> tuple[float, list[float]]:
        grads: list[float] = []
        losses: list[float] = []
        for s in seeds:
            if oracle.replaying:
                grads.append(oracle.grad(lambda: 0.0))
                continue
            value, dot = self._jvp(oracle.closure, s)  # type: ignore[union-attr]
            oracle.check(value)  # type: ignore[union-attr]
            grads.append(dot)
            losses.append(value)
        q = len(seeds)
        self.perturb([(s, -self.lr * g / q) for s, g in zip(seeds, grads)], self.decays())
        return (sum(losses) / len(losses) if losses else float("nan")), grads
