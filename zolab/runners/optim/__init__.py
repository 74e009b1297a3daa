"""Optimizers by method key: the ZO family (:mod:`.zo`, :mod:`.forward_grad`) and FO baselines (:mod:`.fo`).

:func:`build_optimizer` maps ``RunConfig.method`` through :data:`OPTIMIZERS` (one small class per
method, no branching on the method string inside a step loop) and builds the param groups: weight
decay is skipped for biases and norm weights, by name (:func:`no_decay`). The finite-difference ZO
methods take ``RunConfig.estimator``; ``one-point-rf`` is mezo with ``estimator: one-point``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from zolab.runners.config import RunConfig
from zolab.runners.kernels import PerturbationBackend, ZLaw, get_backend
from zolab.runners.kernels.selection import layer_count, select_layers
from zolab.runners.optim.base import MaterialisedBackend, ZOOptimizer, probe_forwards, stream_seed
from zolab.runners.optim.fo import FOSGD, FOAdam
from zolab.runners.optim.forward_grad import ForwardGrad
from zolab.runners.optim.zo import ZOSGD, OnePointRF, ZOAdam, ZOCons, ZOMomentum, ZOSign

NamedParams = Sequence[tuple[str, nn.Parameter]]


def _zo(cls: type[ZOOptimizer], knobs: Callable[[RunConfig], dict[str, Any]] = lambda c: {}
        ) -> Callable[..., torch.optim.Optimizer]:
    """Builder for a ZO class: the shared knobs plus the method's own (``knobs(config)``); lookahead
    wherever the configured optimizer allows it (:meth:`ZOOptimizer.lookahead_blocker`)."""

    def build(groups: list[dict], config: RunConfig, backend: PerturbationBackend, **_: Any) -> ZOOptimizer:
        opt = cls(groups, lr=config.lr, eps=config.eps, n_samples=config.n_samples, seed=config.seed,
                  backend=backend, in_place=config.in_place, estimator=config.estimator, **knobs(config))
        if opt.lookahead_blocker() is None:
            opt.enable_lookahead(settle_points(config))
        return opt

    return build


def _one_point_rf(groups: list[dict], config: RunConfig, backend: PerturbationBackend, **extra: Any) -> ZOOptimizer:
    """``one-point-rf`` = mezo with the one-point estimator; an explicit other estimator contradicts it."""
    if config.estimator not in ("central", "one-point"):
        raise ValueError(f"method one-point-rf is mezo with estimator one-point; estimator {config.estimator!r} "
                         "contradicts it (use method mezo with that estimator)")
    return _zo(OnePointRF)(groups, config.replace(estimator="one-point"), backend, **extra)


def settle_points(config: RunConfig) -> Callable[[int], bool]:
    """Steps after which the trainer reads the weights (dev eval, checkpoint, the end): a lookahead
    optimizer leaves them unperturbed there (see :meth:`ZOOptimizer.ahead_terms`)."""

    def settle_after(step: int) -> bool:
        return step % config.eval_every == 0 or step % config.checkpoint_every == 0 or step >= config.steps

    return settle_after


def _forward_grad(groups: list[dict], config: RunConfig, backend: PerturbationBackend, *,
                  model: nn.Module | None = None, names: Sequence[str] = (), **_: Any) -> ForwardGrad:
    if model is None:
        raise ValueError("forward-grad needs the model (build_optimizer(..., model=model))")
    return ForwardGrad(groups, lr=config.lr, eps=config.eps, n_samples=config.n_samples, seed=config.seed,
                       backend=backend, in_place=config.in_place, model=model, names=names)


def _fo_sgd(groups: list[dict], config: RunConfig, backend: PerturbationBackend, **_: Any) -> FOSGD:
    return FOSGD(groups, lr=config.lr, momentum=config.momentum)


def _fo_adam(groups: list[dict], config: RunConfig, backend: PerturbationBackend, **_: Any) -> FOAdam:
    return FOAdam(groups, lr=config.lr, betas=tuple(config.betas))


#: method key -> builder(groups, config, backend, **extra)
OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "mezo": _zo(ZOSGD),
    "zo-sgd": _zo(ZOSGD),
    "zo-momentum": _zo(ZOMomentum, lambda c: {"momentum": c.momentum}),
    "zo-adam": _zo(ZOAdam, lambda c: {"betas": tuple(c.betas)}),
    "zo-sign": _zo(ZOSign, lambda c: {"sign_rule": c.sign_rule}),
    "zo-cons": _zo(ZOCons),
    "one-point-rf": _one_point_rf,
    "forward-grad": _forward_grad,
    "fo-sgd": _fo_sgd,
    "fo-adam": _fo_adam,
}

#: MeZO's rule (large_models/trainer.py l.803; ZO-Bench trainer.py l.1409): no decay for names containing these
_NO_DECAY_SUBSTRINGS = ("bias", "layer_norm", "layernorm")
#: norm modules the substrings miss, named explicitly: Llama/Mistral/Qwen2 final ``model.norm``; GPT-2 ``ln_1``,
#: ``ln_2``, ``ln_f``. (Llama's input_layernorm/post_attention_layernorm and OPT's self_attn_layer_norm /
#: final_layer_norm contain a substring above.) The reference decays these; it only means to exempt norms.
_NORM_MODULES = frozenset({"norm", "ln_1", "ln_2", "ln_f"})


def no_decay(name: str, param: torch.Tensor | None = None) -> bool:
    """True for the parameters weight decay skips, by name alone: biases and norm weights.

    MeZO's substring rule plus the norm modules of Llama, GPT-2 and OPT (:data:`_NORM_MODULES`) as path
    components, so ``model.norm.weight`` and ``transformer.h.0.ln_1.weight`` are exempt but a module that
    merely has "norm" in its name is not. ``param`` is accepted for callers of the old signature.
    """
    lowered = name.lower()
    if any(h in lowered for h in _NO_DECAY_SUBSTRINGS):
        return True
    return any(part in _NORM_MODULES for part in lowered.split(".")[:-1])


def param_groups(named_params: NamedParams, weight_decay: float) -> tuple[list[dict], list[str]]:
    """(groups, names in group order): decayed weights first, then biases/norms with weight_decay 0."""
    decay = [(n, p) for n, p in named_params if not no_decay(n)]
    keep = [(n, p) for n, p in named_params if no_decay(n)]
    groups = [{"params": [p for _, p in g], "weight_decay": wd}
              for g, wd in ((decay, weight_decay), (keep, 0.0)) if g]
    return groups, [n for n, _ in decay] + [n for n, _ in keep]


def z_law(config: RunConfig) -> ZLaw:
    """The law of z the config asks for (``distribution``, ``sparsity``, ``sparsity_rule``); only ZO methods draw z."""
    law = ZLaw.from_config(config)
    if not law.is_default and not config.is_zeroth_order:
        raise ValueError(f"distribution/sparsity shape the ZO direction z; method {config.method!r} draws none")
    return law


def build_optimizer(config: RunConfig, named_params: NamedParams, *, model: nn.Module | None = None,
                    backend: PerturbationBackend | None = None, device: torch.device | str | None = None
                    ) -> torch.optim.Optimizer:
    """The optimizer for ``config.method`` over ``named_params`` (only the trainable ones).

    ``perturb_layers`` keeps only the parameters of those transformer layers (block-wise: the others
    are neither perturbed nor updated); the backend draws z from :func:`z_law` and prepares it
    (magnitude masks) from the weights as they are now, the base weights, in z-index order."""
    if config.method not in OPTIMIZERS:
        raise ValueError(f"unknown method {config.method!r}; known: {', '.join(OPTIMIZERS)}")
    named_params = list(named_params)
    if not named_params:
        raise ValueError("no trainable parameters to optimise")
    if config.perturb_layers is not None:
        n_layers = layer_count(model, [n for n, _ in named_params])
        named_params = select_layers(named_params, config.perturb_layers, n_layers)
    law = z_law(config)
    if backend is None:
        dev = device if device is not None else named_params[0][1].device
        backend = get_backend(config.kernel, dev, law)
    else:
        backend = backend.with_law(law)
    groups, names = param_groups(named_params, config.weight_decay)
    if config.is_zeroth_order:
        backend.prepare([p for g in groups for p in g["params"]])
    return OPTIMIZERS[config.method](groups, config, backend, model=model, names=names)


__all__ = [
    "FOSGD",
    "OPTIMIZERS",
    "ZOSGD",
    "FOAdam",
    "ForwardGrad",
    "MaterialisedBackend",
    "OnePointRF",
    "ZOAdam",
    "ZOCons",
    "ZOMomentum",
    "ZOOptimizer",
    "ZOSign",
    "build_optimizer",
    "no_decay",
    "param_groups",
    "probe_forwards",
    "settle_points",
    "stream_seed",
    "z_law",
]
