"""Per-job estimates: peak memory and GPU hours, before anything runs.

Memory (bytes, the tensors a run holds; the executor packs jobs while these fit 90% of free memory):

* weights = parameters x bytes per element (dtype); the parameter count comes from the model's
  config on PyTorch's ``meta`` device (exact, no weights loaded);
* MeZO / ZO-SGD with in-place perturbation ~ inference: weights + one forward's activations;
* naive ZO (``in_place: false``) ~ inference + one copy of the trainable weights (materialised z);
  momentum / Adam variants add one / two state copies; forward-gradient adds tangents;
* FO-SGD / FO-Adam: weights + gradients (+ 1 / 2 optimizer states: Adam ~ 4x weights) + the
  activations stored for backprop (Korthikanti et al. 2022: s·b·h·(34 + 5·a·s/h) bytes per layer at 16 bit).

Step time (seconds): a FLOPs model (2 x params x tokens per forward, forwards per step by method,
dev evaluation amortised) on a nominal device throughput plus a per-layer launch overhead, then
*learned*: finished results of the same model + method on the same kind of device give the ratio
measured / predicted (median), which rescales the prediction. GPU hours = steps x step time / 3600.
"""

from __future__ import annotations

import functools
import re
import statistics
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from zolab.runners.config import RunConfig

BYTES_PER_ELEMENT = {"float32": 4, "float16": 2, "bfloat16": 2}

#: nominal sustained throughput (FLOP/s) and per-layer per-forward overhead (s), by device kind.
#: Deliberately rough: results in the DB recalibrate them (see :class:`StepTimeModel`).
THROUGHPUT = {"cpu": 2.0e10, "gpu": 5.0e13}
LAYER_OVERHEAD_S = {"cpu": 3.0e-3, "gpu": 1.0e-4}
FORWARD_OVERHEAD_S = {"cpu": 6.0e-3, "gpu": 1.0e-3}


@dataclass(frozen=True)
class ModelShape:
    """What the estimates need from a model: sizes, not weights."""

    params: int
    hidden: int
    layers: int
    heads: int
    vocab: int


#: (hidden, layers, heads) of OPT sizes (Zhang et al. 2022), the MeZO paper's models; used when the
#: config is not on disk (offline machines planning a GPU run)
OPT_SIZES = {
    "125m": (768, 12, 12), "350m": (1024, 24, 16), "1.3b": (2048, 24, 32), "2.7b": (2560, 32, 32),
    "6.7b": (4096, 32, 32), "13b": (5120, 40, 40), "30b": (7168, 48, 56), "66b": (9216, 64, 72),
}
_SIZE_RE = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*([mb])\b", re.IGNORECASE)


class UnknownModelError(ValueError):
    """No config on disk and no size in the name: the estimate cannot be made."""


def _offline_config(model: str):
    """A config for ``model`` without the network: OPT sizes by name, else an OPT-shaped config
    whose width matches the size in the name (12·L·h² ≈ params with h = 128·L)."""
    import transformers

    m = _SIZE_RE.search(model.rsplit("/", 1)[-1])
    if not m:
        raise UnknownModelError(
            f"cannot estimate {model!r}: no config on disk (offline) and no size like '125m' or '7b' in the name"
        )
    size = f"{m[1]}{m[2].lower()}"
    if "opt" in model.lower() and size in OPT_SIZES:
        hidden, layers, heads = OPT_SIZES[size]
    else:
        params = float(m[1]) * (1e6 if m[2].lower() == "m" else 1e9)
        hidden = max(64, round((params * 128 / 12) ** (1 / 3) / 64) * 64)
        layers, heads = max(1, hidden // 128), max(1, hidden // 128)
    return transformers.OPTConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                                  ffn_dim=4 * hidden, word_embed_proj_dim=hidden, vocab_size=50272)


#: transformers' lazy module is not safe to first-use from two threads at once (seen in the
#: Streamlit UI: "module 'transformers' has no attribute 'AutoModelForCausalLM'"), so shapes are
#: built one at a time; the result is cached, so the lock is only contended on first use.
_SHAPE_LOCK = threading.Lock()


def model_shape(model: str) -> ModelShape:
    """Sizes of ``model`` (tiny test configs, aliases, local dirs, cached hub ids; known sizes by
    name when offline), counted on the meta device: no memory allocated, no weights read. Thread-safe."""
    with _SHAPE_LOCK:
        return _model_shape(model)


@functools.lru_cache(maxsize=64)
def _model_shape(model: str) -> ModelShape:
    import torch
    import transformers

    from zolab.runners import models as rm

    tiny = rm.parse_tiny(model)
    if tiny:
        family, hidden, layers = tiny
        cfg = rm.tiny_config(family, hidden, layers, vocab_size=len(rm.tiny_vocab()))
    else:
        try:
            cfg = transformers.AutoConfig.from_pretrained(rm.resolve_alias(model), local_files_only=True)
        except (OSError, ValueError):
            cfg = _offline_config(model)
    with torch.device("meta"):
        module = transformers.AutoModelForCausalLM.from_config(cfg)
    params = sum(p.numel() for p in module.parameters())  # parameters() skips tied duplicates
    text = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    hidden = getattr(text, "hidden_size", None) or text.n_embd
    layers = getattr(text, "num_hidden_layers", None) or text.n_layer
    heads = getattr(text, "num_attention_heads", None) or text.n_head
    return ModelShape(int(params), int(hidden), int(layers), int(heads), int(text.vocab_size))


