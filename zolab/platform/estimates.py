"""Per-job estimates: peak memory and device-hours, before anything runs. Every time estimate names
what it assumes: a device class and a card (``H100 GPU-hours``, ``CPU-hours on this machine``).

Memory (bytes, the tensors a run holds; the executor packs jobs while these fit 90% of free memory):

* weights = parameters x bytes per element (dtype); the parameter count comes from the model's
  config on PyTorch's ``meta`` device (exact, no weights loaded);
* MeZO / ZO-SGD with in-place perturbation ~ inference: weights + one forward's activations;
* naive ZO (``in_place: false``) ~ inference + one copy of the trainable weights (materialised z);
  momentum / Adam variants add one / two state copies; forward-gradient adds tangents;
* FO-SGD / FO-Adam: weights + gradients (+ 1 / 2 optimizer states: Adam ~ 4x weights) + the
  activations stored for backprop (Korthikanti et al. 2022: s·b·h·(34 + 5·a·s/h) bytes per layer at 16 bit).

Time (seconds), :func:`job_seconds`: steps x :func:`step_seconds` + the run's evaluations.

* a step = ``forwards`` forward passes on the training batch + ``weight_passes`` passes over the
  weights the method perturbs or updates (:func:`step_work`: MeZO / central SPSA 2q forwards and
  2q + 1 passes, the forward estimator q + 1 forwards, one-point q, ZO-Cons + 3, forward-gradient
  ~3q (jvp), FO 3 (forward + backward), linear-probe ~1 (FO on the head only), ICL no steps;
  sparsity and ``perturb_layers`` shrink the passes, not the forwards);
* a forward = ``2 x params x tokens`` FLOPs at the card's peak x a sustained fraction (float32: at
  most the card's FP32 peak, as PyTorch leaves TF32 off), + a per-layer overhead; a weight pass =
  bytes moved / the card's memory bandwidth;
* evaluation: dev every ``eval_every`` steps, the zero-shot dev + test before and the test after
  (``icl``: prompts ``1 + icl_demos`` times longer).

GPU: the cards' datasheet peaks (dense fp16 tensor FLOP/s, HBM bandwidth, :data:`CARDS`) with ONE
sustained fraction solved from the anchor (:data:`ANCHOR`): the MeZO step at OPT-1.3B, batch 16,
length 128, fp16 on an H100 costs 0.130 s, the reference-style step measured there (the project's GPU
anchor; benchmarks/mezo_step.py measures it again on a lent card). zolab's fused step is cheaper, so
GPU estimates lean high until finished runs recalibrate them. CPU: a nominal throughput for "this
machine", meant to be recalibrated.

Recalibration (:class:`StepTimeModel`): finished results of the same model + method on the same
device class give measured / predicted job time; their median rescales the prediction and the
estimate says so ("recalibrated from 21 finished runs: x0.6").
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


@dataclass(frozen=True)
class Card:
    """A device the time model knows: peak throughput, memory bandwidth, fixed overheads."""

    name: str                   # "H100", or "CPU"
    kind: str                   # "gpu" | "cpu"
    flops: float                # peak FLOP/s the forward runs at (GPU: dense fp16/bf16 tensor cores)
    bandwidth: float            # bytes/s a weight pass streams (GPU: HBM; CPU: what z generation allows)
    layer_overhead_s: float     # per layer and forward (kernel launches, Python)
    forward_overhead_s: float   # per forward (embedding, head, scoring, sync)
    memory_bytes: int | None = None
    fp32_flops: float | None = None  # peak without tensor cores (PyTorch leaves TF32 matmuls off by default)

    @property
    def unit(self) -> str:
        return "GPU-hours" if self.kind == "gpu" else "CPU-hours"

    @property
    def label(self) -> str:
        """What the hours are: ``H100 GPU-hours`` | ``CPU-hours on this machine``."""
        return f"{self.name} GPU-hours" if self.kind == "gpu" else "CPU-hours on this machine"


_GiB = 2**30
#: datasheet peaks (dense fp16/bf16 tensor FLOP/s; memory bandwidth); the sustained fraction is the anchor's
CARDS: dict[str, Card] = {c.name: c for c in (
    Card("H100", "gpu", 989e12, 3.35e12, 1.5e-4, 1.0e-3, 80 * _GiB, 67e12),
    Card("H200", "gpu", 989e12, 4.8e12, 1.5e-4, 1.0e-3, 141 * _GiB, 67e12),
    Card("A100", "gpu", 312e12, 2.0e12, 1.5e-4, 1.0e-3, 80 * _GiB, 19.5e12),
    Card("L40S", "gpu", 362e12, 0.864e12, 1.5e-4, 1.0e-3, 48 * _GiB, 91.6e12),
    Card("L4", "gpu", 121e12, 0.3e12, 1.5e-4, 1.0e-3, 24 * _GiB, 30.3e12),
    Card("V100", "gpu", 125e12, 0.9e12, 1.5e-4, 1.0e-3, 32 * _GiB, 15.7e12),
)}
#: the card GPU estimates assume when this machine has none
DEFAULT_GPU_CARD = "H100"
#: this machine's CPU, nominally: 20 GFLOP/s sustained, z drawn at ~60M elements/s (4 B moved per
#: element and pass ~ 2.4e8 B/s); recalibrated from finished runs on this machine
CPU_CARD = Card("CPU", "cpu", 2.0e10, 2.4e8, 3.0e-3, 6.0e-3)


@dataclass(frozen=True)
class Anchor:
    """A measured step the GPU model is calibrated to."""

    model: str
    batch_size: int
    max_length: int
    dtype: str
    card: str
    seconds: float
    what: str


ANCHOR = Anchor("facebook/opt-1.3b", 16, 128, "float16", "H100", 0.130,
                "reference-style MeZO step, OPT-1.3B fp16, batch 16, length 128, on an H100")


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


_SPSA = ("mezo", "zo-sgd", "zo-momentum", "zo-adam", "zo-sign")
#: extra weight passes of the stateful ZO variants (materialising ghat, momentum / Adam moments)
_EXTRA_PASSES = {"zo-momentum": 1.0, "zo-sign": 1.0, "zo-adam": 2.0}
#: token cap for in-context prompts (OPT's 2048 positions)
ICL_MAX_TOKENS = 2048


@dataclass(frozen=True)
class StepWork:
    """What one optimizer step costs, in units the card converts to seconds."""

    forwards: float          # forward-pass equivalents on the training batch (backward ~ 2 forwards)
    weight_passes: float     # passes over the perturbed / updated weights
    pass_fraction: float     # share of the trainable weights a pass touches (sparsity, perturb_layers)


def _probe_forwards(config: RunConfig) -> float:
    """Forwards of the gradient estimate: central 2q, forward (one-sided, shares L(theta)) q + 1, one-point q."""
    q = config.n_samples
    return {"central": 2.0 * q, "forward": q + 1.0, "one-point": float(q)}[config.estimator]


def step_work(config: RunConfig, shape: ModelShape | None = None) -> StepWork:
    """Forwards and weight passes per step for ``config``'s method and knobs."""
    frac = 1.0 - config.sparsity
    if config.perturb_layers is not None and shape is not None and shape.layers:
        frac *= min(1.0, len(set(config.perturb_layers)) / shape.layers)
    m, q = config.method, config.n_samples
    if m == "icl" or config.steps == 0:
        return StepWork(0.0, 0.0, frac)
    if m in _SPSA:
        probes = _probe_forwards(config)
        passes = (2.0 * q + 1.0 if config.estimator == "central" else 2.0 * q) + _EXTRA_PASSES.get(m, 0.0)
        return StepWork(probes, passes, frac)
    if m == "zo-cons":
        return StepWork(_probe_forwards(config) + 3.0, 2.0 * q + 4.0, frac)
    if m == "one-point-rf":
        return StepWork(1.0, 2.0, frac)
    if m == "forward-grad":
        return StepWork(3.0 * q, q + 1.0, frac)
    if m == "linear-probe":
        return StepWork(1.0, 0.0, frac)         # features forward; the head's backward is negligible
    if m in ("fo-sgd", "fo-adam"):
        return StepWork(3.0, 2.0 if m == "fo-adam" else 1.0, 1.0)
    raise ValueError(f"no step cost model for method {m!r}")


