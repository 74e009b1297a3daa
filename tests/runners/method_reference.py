"""Independent reference implementations for the landing and replay tests (not a test module).

The reference side (:func:`reference_run`) uses nothing from ``zolab.runners.optim``: the formulas are
written from the papers and the reference trainers (MeZO ``large_models/trainer.py``; ZO-Bench
``zo-bench/trainer.py``); only :func:`live_run` builds the optimizer under test. Drawn as documented:

* step seeds as ``zolab.runners.optim.base.stream_seed`` documents them: blake2b-64 of
  ``"zolab:{seed}:{step}:{k}"``, low 53 bits;
* z as ``zolab/runners/kernels/torch_backend.py`` documents it (the gaussian law): a
  ``torch.Generator`` seeded with ``mix_seed(step seed, parameter index)``, ``randn`` in float32,
  cast to the weight dtype. If the kernel's documented draw changes, :func:`z_of` is the one place
  to follow it;
* the parameter index is the position in the optimizer's order: decayed parameters first, then the
  exempt ones (biases, norms), each in model order.

The problem is a real architecture (tiny OPT, one 16-wide layer: biases and layer norms, so both
weight-decay groups) in float64 on one fixed batch: the landing tests compare live runs against
these formulas to within float64 rounding.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
import transformers

from zolab.runners.config import RunConfig
from zolab.runners.models import load_model, trainable_parameters
from zolab.runners.optim import build_optimizer

Tensors = dict[str, torch.Tensor]
LABEL_IDS = [5, 9, 17]


def _eager_attention_in_input_dtype(module, query, key, value, attention_mask, scaling, dropout=0.0, **_):
    """transformers' eager attention computes its softmax in float32 even for a float64 model; this one
    stays in the input dtype, so forward- and reverse-mode derivatives (forward-grad) agree to 1e-15."""
    weights = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = weights.softmax(-1)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


transformers.AttentionInterface.register("zolab_eager_float64", _eager_attention_in_input_dtype)


# -- seeds, z and the decay rule, as documented --------------------------------------------------
def stream_seed(seed: int, step: int, k: int) -> int:
    digest = hashlib.blake2b(f"zolab:{seed}:{step}:{k}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 53) - 1)


def mix_seed(seed: int, index: int) -> int:
    return ((seed * 0x9E3779B97F4A7C15) ^ (index * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB)) & ((1 << 63) - 1)


def z_of(like: torch.Tensor, seed: int, index: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(mix_seed(seed, index))
    return torch.randn(like.shape, generator=gen, dtype=torch.float32).to(like.dtype)


def exempt(name: str) -> bool:
    """MeZO's substrings (trainer.py l.803) plus the norm modules of Llama / GPT-2 named explicitly."""
    return (any(h in name for h in ("bias", "layer_norm", "layernorm"))
            or any(part in ("norm", "ln_1", "ln_2", "ln_f") for part in name.split(".")[:-1]))


def param_order(names: list[str]) -> list[str]:
    return [n for n in names if not exempt(n)] + [n for n in names if exempt(n)]


def conservative(stay: float, minus: float, plus: float) -> str:
    """ZO-Bench zo_conserv_step l.1327-1332: loss0 = stay, loss1 = minus, loss2 = plus."""
    if minus > stay:
        return "stay" if stay < plus else "plus"
    return "minus" if minus < plus else "plus"


