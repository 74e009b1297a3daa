"""The zeroth-order optimizer family (MeZO and the ZO-Bench variants), torch.optim style.

Notation: theta the trainable weights, z ~ N(0, I) regenerated from a per-step seed, eps the
perturbation scale, q = ``n_samples``, d = lr * weight_decay (0 for biases and norm weights: the
param groups say which), g_k the projected gradient of probe k::

    g_k = (L(theta + eps z_k) - L(theta - eps z_k)) / (2 eps)        (SPSA, 2 forwards per probe)
    ghat = (1/q) sum_k g_k z_k                                      (the gradient estimate)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from zolab.runners.optim.base import Oracle, ZOOptimizer


class ZOSGD(ZOOptimizer):
    """MeZO (ZO-SGD, in place): ``theta <- (1 - d) theta - lr ghat``.

    Per probe: theta += eps z; L+; theta -= 2 eps z; L-; the restoring +eps z is fused with the
    next probe's perturbation and, for the last probe, with the update itself:
    ``p += (eps - lr g / q) z`` in one pass (two passes when weight decay is on, which must act
    on the restored theta). 2q forwards, no extra memory beyond one z-sized temporary per tensor.

    With ``lookahead`` that last pass also adds the next step's ``+eps z'``, so the next step
    starts at its first forward: two weight passes a step (q = 1, no decay) instead of three.
    """

    supports_lookahead = True

    def _update(self, seeds: Sequence[int], grads: Sequence[float], pending: list[tuple[int, float]]) -> None:
        q = len(seeds)
        update = [(s, -self.lr * g / q) for s, g in zip(seeds, grads)]
        ahead = self.ahead_terms()       # next step's +eps z, fused into this pass (lookahead)
        decay = self.decays()
        if decay is None:
            self.perturb(pending + update + ahead)
        else:                            # decay acts on the restored theta, before the terms are added
            self.perturb(pending)
            self.perturb(update + ahead, decay)
        self.note_ahead(ahead)


class ZOMomentum(ZOOptimizer):
    """ZO-SGD-MMT: ``m <- momentum * m + ghat``; ``theta <- (1 - d) theta - lr m`` (m per parameter)."""

    def __init__(self, params: Any, *, lr: float, momentum: float = 0.9, **kw: Any) -> None:
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"invalid momentum: {momentum}")
        super().__init__(params, lr=lr, momentum=momentum, **kw)

    def _update(self, seeds: Sequence[int], grads: Sequence[float], pending: list[tuple[int, float]]) -> None:
        self.perturb(pending)
        for _, p, group, ghat in self.directional(seeds, grads):
            state = self.state[p]
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = torch.zeros_like(p)
            buf.mul_(group["momentum"]).add_(ghat)
            if group["weight_decay"]:
                p.mul_(1.0 - group["lr"] * group["weight_decay"])
            p.add_(buf, alpha=-group["lr"])


class ZOAdam(ZOOptimizer):
    """ZO-Adam: Adam moments of ghat with bias correction, decoupled weight decay (AdamW).

    ``m <- b1 m + (1-b1) ghat``; ``v <- b2 v + (1-b2) ghat^2``;
    ``theta <- (1 - d) theta - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + adam_eps)``.
    """

    def __init__(self, params: Any, *, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 adam_eps: float = 1e-8, **kw: Any) -> None:
        b1, b2 = betas
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            raise ValueError(f"invalid betas: {betas}")
        super().__init__(params, lr=lr, betas=(float(b1), float(b2)), adam_eps=adam_eps, **kw)

    def _update(self, seeds: Sequence[int], grads: Sequence[float], pending: list[tuple[int, float]]) -> None:
        self.perturb(pending)
        t = self.step_count + 1
        for _, p, group, ghat in self.directional(seeds, grads):
            b1, b2 = group["betas"]
            state = self.state[p]
            if "exp_avg" not in state:
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
            m, v = state["exp_avg"], state["exp_avg_sq"]
            m.mul_(b1).add_(ghat, alpha=1 - b1)
            v.mul_(b2).addcmul_(ghat, ghat, value=1 - b2)
            denom = (v / (1 - b2**t)).sqrt_().add_(group["adam_eps"])
            if group["weight_decay"]:
                p.mul_(1.0 - group["lr"] * group["weight_decay"])
            p.addcdiv_(m, denom, value=-group["lr"] / (1 - b1**t))


class ZOSign(ZOOptimizer):
    """ZO-SGD-Sign (ZO-signSGD): ``theta <- (1 - d) theta - lr sign(ghat)`` (elementwise sign)."""

    def _update(self, seeds: Sequence[int], grads: Sequence[float], pending: list[tuple[int, float]]) -> None:
        self.perturb(pending)
        for _, p, group, ghat in self.directional(seeds, grads):
            if group["weight_decay"]:
                p.mul_(1.0 - group["lr"] * group["weight_decay"])
            p.add_(ghat.sign_(), alpha=-group["lr"])


class ZOCons(ZOOptimizer):
    """ZO-SGD-Cons (conservative): keep the best of theta, theta - lr ghat, theta + lr ghat.

    2q probe forwards plus three: L(theta), L(theta - lr ghat), L(theta + lr ghat). The trajectory
    records the effective projected gradients (g for the minus step, -g for the plus step, 0 to
    stay), so replay applies the chosen move directly (equal to the live run up to fp rounding).
    """

    forwards_per_step = 5

    def _zo_step(self, seeds: Sequence[int], oracle: Oracle) -> tuple[float, list[float]]:
        q = len(seeds)
        if oracle.replaying:
            grads = [oracle.grad(lambda: 0.0) for _ in seeds]
            self.perturb([(s, -self.lr * g / q) for s, g in zip(seeds, grads)], self.decays())
            return math.nan, grads
        grads, _, pending = self.estimate(seeds, oracle)
        self.perturb(pending)
        step = [(s, -self.lr * g / q) for s, g in zip(seeds, grads)]
        back = [(s, -2.0 * a) for s, a in step]
        stay = oracle.loss()
        self.perturb(step)
        minus = oracle.loss()
        self.perturb(back)
        plus = oracle.loss()
        best = min((minus, 1.0), (stay, 0.0), (plus, -1.0), key=lambda t: t[0])
        if best[1] == 1.0:
            self.perturb([(s, -2.0 * a) for s, a in back])   # back to theta - lr ghat
        elif best[1] == 0.0:
            self.perturb(step)                                # back to theta
        if self.decays() is not None:
            self.perturb([], self.decays())
        return best[0], [best[1] * g for g in grads]


class OnePointRF(ZOOptimizer):
    """One-point residual feedback (Zhang et al. 2022): one forward a step.

    ``g_t = (L(theta_t + eps z_t) - L(theta_{t-1} + eps z_{t-1})) / eps``, ``theta <- (1-d) theta - lr g_t z_t``.
    The first step has no previous value and makes no move (g_0 = 0). The previous perturbed loss is
    the optimizer's only state outside the trajectory (:meth:`zo_state`).
    """

    forwards_per_step = 1

    def __init__(self, params: Any, *, lr: float, **kw: Any) -> None:
        if int(kw.get("n_samples", 1)) != 1:
            raise ValueError("one-point-rf uses one direction per step: n_samples must be 1")
        super().__init__(params, lr=lr, **kw)
        self.prev_loss: float | None = None

    def _zo_step(self, seeds: Sequence[int], oracle: Oracle) -> tuple[float, list[float]]:
        (s,) = seeds
        self.perturb([(s, self.eps)])
        value = oracle.loss()
        prev = self.prev_loss
        g = oracle.grad(lambda: 0.0 if prev is None else (value - prev) / self.eps)
        if not oracle.replaying:
            self.prev_loss = value
        decay = self.decays()
        if decay is None:
            self.perturb([(s, -self.eps - self.lr * g)])
        else:
            self.perturb([(s, -self.eps)])
            self.perturb([(s, -self.lr * g)], decay)
        return value, [g]

    def zo_state(self) -> dict[str, Any]:
        return {"step": self.step_count, "prev_loss": self.prev_loss}

    def load_zo_state(self, state: dict[str, Any]) -> None:
        super().load_zo_state(state)
        self.prev_loss = state.get("prev_loss")