def forwards_per_step(config: RunConfig) -> float:
    """Forward-pass equivalents per optimizer step (backward ~ 2 forwards)."""
    return step_work(config).forwards


def _sustained_flops(card: Card, dtype: str, utilisation: float) -> float:
    """FLOP/s a forward sustains: the fp16 peak x the anchor's fraction, capped by the dtype's peak
    (float32 runs without tensor cores: at most the card's FP32 peak)."""
    rate = card.flops * utilisation
    if card.kind == "gpu" and dtype == "float32" and card.fp32_flops:
        rate = min(rate, card.fp32_flops)
    return rate


def _forward_s(shape: ModelShape, tokens: float, card: Card, utilisation: float, dtype: str = "float16") -> float:
    return (2.0 * shape.params * tokens / _sustained_flops(card, dtype, utilisation) + card.forward_overhead_s
            + shape.layers * card.layer_overhead_s)


def _pass_s(config: RunConfig, shape: ModelShape, card: Card, fraction: float) -> float:
    """One pass over the perturbed weights: read + write the weight, write + read z (4 x its bytes)."""
    b = BYTES_PER_ELEMENT[config.dtype] if card.kind == "gpu" else 4
    return 4.0 * b * trainable_params(config, shape) * fraction / card.bandwidth


def _raw_step_s(config: RunConfig, shape: ModelShape, card: Card, utilisation: float) -> float:
    work = step_work(config, shape)
    tokens = config.batch_size * config.max_length
    return work.forwards * _forward_s(shape, tokens, card, utilisation, config.dtype) + \
        work.weight_passes * _pass_s(config, shape, card, work.pass_fraction)