# -- the problem -------------------------------------------------------------------------------
class Problem:
    """tiny-opt-h16-l1 in float64 and a fixed batch of 4 sequences; loss = CE over 3 label tokens."""

    def __init__(self, init_seed: int = 3) -> None:
        model, _ = load_model(RunConfig(model="tiny-opt-h16-l1", seed=init_seed))
        self.model = model.double()
        self.model.config._attn_implementation = "zolab_eager_float64"
        g = torch.Generator().manual_seed(11)
        self.ids = torch.randint(4, 141, (4, 6), generator=g)
        self.labels = torch.tensor([0, 2, 1, 0])
        self.named = trainable_parameters(self.model)
        self.names = [n for n, _ in self.named]

    def _loss(self, logits: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits[:, -1, LABEL_IDS], self.labels)

    def loss(self) -> torch.Tensor:
        """The live closure's loss: the model's current weights."""
        return self._loss(self.model(input_ids=self.ids).logits)

    def loss_at(self, theta: Tensors) -> float:
        with torch.no_grad():
            return float(self._loss(torch.func.functional_call(self.model, theta, (), {"input_ids": self.ids}).logits))

    def grad_at(self, theta: Tensors) -> Tensors:
        leaves = {n: t.detach().clone().requires_grad_(True) for n, t in theta.items()}
        loss = self._loss(torch.func.functional_call(self.model, leaves, (), {"input_ids": self.ids}).logits)
        grads = torch.autograd.grad(loss, list(leaves.values()))
        return dict(zip(leaves, grads))

    def weights(self) -> Tensors:
        return {n: p.detach().clone() for n, p in self.named}

    def closure(self, opt: torch.optim.Optimizer):
        if not getattr(opt, "needs_grad", False):
            return self.loss

        def fo() -> torch.Tensor:
            opt.zero_grad()
            loss = self.loss()
            loss.backward()
            return loss

        return fo


# -- the reference run ---------------------------------------------------------------------------
@dataclass
class Reference:
    theta: Tensors
    grads: list[list[float]] = field(default_factory=list)       # per step: the q projected gradients
    seeds: list[list[int]] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)             # the loss each step reports
    choices: list[str] = field(default_factory=list)              # zo-cons
    buffers: dict[str, Tensors] = field(default_factory=dict)     # momentum / Adam state by name


def _axpy(theta: Tensors, alpha: float, direction: Tensors) -> Tensors:
    return {n: theta[n] + alpha * direction[n] for n in theta}


def _fo_step(problem: Problem, cfg: RunConfig, ref: Reference, t: int) -> None:
    """torch.optim.SGD (momentum, dampening 0, coupled decay) and AdamW (decoupled), by hand."""
    theta = ref.theta
    ref.losses.append(problem.loss_at(theta))
    grad = problem.grad_at(theta)
    wd = {n: 0.0 if exempt(n) else cfg.weight_decay for n in theta}
    if cfg.method == "fo-sgd":
        buf = ref.buffers.setdefault("momentum_buffer", {})
        for n in theta:
            d = grad[n] + wd[n] * theta[n]
            buf[n] = d.clone() if t == 0 else cfg.momentum * buf[n] + d
            theta[n] = theta[n] - cfg.lr * buf[n]
        return
    b1, b2 = cfg.betas
    m, v = ref.buffers.setdefault("exp_avg", {}), ref.buffers.setdefault("exp_avg_sq", {})
    for n in theta:
        theta[n] = theta[n] * (1 - cfg.lr * wd[n])
        m[n] = b1 * m.get(n, 0) + (1 - b1) * grad[n]
        v[n] = b2 * v.get(n, 0) + (1 - b2) * grad[n] ** 2
        bc1, bc2 = 1 - b1 ** (t + 1), 1 - b2 ** (t + 1)
        theta[n] = theta[n] - (cfg.lr / bc1) * m[n] / (v[n].sqrt() / math.sqrt(bc2) + 1e-8)


def reference_run(problem: Problem, cfg: RunConfig, steps: int) -> Reference:
    """Where ``cfg`` lands after ``steps`` steps on the problem's fixed batch, by the formulas."""
    ref = Reference(theta=problem.weights())
    order = param_order(problem.names)
    q, eps, lr = cfg.n_samples, cfg.eps, cfg.lr
    estimator = "one-point" if cfg.method == "one-point-rf" else cfg.estimator
    decay = {n: 0.0 if exempt(n) else lr * cfg.weight_decay for n in problem.names}
    prev: float | None = None
    for t in range(steps):
        if cfg.method in ("fo-sgd", "fo-adam"):
            _fo_step(problem, cfg, ref, t)
            continue
        theta = ref.theta
        seeds = [stream_seed(cfg.seed, t, k) for k in range(q)]
        zs = [{n: z_of(theta[n], s, order.index(n)) for n in theta} for s in seeds]
        base: float | None = None
        if cfg.method == "forward-grad":              # exact directional derivatives (Baydin et al. 2022)
            grad = problem.grad_at(theta)
            g = [float(sum((grad[n] * z[n]).sum() for n in theta)) for z in zs]
            loss = problem.loss_at(theta)
        elif estimator == "central":                  # MeZO zo_step
            pairs = [(problem.loss_at(_axpy(theta, eps, z)), problem.loss_at(_axpy(theta, -eps, z))) for z in zs]
            g = [(lp - lm) / (2 * eps) for lp, lm in pairs]
            loss = sum(0.5 * (lp + lm) for lp, lm in pairs) / q
        elif estimator == "forward":                  # ZO-Bench one_side, L(theta) shared by the probes
            base = problem.loss_at(theta)
            g = [(problem.loss_at(_axpy(theta, eps, z)) - base) / eps for z in zs]
            loss = base
        else:                                         # one-point residual feedback (Zhang et al. 2022)
            value = problem.loss_at(_axpy(theta, eps, zs[0]))
            g = [0.0 if prev is None else (value - prev) / eps]
            prev = loss = value
        ghat = {n: sum(gk * z[n] for gk, z in zip(g, zs)) / q for n in theta}
        ref.seeds.append(seeds)
        ref.grads.append(g)
        ref.theta, chosen = _zo_update(problem, cfg, ref, t, theta, ghat, g, zs, decay, base)
        ref.losses.append(loss if chosen is None else chosen)
    return ref


