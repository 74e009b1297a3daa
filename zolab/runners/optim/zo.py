"""The zeroth-order optimizer family (MeZO and the ZO-Bench variants), torch.optim style.

Notation: theta the trainable weights, z ~ N(0, I) regenerated from a per-step seed (one per probe,
k = 1..q, q = ``n_samples``), eps the perturbation scale, d = lr * weight_decay (0 for biases and
norm weights: the param groups say which, see :func:`zolab.runners.optim.no_decay`), g_k the
projected gradient of probe k from the configured estimator (:meth:`ZOOptimizer.probe`: central
``(L(theta + eps z) - L(theta - eps z)) / (2 eps)``, forward ``(L(theta + eps z) - L(theta)) / eps``,
one-point residual feedback), and::

    ghat = (1/q) sum_k g_k z_k                                      (the gradient estimate)

References: MeZO = princeton-nlp/MeZO large_models/trainer.py; ZO-Bench = ZO-Bench/ZO-LLM
zo-bench/trainer.py (line numbers of those files at their current heads).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from zolab.runners.config import SIGN_RULES
from zolab.runners.optim.base import Oracle, Terms, ZOOptimizer


def sign(x: float) -> float:
    """-1, 0 or 1 (numpy's ``np.sign`` on a float, as ZO-Bench uses it)."""
    return float((x > 0) - (x < 0))


class ZOSGD(ZOOptimizer):
    """MeZO (ZO-SGD, in place): ``theta <- (1 - d) theta - lr ghat``.

    MeZO trainer.py ``zo_step`` l.757-788 (perturb +1, -2, +1 with one seed), ``zo_update`` l.791-806
    (``theta - lr (g z + wd theta)`` for names without bias/layer_norm/layernorm: the same as here).
    Per probe: theta += eps z; L+; theta -= 2 eps z; L-; the restoring +eps z is fused with the
    next probe's perturbation and, for the last probe, with the update itself:
    ``p += (eps - lr g / q) z`` in one pass (two passes when weight decay is on, which must act
    on the restored theta). No extra memory beyond one z-sized temporary per tensor.

    With ``lookahead`` that last pass also adds the next step's ``+eps z'``, so the next step
    starts at its first forward: two weight passes a step (q = 1, no decay) instead of three
    (one instead of two with the one-point estimator).
    """

    supports_lookahead = True

    def coefficients(self, grads: Sequence[float]) -> list[float]:
        """The multiple of z_k in the update (``-lr c_k / q``): g_k for ZO-SGD."""
        return list(grads)

    def _update(self, seeds: Sequence[int], grads: Sequence[float], pending: Terms) -> None:
        q = len(seeds)
        update = [(s, -self.lr * c / q) for s, c in zip(seeds, self.coefficients(grads))]
        ahead = self.ahead_terms()       # next step's +eps z, fused into this pass (lookahead)
        decay = self.decays()
        if decay is None:
            self.perturb(pending + update + ahead)
        else:                            # decay acts on the restored theta, before the terms are added
            self.perturb(pending)
            self.perturb(update + ahead, decay)
        self.note_ahead(ahead)


class OnePointRF(ZOSGD):
    """``one-point-rf``: MeZO with the one-point residual-feedback estimator (``estimator: one-point``).

    ``g_t = (L(theta_t + eps z_t) - L(theta_{t-1} + eps z_{t-1})) / eps``, ``theta <- (1-d) theta - lr g_t z_t``
    (Zhang et al. 2022). One forward a step; the first step makes no move (g_0 = 0). The previous
    perturbed loss is the optimizer's only state outside the trajectory (:meth:`zo_state`).
    """

    def __init__(self, params: Any, *, lr: float, **kw: Any) -> None:
        if kw.setdefault("estimator", "one-point") != "one-point":
            raise ValueError(f"one-point-rf is mezo with estimator one-point, not {kw['estimator']!r}")
        super().__init__(params, lr=lr, **kw)


class ZOMomentum(ZOOptimizer):
    """ZO-SGD-MMT: ``m <- momentum * m + ghat``; ``theta <- (1 - d) theta - lr m`` (m per parameter).

    ZO-Bench trainer.py l.321 + l.1072-1073: ``param.grad = g z`` then torch ``SGD(momentum=...)``,
    i.e. the same ``m`` (dampening 0). Weight decay here is decoupled (it does not enter m), as
    documented; ZO-Bench's sweeps run this method without weight decay.
    """

    def __init__(self, params: Any, *, lr: float, momentum: float = 0.9, **kw: Any) -> None:
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"invalid momentum: {momentum}")
        super().__init__(params, lr=lr, momentum=momentum, **kw)

    def _update(self, seeds: Sequence[int], grads: Sequence[float], pending: Terms) -> None:
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
    ZO-Bench trainer.py l.316 + l.1072-1073: ``param.grad = g z`` then torch ``Adam`` (same moments and
    bias correction; its sweeps use no weight decay, which zolab applies decoupled, as AdamW does).
    """

    def __init__(self, params: Any, *, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 adam_eps: float = 1e-8, **kw: Any) -> None:
        b1, b2 = betas
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            raise ValueError(f"invalid betas: {betas}")
        super().__init__(params, lr=lr, betas=(float(b1), float(b2)), adam_eps=adam_eps, **kw)

    def _update(self, seeds: Sequence[int], grads: Sequence[float], pending: Terms) -> None:
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


class ZOSign(ZOSGD):
    """ZO-SGD-Sign, two rules (``sign_rule``):

    * ``elementwise`` (default): ``theta <- (1 - d) theta - lr sign(ghat)``, the sign of each coordinate
      of the gradient estimate: ZO-signSGD of Liu et al. 2019 ("signSGD via zeroth-order oracle",
      ICLR; the method the ZO-Bench paper cites for ZO-SGD-Sign) and ZO-Bench's commented-out
      ``signOpt_mul_sign`` line (trainer.py l.1060). Materialises ghat one parameter at a time.
    * ``scalar``: ``theta <- (1 - d) theta - lr (1/q) sum_k sign(g_k) z_k``, the sign of each projected
      gradient: ZO-Bench's active code (trainer.py l.1058 ``np.sign(self.projected_grad) * z``,
      and l.1131 with the 1/q of l.1146 for q > 1), which produced its published numbers. Linear in z,
      so it runs in place like MeZO, lookahead included.

    The default is ``elementwise`` because it is the method as published (Liu et al. 2019) and what
    zolab's zo-sign has always run, so stored zo-sign results (whose config hash has no sign_rule, the
    field being at its default) keep their meaning; ``scalar`` reproduces ZO-Bench's code and numbers. The two differ:
    for q = 1 elementwise is ``sign(g) sign(z)``, a Rademacher direction, scalar is ``sign(g) z``.
    """

    def __init__(self, params: Any, *, lr: float, sign_rule: str = "elementwise", **kw: Any) -> None:
        if sign_rule not in SIGN_RULES:
            raise ValueError(f"sign_rule {sign_rule!r} is not one of {', '.join(SIGN_RULES)}")
        self.sign_rule = sign_rule
        super().__init__(params, lr=lr, **kw)

    def lookahead_blocker(self) -> str | None:
        if self.sign_rule == "elementwise":
            return "with sign_rule elementwise (its update is not a multiple of z)"
        return super().lookahead_blocker()

    def coefficients(self, grads: Sequence[float]) -> list[float]:
        return [sign(g) for g in grads]

    def _update(self, seeds: Sequence[int], grads: Sequence[float], pending: Terms) -> None:
        if self.sign_rule == "scalar":
            super()._update(seeds, grads, pending)
            return
        self.perturb(pending)
        for _, p, group, ghat in self.directional(seeds, grads):
            if group["weight_decay"]:
                p.mul_(1.0 - group["lr"] * group["weight_decay"])
            p.add_(ghat.sign_(), alpha=-group["lr"])


#: zo-cons candidates: the multiple c of ``-lr ghat`` each one adds to theta
CANDIDATES = {"minus": 1.0, "stay": 0.0, "plus": -1.0}


def conservative_choice(stay: float, minus: float, plus: float) -> str:
    """The candidate ZO-Bench keeps (trainer.py ``zo_conserv_step`` l.1327-1332), ties included:

    ``if loss1 > loss0: (stay if loss0 < loss2 else plus) else: (minus if loss1 < loss2 else plus)``
    with loss0 = L(theta), loss1 = L(theta - lr ghat), loss2 = L(theta + lr ghat).
    """
    if minus > stay:
        return "stay" if stay < plus else "plus"
    return "minus" if minus < plus else "plus"


class ZOCons(ZOOptimizer):
    """ZO-SGD-Cons (conservative): keep the best of theta, theta - lr ghat, theta + lr ghat.

    ZO-Bench trainer.py ``zo_conserv_step`` l.1251-1337: L(theta), the probes, then L(theta - lr ghat)
    and L(theta + lr ghat); the lowest wins (:func:`conservative_choice`). The weights end at
    ``(1 - d) theta + c (-lr ghat)`` with c = 1 (minus), 0 (stay), -1 (plus): decay, as for ZO-SGD,
    acts on theta (ZO-Bench runs it without decay). The reported loss is the chosen candidate's.

    Forwards: the estimator's plus three candidates, or two with the forward estimator, whose
    L(theta) is the "stay" candidate. The trajectory records the raw g_k; the choices go into the
    checkpoint (:meth:`zo_state`, one letter a step), so a replay repeats every weight pass of the
    live run and lands bit-identically.
    """

    def __init__(self, params: Any, *, lr: float, **kw: Any) -> None:
        super().__init__(params, lr=lr, **kw)
        self.choices: list[str] = []
        self._replay_choices: str | None = None

    @property
    def extra_forwards(self) -> int:  # type: ignore[override]
        return 2 if self.estimator == "forward" else 3

    def _zo_step(self, seeds: Sequence[int], oracle: Oracle) -> tuple[float, list[float]]:
        q = len(seeds)
        probe = self.probe(seeds, oracle)
        step = [(s, -self.lr * g / q) for s, g in zip(seeds, probe.grads)]     # theta + step = theta - lr ghat
        if probe.theta_loss is not None:       # forward estimator: L(theta) is known, go straight to minus
            stay = probe.theta_loss
            self.perturb(probe.pending + step)
        else:
            self.perturb(probe.pending)
            stay = oracle.loss()
            self.perturb(step)
        minus = oracle.loss()
        self.perturb([(s, -2.0 * a) for s, a in step])                          # theta + lr ghat
        plus = oracle.loss()
        choice = self._recorded_choice() if oracle.replaying else conservative_choice(stay, minus, plus)
        c = CANDIDATES[choice]
        decay = self.decays()
        if decay is None:
            self.perturb([(s, (1.0 + c) * a) for s, a in step])                 # from theta + lr ghat to the choice
        else:
            self.perturb(step)                                                  # back to theta, then decay + move
            self.perturb([(s, c * a) for s, a in step], decay)
        self.choices.append(choice)
        return {"minus": minus, "stay": stay, "plus": plus}[choice], probe.grads

    def _recorded_choice(self) -> str:
        t = self.step_count
        if self._replay_choices is None or t >= len(self._replay_choices):
            raise ValueError(f"zo-cons replay of step {t} needs the recorded choices: call begin_replay(state) "
                             "with the checkpoint's optimizer_state first")
        return {"m": "minus", "s": "stay", "p": "plus"}[self._replay_choices[t]]

    def begin_replay(self, state: dict[str, Any]) -> None:
        choices = state.get("choices")
        if choices is None and int(state.get("step", 0)):
            raise ValueError("this zo-cons checkpoint has no recorded choices (written before zo-cons was fixed): "
                             "it cannot be replayed exactly; restart the run")
        self._replay_choices = choices or ""

    def zo_state(self) -> dict[str, Any]:
        return {**super().zo_state(), "choices": "".join(c[0] for c in self.choices)}

    def load_zo_state(self, state: dict[str, Any]) -> None:
        super().load_zo_state(state)
        if state.get("choices", "") != "".join(c[0] for c in self.choices):
            raise ValueError("zo-cons replay took other choices than the checkpoint records")
        self._replay_choices = None


__all__ = [
    "CANDIDATES",
    "ZOSGD",
    "OnePointRF",
    "ZOAdam",
    "ZOCons",
    "ZOMomentum",
    "ZOSign",
    "conservative_choice",
    "sign",
]