@functools.lru_cache(maxsize=1)
def gpu_utilisation() -> float:
    """The sustained fraction of peak FLOP/s that makes the anchor step cost :data:`ANCHOR`.seconds."""
    a = ANCHOR
    cfg = RunConfig(method="mezo", model=a.model, batch_size=a.batch_size, max_length=a.max_length, dtype=a.dtype)
    shape, card = model_shape(a.model), CARDS[a.card]
    work = step_work(cfg, shape)
    fixed = work.forwards * (card.forward_overhead_s + shape.layers * card.layer_overhead_s) + \
        work.weight_passes * _pass_s(cfg, shape, card, work.pass_fraction)
    flops = work.forwards * 2.0 * shape.params * a.batch_size * a.max_length
    if a.seconds <= fixed:
        raise ValueError(f"anchor {a.seconds} s is below the model's fixed costs ({fixed:.3f} s)")
    return flops / (card.flops * (a.seconds - fixed))


def _utilisation(card: Card) -> float:
    return gpu_utilisation() if card.kind == "gpu" else 1.0


def step_seconds(config: RunConfig, card: Card, shape: ModelShape | None = None) -> float:
    """Seconds per optimizer step on ``card``, before recalibration."""
    shape = shape or model_shape(config.model)
    return _raw_step_s(config, shape, card, _utilisation(card))