def _zo_update(problem: Problem, cfg: RunConfig, ref: Reference, t: int, theta: Tensors, ghat: Tensors,
               g: list[float], zs: list[Tensors], decay: dict[str, float], base: float | None
               ) -> tuple[Tensors, float | None]:
    """(theta after the step, the chosen candidate's loss for zo-cons else None)."""
    lr, q = cfg.lr, cfg.n_samples
    keep = {n: theta[n] * (1 - decay[n]) for n in theta}        # (1 - d) theta
    method = cfg.method
    if method in ("mezo", "zo-sgd", "one-point-rf", "forward-grad"):
        return _axpy(keep, -lr, ghat), None
    if method == "zo-momentum":
        m = ref.buffers.setdefault("momentum_buffer", {})
        for n in theta:
            m[n] = cfg.momentum * m.get(n, 0) + ghat[n]
        return _axpy(keep, -lr, m), None
    if method == "zo-adam":
        b1, b2 = cfg.betas
        m, v = ref.buffers.setdefault("exp_avg", {}), ref.buffers.setdefault("exp_avg_sq", {})
        out = {}
        for n in theta:
            m[n] = b1 * m.get(n, 0) + (1 - b1) * ghat[n]
            v[n] = b2 * v.get(n, 0) + (1 - b2) * ghat[n] ** 2
            mhat, vhat = m[n] / (1 - b1 ** (t + 1)), v[n] / (1 - b2 ** (t + 1))
            out[n] = keep[n] - lr * mhat / (vhat.sqrt() + 1e-8)
        return out, None
    if method == "zo-sign":
        if cfg.sign_rule == "elementwise":            # Liu et al. 2019: sign of the estimate, per coordinate
            return {n: keep[n] - lr * torch.sign(ghat[n]) for n in theta}, None
        signs = [float((gk > 0) - (gk < 0)) for gk in g]   # ZO-Bench: np.sign(g_k) z_k
        return _axpy(keep, -lr, {n: sum(sk * z[n] for sk, z in zip(signs, zs)) / q for n in theta}), None
    if method == "zo-cons":                           # ZO-Bench zo_conserv_step
        stay = base if base is not None else problem.loss_at(theta)
        minus = problem.loss_at(_axpy(theta, -lr, ghat))
        plus = problem.loss_at(_axpy(theta, lr, ghat))
        choice = conservative(stay, minus, plus)
        ref.choices.append(choice)
        c = {"minus": 1.0, "stay": 0.0, "plus": -1.0}[choice]
        return _axpy(keep, -c * lr, ghat), {"stay": stay, "minus": minus, "plus": plus}[choice]
    raise AssertionError(f"no reference for {method}")


def config(method: str, steps: int, **knobs: Any) -> RunConfig:
    """A RunConfig whose settle points are only the end (so lookahead is exercised in between)."""
    base = {"method": method, "kernel": "torch", "seed": 5, "steps": steps, "eval_every": 1000,
            "checkpoint_every": 1000, "weight_decay": 0.05}
    return RunConfig(**{**base, **knobs})


