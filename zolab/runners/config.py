"""RunConfig: the one configuration every runner takes.

It is a plain dataclass (no pydantic) because ``zolab.runners`` must import with torch +
transformers + peft alone. The platform validates user input with pydantic
(``zolab.platform.plan``) and hands the runner a RunConfig built from the validated values.
Every knob the component registry can change is a field here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

#: optimizer keys understood by ``zolab.runners.optim.build_optimizer``
ZO_METHODS = ("mezo", "zo-sgd", "zo-momentum", "zo-adam", "zo-sign", "zo-cons", "forward-grad", "one-point-rf")
FO_METHODS = ("fo-sgd", "fo-adam", "linear-probe")   # linear-probe: FO on the label-word head only
NO_TRAIN_METHODS = ("icl",)                           # in-context learning: k demonstrations, no training
METHODS = ZO_METHODS + FO_METHODS + NO_TRAIN_METHODS
PEFT_KINDS = ("none", "lora", "prefix")
OBJECTIVES = ("ce", "accuracy", "f1")
DTYPES = ("float32", "float16", "bfloat16")
KERNELS = ("auto", "native", "triton", "torch")
SIGN_RULES = ("elementwise", "scalar")               # zo-sign: sign(g z) per element | sign(g) z (ZO-Bench)
DISTRIBUTIONS = ("gaussian", "rademacher", "sphere")  # law of the perturbation z
ESTIMATORS = ("central", "forward", "one-point")      # two-point | one-sided with L(theta) | residual feedback
LR_SCHEDULES = ("constant", "linear", "cosine")
SPARSITY_RULES = ("random", "magnitude")              # which weights a sparse perturbation touches

#: fields added after plan format v1: left out of ``config_hash`` while at their default, so the
#: identity of every variant stored before they existed does not change
_HASH_OMIT_AT_DEFAULT = ("sign_rule", "distribution", "estimator", "lr_schedule", "warmup_steps",
                         "sparsity", "sparsity_rule", "perturb_layers", "icl_demos")


@dataclass
class RunConfig:
    """One run: a model fine-tuned on one task with one method and one seed."""

    method: str = "mezo"
    model: str = "tiny-opt"          # HF id, local dir, alias (``smollm2-135m``) or ``tiny-<family>`` test configs
    peft: str = "none"               # none | lora | prefix
    objective: str = "ce"            # ce | accuracy | f1 (non-differentiable ones need a ZO method)
    prompt: bool = True              # False: raw input, no template
    task: str = "synthetic-sentiment"
    seed: int = 42                   # data sampling, model init (tiny configs) and the ZO seed stream
    lr: float = 1e-6
    eps: float = 1e-3
    n_samples: int = 1               # q sampled directions per step (2q forwards)
    in_place: bool = True            # False: materialise z for every parameter (naive ZO-SGD)
    steps: int = 100                 # 0 = zero-shot evaluation only
    batch_size: int = 16
    eval_every: int = 50
    weight_decay: float = 0.0
    momentum: float = 0.9            # zo-momentum / fo-sgd
    betas: tuple[float, float] = (0.9, 0.999)  # zo-adam / fo-adam
    dtype: str = "float32"
    device: str = "auto"             # auto | cpu | cuda | cuda:N
    kernel: str = "auto"             # auto | native | triton | torch: perturbation backend (auto: triton on CUDA,
                                     # native on CPU, torch where neither is usable)
    max_length: int = 128
    train_size: int = 1000           # examples sampled for training (k-shot when ``k_shot`` is set)
    dev_size: int = 200
    test_size: int = 500
    k_shot: int | None = None        # per-class sampling as in the paper (overrides train_size)
    checkpoint_every: int = 50       # steps between trajectory checkpoints
    lora_r: int = 8
    lora_alpha: int = 16
    prefix_tokens: int = 5
    task_options: dict[str, Any] = field(default_factory=dict)  # e.g. {"path": "data.jsonl", "text_field": "sentence"}
    sign_rule: str = "elementwise"   # zo-sign: elementwise sign(g z) | scalar sign(g) z
    distribution: str = "gaussian"   # gaussian | rademacher | sphere (z / ||z|| * sqrt(d) per parameter tensor)
    estimator: str = "central"       # central (two-point) | forward (one-sided) | one-point (residual feedback)
    lr_schedule: str = "constant"    # constant (MeZO) | linear | cosine decay to 0 over ``steps``
    warmup_steps: int = 0            # linear warmup from 0 (MeZO: none)
    sparsity: float = 0.0            # fraction of weights NOT perturbed/updated (0 = dense MeZO)
    sparsity_rule: str = "random"    # random (mask from the seed) | magnitude (smallest weights perturbed)
    perturb_layers: list[int] | None = None  # block-wise ZO: only these transformer layers (None = all)
    icl_demos: int = 16              # method icl: demonstrations in the prompt

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)  # type: ignore[assignment]
        problems = self.problems()
        if problems:
            raise ValueError("invalid RunConfig: " + "; ".join(problems))

    def problems(self) -> list[str]:
        """Human-readable reasons this config cannot run (empty when valid)."""
        out: list[str] = []
        if self.method not in METHODS:
            out.append(f"method {self.method!r} is not one of {', '.join(METHODS)}")
        if self.peft not in PEFT_KINDS:
            out.append(f"peft {self.peft!r} is not one of {', '.join(PEFT_KINDS)}")
        if self.objective not in OBJECTIVES:
            out.append(f"objective {self.objective!r} is not one of {', '.join(OBJECTIVES)}")
        if self.objective != "ce" and self.method in FO_METHODS:
            out.append(f"objective {self.objective!r} is not differentiable: method {self.method!r} needs a gradient, use a ZO method")
        if self.method in ("icl", "linear-probe") and self.peft != "none":
            out.append(f"method {self.method!r} uses the base model as it is (icl: no training; linear-probe: "
                       f"the label-word head only): peft must be none, got {self.peft!r}")
        if self.dtype not in DTYPES:
            out.append(f"dtype {self.dtype!r} is not one of {', '.join(DTYPES)}")
        if self.kernel not in KERNELS:
            out.append(f"kernel {self.kernel!r} is not one of {', '.join(KERNELS)}")
        for name, choices in (("sign_rule", SIGN_RULES), ("distribution", DISTRIBUTIONS),
                              ("estimator", ESTIMATORS), ("lr_schedule", LR_SCHEDULES),
                              ("sparsity_rule", SPARSITY_RULES)):
            if getattr(self, name) not in choices:
                out.append(f"{name} {getattr(self, name)!r} is not one of {', '.join(choices)}")
        if not 0.0 <= self.sparsity < 1.0:
            out.append(f"sparsity must be in [0, 1), got {self.sparsity}")
        if self.warmup_steps < 0:
            out.append(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.icl_demos < 0:
            out.append(f"icl_demos must be >= 0, got {self.icl_demos}")
        if self.estimator == "one-point" and self.n_samples != 1:
            out.append(f"estimator one-point takes one direction a step (residual feedback), got n_samples {self.n_samples}")
        if self.method == "one-point-rf" and self.estimator not in ("central", "one-point"):
            out.append(f"method one-point-rf is mezo with estimator one-point; estimator {self.estimator!r} contradicts it")
        if self.perturb_layers is not None and (not self.perturb_layers or min(self.perturb_layers) < 0):
            out.append(f"perturb_layers must be a non-empty list of layer indices >= 0, got {self.perturb_layers}")
        if not self.lr > 0:
            out.append(f"lr must be > 0, got {self.lr}")
        if not self.eps > 0:
            out.append(f"eps must be > 0, got {self.eps}")
        for name in ("n_samples", "batch_size", "eval_every", "max_length", "checkpoint_every"):
            if getattr(self, name) < 1:
                out.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.steps < 0:
            out.append(f"steps must be >= 0, got {self.steps}")
        return out

    # -- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        """Build from a mapping; unknown keys are an error that names them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown RunConfig field(s): {', '.join(unknown)}")
        return cls(**data)

    def replace(self, **changes: Any) -> "RunConfig":
        return dataclasses.replace(self, **changes)

    def config_hash(self) -> str:
        """Stable hash of everything that changes the result (used to merge duplicate variants)."""
        d = self.to_dict()
        d.pop("checkpoint_every", None)
        d.pop("device", None)
        d.pop("kernel", None)
        # where checkpoints go does not change the result
        d["task_options"] = {k: v for k, v in d["task_options"].items() if k != "checkpoint_dir"}
        if d["method"] == "mezo" and d["estimator"] == "one-point":  # the same run as one-point-rf: one identity
            d["method"], d["estimator"] = "one-point-rf", "central"
        if d["method"] == "one-point-rf":
            d["estimator"] = "central"
        defaults = RunConfig.__dataclass_fields__
        for name in _HASH_OMIT_AT_DEFAULT:
            if d.get(name) == defaults[name].default:
                d.pop(name, None)
        blob = json.dumps(d, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def is_zeroth_order(self) -> bool:
        return self.method in ZO_METHODS