def trainable_params(config: RunConfig, shape: ModelShape) -> int:
    """Parameters the optimizer updates: all of them, or the PEFT adapters only."""
    if config.peft == "lora":  # q and v projections per layer: 2 matrices x (h x r + r x h)
        return shape.layers * 2 * 2 * shape.hidden * config.lora_r
    if config.peft == "prefix":  # keys and values of the virtual tokens per layer
        return shape.layers * 2 * config.prefix_tokens * shape.hidden
    return shape.params


@dataclass(frozen=True)
class MemoryEstimate:
    weights: int
    method_state: int
    activations: int

    @property
    def total(self) -> int:
        return self.weights + self.method_state + self.activations


#: extra copies of the trainable weights each method holds (z, momentum, Adam moments, gradients)
_STATE_COPIES = {
    "mezo": 0, "zo-sgd": 0, "zo-sign": 0, "zo-cons": 0, "one-point-rf": 0,
    "zo-momentum": 1, "zo-adam": 2, "forward-grad": 1,
    "fo-sgd": 2, "fo-adam": 3,          # gradients + momentum / + two moments
}


def estimate_memory(config: RunConfig, shape: ModelShape | None = None) -> MemoryEstimate:
    shape = shape or model_shape(config.model)
    b = BYTES_PER_ELEMENT[config.dtype]
    weights = shape.params * b
    trainable = trainable_params(config, shape)
    copies = _STATE_COPIES.get(config.method, 0)
    if not config.in_place and config.method not in ("fo-sgd", "fo-adam"):
        copies += 1  # naive ZO: z materialised for every trainable parameter
    if config.method == "fo-sgd" and config.momentum == 0:
        copies -= 1  # plain SGD keeps only the gradients
    state = copies * trainable * b
    batch, seq = config.batch_size, config.max_length
    logits = batch * seq * shape.vocab * 4  # float32 logits of one forward
    if config.method in ("fo-sgd", "fo-adam"):
        per_layer = seq * batch * shape.hidden * (34 + 5 * shape.heads * seq / shape.hidden) * b / 2
        activations = int(shape.layers * per_layer) + 2 * logits
    else:  # inference: a few live hidden-state tensors and the attention scores of one layer
        act = batch * seq * (8 * shape.hidden + 2 * shape.heads * seq) * b
        activations = act + logits
        if config.method == "forward-grad":
            activations *= 2  # primal + tangent
    return MemoryEstimate(weights, state, int(activations))


_FORWARDS_PER_SAMPLE = {"one-point-rf": 1, "zo-cons": 4, "forward-grad": 3, "fo-sgd": 3, "fo-adam": 3}


def forwards_per_step(config: RunConfig) -> float:
    """Forward-pass equivalents per optimizer step (backward ~ 2 forwards)."""
    per = _FORWARDS_PER_SAMPLE.get(config.method, 2)
    if config.method in ("fo-sgd", "fo-adam", "zo-cons", "one-point-rf"):
        return per
    return per * config.n_samples


def device_kind(device: str) -> str:
    return "gpu" if device.startswith("cuda") or device == "gpu" else "cpu"


def default_step_seconds(config: RunConfig, device: str = "cpu", shape: ModelShape | None = None) -> float:
    """FLOPs-based step time on a nominal device (before any learning)."""
    shape = shape or model_shape(config.model)
    kind = device_kind(device)
    tokens = config.batch_size * config.max_length
    fwd_flops = 2.0 * shape.params * tokens
    fwd_s = fwd_flops / THROUGHPUT[kind] + FORWARD_OVERHEAD_S[kind] + shape.layers * LAYER_OVERHEAD_S[kind]
    train = forwards_per_step(config) * fwd_s
    # dev evaluation every eval_every steps, dev_size examples in batches, amortised per step
    dev_batches = max(1, -(-config.dev_size // config.batch_size))
    evals = dev_batches * fwd_s / config.eval_every if config.steps else 0.0
    return train + evals


class StepTimeSource(Protocol):
    """Finished runs to learn from (``zolab.db.repo.jobs.step_time_samples`` rows)."""

    config: dict
    steps: int
    wall_time_s: float
    device: str


@dataclass(frozen=True)
class StepTime:
    seconds: float
    source: str          # "default" | "learned from N runs"
    factor: float = 1.0  # measured / predicted ratio applied


class StepTimeModel:
    """Learns measured / predicted step time from finished runs of the same model + method."""

    def __init__(self, samples: Iterable[StepTimeSource] = ()) -> None:
        self.samples = list(samples)

    def estimate(self, config: RunConfig, device: str = "cpu") -> StepTime:
        kind = device_kind(device)
        predicted = default_step_seconds(config, device)
        ratios = []
        for s in self.samples:
            if device_kind(s.device) != kind or s.config.get("model") != config.model:
                continue
            if s.config.get("method") != config.method:
                continue
            try:
                past = RunConfig.from_dict(s.config)
            except (ValueError, TypeError):
                continue
            ratios.append((s.wall_time_s / s.steps) / default_step_seconds(past, device))
        if not ratios:
            return StepTime(predicted, "default")
        factor = statistics.median(ratios)
        return StepTime(predicted * factor, f"learned from {len(ratios)} runs", factor)


@dataclass(frozen=True)
class JobEstimate:
    memory_bytes: int
    step_seconds: float
    gpu_hours: float
    source: str


def estimate_job(config: RunConfig, times: StepTimeModel, device: str = "cpu") -> JobEstimate:
    mem = estimate_memory(config)
    st = times.estimate(config, device)
    return JobEstimate(mem.total, st.seconds, config.steps * st.seconds / 3600.0, st.source)


__all__ = [
    "JobEstimate",
    "MemoryEstimate",
    "ModelShape",
    "StepTime",
    "StepTimeModel",
    "default_step_seconds",
    "device_kind",
    "estimate_job",
    "estimate_memory",
    "forwards_per_step",
    "model_shape",
    "trainable_params",
]