#: (id, method, knobs, steps)
CASES = [
    ("mezo", "mezo", {"lr": 1e-2}, 3),                             # in place, lookahead between steps
    ("mezo-naive", "mezo", {"lr": 1e-2, "in_place": False}, 3),    # z materialised, three passes
    ("zo-sgd-q3", "zo-sgd", {"lr": 1e-2, "n_samples": 3}, 3),
    ("mezo-forward-q2", "mezo", {"lr": 1e-2, "estimator": "forward", "n_samples": 2}, 3),
    ("mezo-one-point", "mezo", {"lr": 1e-2, "estimator": "one-point"}, 4),
    ("one-point-rf", "one-point-rf", {"lr": 1e-2}, 4),
    ("zo-momentum", "zo-momentum", {"lr": 1e-2, "momentum": 0.8, "n_samples": 2}, 3),
    ("zo-adam", "zo-adam", {"lr": 1e-3, "n_samples": 2}, 3),
    ("zo-sign-elementwise", "zo-sign", {"lr": 1e-3, "n_samples": 2, "sign_rule": "elementwise"}, 3),
    ("zo-sign-scalar", "zo-sign", {"lr": 1e-3, "n_samples": 2, "sign_rule": "scalar"}, 3),
    ("zo-cons", "zo-cons", {"lr": 1e-2}, 3),
    ("zo-cons-q2", "zo-cons", {"lr": 1e-2, "n_samples": 2}, 3),
    ("zo-cons-large-lr", "zo-cons", {"lr": 30.0}, 3),              # every move overshoots: stay
    ("forward-grad-q2", "forward-grad", {"lr": 1e-2, "n_samples": 2}, 3),
    ("fo-sgd", "fo-sgd", {"lr": 1e-2, "momentum": 0.5}, 3),
    ("fo-adam", "fo-adam", {"lr": 1e-3}, 3),
] + [
    (f"{m}-{e}" + (f"-{r}" if r else ""), m, dict(lr=lr, estimator=e, **({"sign_rule": r} if r else {})), 4)
    for m, lr, r in (("zo-momentum", 1e-2, None), ("zo-adam", 1e-3, None), ("zo-sign", 1e-3, "elementwise"),
                     ("zo-sign", 1e-3, "scalar"), ("zo-cons", 1e-2, None))
    for e in ("forward", "one-point")
] + [  # without weight decay the restore, the update and the lookahead share one pass: a path of its own
    (f"{cid}-no-decay", m, {**k, "weight_decay": 0.0}, 4)
    for cid, m, k in (("mezo", "mezo", {"lr": 1e-2}), ("mezo-forward", "mezo", {"lr": 1e-2, "estimator": "forward"}),
                      ("mezo-one-point", "mezo", {"lr": 1e-2, "estimator": "one-point"}),
                      ("zo-sign-scalar", "zo-sign", {"lr": 1e-3, "sign_rule": "scalar"}),
                      ("zo-cons", "zo-cons", {"lr": 1e-2}), ("zo-cons-large-lr", "zo-cons", {"lr": 30.0}),
                      ("zo-cons-forward", "zo-cons", {"lr": 1e-2, "estimator": "forward"}),
                      ("zo-cons-one-point", "zo-cons", {"lr": 1e-2, "estimator": "one-point"}))
]


def as_float(loss: float | torch.Tensor) -> float:
    """A step's returned loss (ZO: a float; FO: the closure's tensor) as a Python float, losing nothing."""
    return float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)


def live_run(cfg: RunConfig, steps: int) -> tuple[Problem, torch.optim.Optimizer, list[float]]:
    """The optimizer under test, built as a run builds it, after ``steps`` steps (and their losses)."""
    problem = Problem()
    opt = build_optimizer(cfg, problem.named, model=problem.model)
    closure = problem.closure(opt)
    losses = [as_float(opt.step(closure)) for _ in range(steps)]
    return problem, opt, losses


def buffers(opt: torch.optim.Optimizer, problem: Problem) -> dict[str, dict[str, torch.Tensor]]:
    """The optimizer's per-parameter tensors (momentum, Adam moments) by state key and parameter name."""
    by_param = {id(p): n for n, p in problem.named}
    out: dict[str, dict[str, torch.Tensor]] = {}
    for p, state in opt.state.items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and value.shape == p.shape:
                out.setdefault(key, {})[by_param[id(p)]] = value
    return out