def eval_seconds(config: RunConfig, card: Card, shape: ModelShape | None = None) -> float:
    """All evaluations of a run: dev every ``eval_every`` steps, zero-shot dev + test, final test."""
    shape = shape or model_shape(config.model)
    bs = max(32, config.batch_size)                     # the runner's eval batch
    length = config.max_length
    if config.method == "icl":
        length = min(ICL_MAX_TOKENS, length * (1 + config.icl_demos))
    fwd = _forward_s(shape, bs * length, card, _utilisation(card), config.dtype)
    trains = config.steps > 0 and config.method != "icl"
    dev_evals = 1 + (-(-config.steps // config.eval_every) if trains else 0)   # zero-shot + every eval_every
    test_evals = 2 if trains else 1                                             # before and after training
    return fwd * (_batches(config.dev_size, bs) * dev_evals + _batches(config.test_size, bs) * test_evals)


def _batches(n: int, batch_size: int) -> int:
    return -(-n // batch_size) if n > 0 else 0


def job_seconds(config: RunConfig, card: Card, shape: ModelShape | None = None) -> float:
    """A whole run: its steps and its evaluations (model loading not counted)."""
    shape = shape or model_shape(config.model)
    return config.steps * step_seconds(config, card, shape) + eval_seconds(config, card, shape)


def default_step_seconds(config: RunConfig, device: str = "cpu", shape: ModelShape | None = None) -> float:
    """Step time with the evaluations amortised over the steps, on ``device``'s card (before learning)."""
    card = card_for(device)
    shape = shape or model_shape(config.model)
    return job_seconds(config, card, shape) / max(1, config.steps)


# -- devices and cards --------------------------------------------------------------------------
def device_kind(device: str) -> str:
    return "gpu" if device.startswith("cuda") or device == "gpu" else "cpu"


def card_named(name: str) -> Card:
    """A known card by name, or by a CUDA device name that contains it ("NVIDIA H100 80GB HBM3")."""
    lowered = name.strip().lower()
    for key, card in CARDS.items():
        if key.lower() == lowered:
            return card
    for key in sorted(CARDS, key=len, reverse=True):   # "L40S" before "L4"
        if re.search(rf"(?<![a-z0-9]){re.escape(key.lower())}(?![0-9])", lowered):
            return CARDS[key]
    raise ValueError(f"unknown card {name!r}; known: {', '.join(CARDS)}")


@functools.lru_cache(maxsize=1)
def local_card() -> Card | None:
    """This machine's GPU as a :class:`Card` (its own name; H100 figures if the model is unknown)."""
    import torch

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(0)
    try:
        return card_named(name)
    except ValueError:
        h100 = CARDS[DEFAULT_GPU_CARD]
        return Card(f"{name} (H100 throughput assumed)", "gpu", h100.flops, h100.bandwidth,
                    h100.layer_overhead_s, h100.forward_overhead_s)


def card_for(device: str, card: str | None = None) -> Card:
    """The card a job on ``device`` (cpu | gpu | cuda[:N]) is estimated on: ``card`` by name, this
    machine's GPU, else :data:`DEFAULT_GPU_CARD`."""
    if device_kind(device) == "cpu":
        return CPU_CARD
    if card:
        return card_named(card)
    return local_card() or CARDS[DEFAULT_GPU_CARD]


def is_hub_model(model: str) -> bool:
    """A real model (hub id, alias or local folder), not one of the tiny random-init test configs."""
    from zolab.runners.models import parse_tiny

    return not parse_tiny(model)


def default_estimate_device(models: Iterable[str]) -> str:
    """``gpu`` on a machine with CUDA; without one ``gpu`` too when any model is a real hub model
    (nobody fine-tunes OPT-1.3B on a laptop CPU: CPU-hours would mislead), else ``cpu``."""
    if local_card() is not None:
        return "gpu"
    return "gpu" if any(is_hub_model(m) for m in models) else "cpu"


# -- learning from finished runs ----------------------------------------------------------------
class StepTimeSource(Protocol):
    """Finished runs to learn from (``zolab.db.repo.jobs.step_time_samples`` rows)."""

    config: dict
    steps: int
    wall_time_s: float
    device: str


@dataclass(frozen=True)
class StepTime:
    seconds: float       # per step, evaluations amortised
    source: str          # "default model (...)" | "recalibrated from N finished runs: xF"
    factor: float = 1.0  # measured / predicted ratio applied
    runs: int = 0        # finished runs the factor comes from


class StepTimeModel:
    """Recalibrates the time model from finished runs of the same model + method on the same device class."""

    def __init__(self, samples: Iterable[StepTimeSource] = ()) -> None:
        self.samples = list(samples)

    def factor(self, config: RunConfig, card: Card) -> tuple[float, int]:
        """Median measured / predicted whole-run time over the matching samples, and their count."""
        ratios = []
        for s in self.samples:
            if device_kind(s.device) != card.kind or s.config.get("model") != config.model:
                continue
            if s.config.get("method") != config.method:
                continue
            try:
                past = RunConfig.from_dict(s.config)
            except (ValueError, TypeError):
                continue
            predicted = job_seconds(past.replace(steps=s.steps), card)
            if predicted > 0 and s.wall_time_s > 0:
                ratios.append(s.wall_time_s / predicted)
        return (statistics.median(ratios), len(ratios)) if ratios else (1.0, 0)

    def estimate(self, config: RunConfig, device: str = "cpu", card: str | Card | None = None) -> StepTime:
        c = card if isinstance(card, Card) else card_for(device, card)
        predicted = job_seconds(config, c) / max(1, config.steps)
        factor, n = self.factor(config, c)
        if not n:
            return StepTime(predicted, f"default model ({_basis(c)})")
        return StepTime(predicted * factor, recalibration_text(n, factor), factor, n)


def _basis(card: Card) -> str:
    if card.kind == "gpu":
        return f"FLOPs at {card.name} peak x {gpu_utilisation():.3g}, calibrated to {ANCHOR.what}: {ANCHOR.seconds} s"
    return "FLOPs at a nominal 20 GFLOP/s CPU; no finished runs to recalibrate from"


def recalibration_text(runs: int, factor: float) -> str:
    return f"recalibrated from {runs} finished run{'s' if runs != 1 else ''}: x{factor:.2g}"


@dataclass(frozen=True)
class JobEstimate:
    memory_bytes: int
    step_seconds: float
    hours: float                 # device-hours of the whole run, in ``label``'s unit
    source: str
    label: str = "CPU-hours on this machine"
    kind: str = "cpu"

    @property
    def gpu_hours(self) -> float:
        """Legacy name of :attr:`hours` (the ``jobs.est_gpu_hours`` column): device-hours, see ``label``."""
        return self.hours


def estimate_job(config: RunConfig, times: StepTimeModel, device: str = "cpu", card: str | None = None) -> JobEstimate:
    c = card_for(device, card)
    mem = estimate_memory(config)
    st = times.estimate(config, device, c)
    return JobEstimate(mem.total, st.seconds, st.seconds * max(1, config.steps) / 3600.0, st.source, c.label, c.kind)


__all__ = [
    "ANCHOR",
    "CARDS",
    "CPU_CARD",
    "DEFAULT_GPU_CARD",
    "Anchor",
    "Card",
    "JobEstimate",
    "MemoryEstimate",
    "ModelShape",
    "StepTime",
    "StepTimeModel",
    "StepWork",
    "card_for",
    "card_named",
    "default_estimate_device",
    "default_step_seconds",
    "device_kind",
    "estimate_job",
    "estimate_memory",
    "eval_seconds",
    "forwards_per_step",
    "gpu_utilisation",
    "is_hub_model",
    "job_seconds",
    "local_card",
    "model_shape",
    "recalibration_text",
    "step_seconds",
    "step_work",
    "trainable_params",
]
