"""The component registry: what an ablation can change, as data.

Each :class:`Component` holds the phrases that name it (with a weight: "perturbation" alone names
the perturbation scale less surely than "perturbation scale"), the domain its values come from,
and what each action means for it. Components with ``knob=None`` are things zolab does not have
(dropout, a tokenizer setting, ...): they are here so that such ablations are read for what they
are and answered in those words ("zolab has no dropout setting"), not scored low and guessed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from zolab.platform.resolver.attributes import ASKED_FOR, WRITTEN, Attribute, cannot
from zolab.platform.resolver.domains import (
    BetasDomain,
    Domain,
    LayerDomain,
    ModelDomain,
    NumberDomain,
    SparsityDomain,
    TrainSizeDomain,
    Vocabulary,
)
from zolab.platform.resolver.methods import MethodDomain
from zolab.platform.resolver.text import tokens

#: REMOVE kinds
IMPOSSIBLE = "impossible"   # every run needs one (the optimizer, eps, the model): unresolved, say so
TO = "to"                   # REMOVE sets the knob to ``remove_to`` (or inverts / is a no-op, see resolve)
ABSENT = "absent"           # zolab has no such setting: REMOVE is a no-op when ``absent_remove`` says why

RANK_NOTE = (
    "The paper ties MeZO's convergence to a low local effective rank of the loss, which it attributes to "
    "prompt-based fine-tuning; without a prompt MeZO collapses (SST-2 89.6 -> 51.9 in the paper), so removing "
    "the assumption means fine-tuning without a prompt (prompt=false, raw input)."
)


@dataclass(frozen=True)
class Name:
    """A phrase that names a component; ``note`` is prepended to the explanation when it decides."""

    phrase: str
    weight: float = 1.0
    note: str = ""

    @cached_property
    def words(self) -> tuple[str, ...]:
        return tuple(tokens(self.phrase))


def names(*items: str | tuple[str, float] | Name) -> tuple[Name, ...]:
    out = []
    for item in items:
        if isinstance(item, Name):
            out.append(item)
        elif isinstance(item, tuple):
            out.append(Name(item[0], item[1]))
        else:
            out.append(Name(item))
    return tuple(out)


@dataclass(frozen=True)
class Component:
    """One thing an ablation can change, and what each action means for it."""

    key: str
    title: str
    knob: str | None                     # RunConfig field; None: zolab has no such setting
    names: tuple[Name, ...]
    domain: Domain | None = None
    remove: str = IMPOSSIBLE
    remove_to: Any = None
    offered: tuple[Any, ...] = ()        # REMOVE of an option the baseline does not use: run these instead
    add_values: tuple[Any, ...] = ()     # ADD without a replacement
    uses: tuple[str, ...] = ()           # methods that read the knob; others get ``imply`` (family -> method)
    imply: dict[str, str] = field(default_factory=dict)
    peft: str | None = None              # the PEFT kind the knob belongs to (lora_r -> lora)
    zo_only: bool = False                # only zeroth-order methods perturb
    absent: str = ""                     # knob None: "zolab has no ... setting" sentence
    absent_remove: str = ""              # knob None: why REMOVE changes nothing ({method} = the baseline's)
    unused_phrase: str = ""              # inverted: "the baseline does not use {unused_phrase}"
    attributes: tuple[Attribute, ...] = ()  # how the knob is written inside other values (attributes.WRITTEN)

    @property
    def removable(self) -> bool:
        return self.remove != IMPOSSIBLE


def _bool(true: tuple[str, ...], false: tuple[str, ...], knob: str) -> Vocabulary:
    true = (*true, "true", "yes", "on", "enabled")
    false = (*false, "false", "no", "off", "disabled")
    return Vocabulary(knob, {**{t: True for t in true}, **{f: False for f in false}}, fuzzy=False)


_INT = 10_000_000
COMPONENTS: dict[str, Component] = {c.key: c for c in (
    # ------------------------------------------------------------------ the optimizer and its estimate
    Component("optimizer", "optimizer", "method", names(
        "optimizer", "optimiser", "optimization method", "optimization algorithm", "optimizer choice",
        "training method", "training algorithm", ("training procedure", 0.8), "fine tuning method",
        "adaptation method", "tuning method", "update rule", "update step", "step rule", "optimizer step",
        "optimization paradigm", "zeroth order optimization", "zeroth order method", "zeroth order optimizer",
        "zo optimizer", "zo method", "zo optimization", "mezo optimizer", ("mezo", 0.8), "gradient computation",
        "gradient free optimizer", "learning algorithm", ("update", 0.85), "solver", ("method", 0.6), ("approach", 0.5),
        ("learning paradigm", 0.8), "fine tuning approach", ("zo sgd", 0.8), ("zeroth order", 0.7)),
        domain=MethodDomain()),
    Component("eps", "perturbation scale", "eps", names(
        "perturbation scale", "perturbation size", "perturbation magnitude", "perturbation radius",
        "perturbation strength", "epsilon", "eps", "smoothing parameter", "smoothing radius",
        "finite difference step", "difference step", "perturbation step size", "finite difference width",
        "difference width", "finite difference increment", ("mu", 0.8),
        ("perturbation", 0.75), ("radius", 0.7), "scale of z", "scale of the perturbation"),
        domain=NumberDomain("eps", 1e-6, 1.0, units=("eps", "epsilon", "mu"), symbols=("eps", "epsilon", "mu")),
        zo_only=True),
    Component("n_samples", "number of sampled directions", "n_samples", names(
        "number of sampled direction", "sampled direction", "sampled z", "number of z", "number of perturbation",
        "perturbation direction", ("random direction", 0.85), ("direction", 0.7), ("number of sample", 0.9),
        "n sample", "query", "function query", "query budget", "number of query", "spsa sample",
        "sample per step", "z sample", "estimate per step", ("averaging", 0.7), "several z", "multiple z",
        ("q", 0.9), "n spsa", ("forward pass per step", 0.8), "number of random vector", "random vector",
        "multiple direction", "multiple perturbation", "number of gradient estimate", "number of estimate",
        ("estimates averaged", 0.9)),
        domain=NumberDomain("n_samples", 1, 256, integer=True, units=("direction", "sample", "query", "z",
                                                                       "perturbation", "vector"),
                            symbols=("q", "n")),
        remove=TO, remove_to=1, zo_only=True),
    Component("in_place", "in-place perturbation", "in_place", names(
        "in place", "in place perturbation", "in place operation", "memory efficient implementation",
        "memory efficient in place", "memory efficient in place operation", "memory efficient perturbation",
        "memory efficient operation", ("memory saving", 0.9), "seed trick", "random seed trick", "resampling z",
        "regenerating z", "seed based regeneration", "regeneration of z", ("regeneration", 0.9),
        "materialized z", "storing perturbation", ("memory efficiency", 0.7), "regenerated z",
        ("memory efficient", 0.9), ("regenerated", 0.9), "regenerated on the fly"),
        domain=_bool(("in place", "regenerate", "seed trick", "regenerated from the seed"),
                     ("naive", "naive zo sgd", "materialised", "materialized", "stored z", "store z",
                      "store the perturbation", "explicit z", "not in place", "out of place", "stored",
                      "materialize", "keep z", "kept in memory", "keep z in memory", "store", "stored in memory",
                      "precomputed z"),
                     "in_place"),
        remove=TO, remove_to=False, add_values=(True,), zo_only=True),
    Component("estimator", "gradient estimator", "estimator", names(
        "gradient estimator", "estimator", "gradient estimate", "gradient estimation", "finite difference scheme",
        "difference scheme", ("finite difference", 0.9), "two point", "two sided", "one sided",
        "central difference", "forward difference", ("symmetric", 0.8), "spsa estimator", "estimator type",
        "zeroth order estimator", "zo estimator", "symmetric difference", "two point estimate"),
        domain=Vocabulary("estimator", {
            "central": "central", "two point": "central", "two sided": "central", "symmetric": "central",
            "central difference": "central", "symmetric difference": "central",
            "forward difference": "forward", "one sided": "forward",
            "forward finite difference": "forward", "one sided difference": "forward",
            "one point": "one-point", "one point estimate": "one-point", "residual feedback": "one-point",
            "single point": "one-point"}),
        zo_only=True),
    Component("distribution", "perturbation distribution", "distribution", names(
        "perturbation distribution", "distribution", "sampling distribution", "distribution of z",
        "noise distribution", ("random direction", 0.85), "direction distribution", "sampling law", "law of z",
        "z distribution", ("gaussian perturbation", 0.8), "noise type", "type of noise", ("perturbation type", 0.8),
        "sampling of z", "random perturbation distribution"),
        domain=Vocabulary("distribution", {
            "gaussian": "gaussian", "normal": "gaussian", "standard normal": "gaussian", "isotropic gaussian": "gaussian",
            "rademacher": "rademacher", "plus minus one": "rademacher", "bernoulli": "rademacher",
            "random sign": "rademacher", "sign vector": "rademacher",
            "sphere": "sphere", "spherical": "sphere", "unit sphere": "sphere", "uniform on the sphere": "sphere",
            "hypersphere": "sphere", "normalized gaussian": "sphere", "normalised gaussian": "sphere"}),
        zo_only=True),
    Component("sign_rule", "sign rule of ZO-SGD-Sign", "sign_rule", names(
        "sign rule", ("sign", 0.7), "how the sign", "sign variant", "elementwise sign", "scalar sign",
        "sign of the update"),
        domain=Vocabulary("sign_rule", {"elementwise": "elementwise", "element wise": "elementwise",
                                        "per element": "elementwise", "coordinate wise": "elementwise",
                                        "scalar": "scalar", "sign of the projected gradient": "scalar",
                                        "sign of g": "scalar", "global sign": "scalar"}),
        uses=("zo-sign",), imply={"zo": "zo-sign"}, zo_only=True),
    Component("sparsity", "sparse perturbation", "sparsity", names(
        "sparsity", "sparse perturbation", "perturbation sparsity", "sparsity level", "sparsity ratio",
        ("mask", 0.8), "sparse mask", "dense perturbation", "weight perturbed", "perturbed weight",
        ("weight updated", 0.9), "density", ("dense", 0.8), "sparse zo", "sparse mezo", ("sparse", 0.9)),
        domain=SparsityDomain(), remove=TO, remove_to=0.0, zo_only=True),
    Component("sparsity_rule", "sparse-perturbation mask rule", "sparsity_rule", names(
        "sparsity rule", "mask rule", "masking rule", "mask selection", ("which weight", 0.9), "weight selection",
        "selection rule", "mask criterion", "selection of weight", "masking strategy", "mask type"),
        domain=Vocabulary("sparsity_rule", {"random": "random", "random mask": "random", "uniform": "random",
                                            "magnitude": "magnitude", "magnitude based": "magnitude",
                                            "smallest magnitude": "magnitude", "small weight": "magnitude",
                                            "largest magnitude": "magnitude"}),
        remove=TO, remove_to="random", zo_only=True),
    Component("perturb_layers", "perturbed layers (block-wise ZO)", "perturb_layers", names(
        "perturbed layer", "layer perturbed", ("layer", 0.8), ("block", 0.8), "transformer block",
        "layer subset", "subset of layer", "block wise", "blockwise", "block wise perturbation", "block wise zo", "which layer", "perturbed block",
        "layer updated", "block updated"),
        domain=LayerDomain(depth=lambda model: _depth(model)), remove=TO, remove_to=None, zo_only=True),
    # ------------------------------------------------------------------ what is tuned and how
    Component("peft", "parameter-efficient fine-tuning", "peft", names(
        "parameter efficient", "parameter efficient tuning", "parameter efficient fine tuning",
        "parameter efficient adaptation", "peft", "peft method", "lora", "low rank adaptation", "low rank adapter",
        "adapter", "prefix tuning", ("prefix", 0.9), "soft prompt", "soft prompt tuning", "tuned parameter", "trainable parameter", "which parameter",
        ("parameter subset", 0.7), ("full parameter", 0.8), ("tuning technique", 0.7)),
        domain=Vocabulary("peft", {
            "none": "none", "full": "none", "full parameter": "none", "all parameter": "none", "no peft": "none",
            "full fine tuning": "none", "all weight": "none",
            "lora": "lora", "low rank adaptation": "lora", "low rank adapter": "lora", "lora module": "lora",
            "prefix": "prefix", "prefix tuning": "prefix", "prefix token": "prefix", "soft prompt": "prefix"}),
        remove=TO, remove_to="none", offered=("lora", "prefix"), add_values=("lora", "prefix"),
        unused_phrase="parameter-efficient fine-tuning (it tunes all parameters)"),
    Component("lora_r", "LoRA rank", "lora_r", names(
        "lora rank", ("rank", 0.8), "lora r", "adapter rank", "low rank dimension", "lora dimension", ("r", 0.6)),
        domain=NumberDomain("lora_r", 1, 1024, integer=True, units=("rank",), symbols=("r",)), peft="lora"),
    Component("lora_alpha", "LoRA alpha", "lora_alpha", names(
        "lora alpha", "lora scaling factor", ("alpha", 0.9), ("scaling factor", 0.7), "lora scaling"),
        domain=NumberDomain("lora_alpha", 1, 1024, integer=True, symbols=("alpha",)), peft="lora"),
    Component("prefix_tokens", "prefix length", "prefix_tokens", names(
        "number of prefix token", "prefix token", "prefix length", "virtual token", "soft prompt length",
        "prefix size", "soft prompt token", "number of soft prompt token"),
        domain=NumberDomain("prefix_tokens", 1, 512, integer=True, units=("token",)), peft="prefix"),
    Component("objective", "training objective", "objective", names(
        "objective", "training objective", "loss", "loss function", "training loss", "non differentiable objective",
        "non differentiable", "non differentiable metric", "training signal", "optimized objective", "optimization target",
        ("target metric", 0.7), "criterion"),
        domain=Vocabulary("objective", {
            "ce": "ce", "cross entropy": "ce", "cross entropy loss": "ce", "log likelihood": "ce",
            "accuracy": "accuracy", "negative accuracy": "accuracy", "0 1 loss": "accuracy",
            "f1": "f1", "macro f1": "f1", "f1 score": "f1", "negative f1": "f1"}),
        remove=TO, remove_to="ce", offered=("accuracy", "f1"), add_values=("accuracy", "f1"),
        unused_phrase="a non-differentiable objective (it minimises cross-entropy)"),
    Component("prompt", "prompt / task alignment", "prompt", names(
        "prompt", "prompting", "prompt template", "template", "prompt based", "prompt based fine tuning",
        "task alignment", "task aligned", "input format", "input template", "verbalizer", ("label word", 0.8),
        Name("effective rank", 1.0, RANK_NOTE), Name("theoretical assumption", 1.0, RANK_NOTE),
        Name("local effective rank", 1.0, RANK_NOTE)),
        domain=_bool(("prompt", "with prompt", "prompt based", "template", "with template"),
                     ("no prompt", "without prompt", "raw input", "raw text", "no template", "without template",
                      "without any template", "plain text", "plain input", "raw sentence", "raw example",
                      "drop prompt", "drop template", "remove prompt", "remove template", "strip prompt"), "prompt"),
        remove=TO, remove_to=False, add_values=(True,)),
    # ------------------------------------------------------------------ model, data, precision
    Component("model", "model", "model", names(
        ("model", 0.8), "model size", "model scale", "language model", "pretrained model", "base model",
        "backbone", "pretrained backbone", "model family", "architecture", "llm", "network size",
        "parameter count", ("scale", 0.6), "lm"),
        domain=ModelDomain(aliases=("smollm2-135m",))),
    Component("train_size", "training examples", "k_shot", names(
        "training set", "training set size", "training data", "training example", "training sample",
        "labelled example", "labeled example", "example per class", ("shot", 0.9), "k shot", "number of shot",
        ("few shot", 0.8), ("k", 0.8), "data budget", "dataset size", "amount of data", "data size", "train size",
        ("sample size", 0.7), "number of example", "training data size", "example per label", "data regime",
        ("low resource", 0.7)),
        domain=TrainSizeDomain()),
    Component("dtype", "numerical precision", "dtype", names(
        "precision", "numerical precision", "weight precision", "floating point format", "float format",
        "number format", "data type", "dtype", "bit width", "numeric format", "weight dtype"),
        domain=Vocabulary("dtype", {
            "float32": "float32", "fp32": "float32", "full precision": "float32", "single precision": "float32",
            "32 bit": "float32", "float16": "float16", "fp16": "float16", "half precision": "float16",
            "half": "float16", "16 bit float": "float16", "bfloat16": "bfloat16", "bf16": "bfloat16",
            "brain float": "bfloat16"})),
    Component("max_length", "maximum sequence length", "max_length", names(
        "max length", "maximum length", "sequence length", "max sequence length", "maximum sequence length",
        "input length", "maximum input length", "context length", "context window", "truncation",
        "truncation length", "max token", "token limit"),
        domain=NumberDomain("max_length", 8, 32768, integer=True, units=("token",))),
    # ------------------------------------------------------------------ schedule and regularisation
    Component("steps", "training steps", "steps", names(
        "training step", "number of step", ("step", 0.8), "optimization step", ("iteration", 0.9),
        "training iteration", "training budget", "training duration", "training length", "number of update",
        ("fine tuning", 0.7), ("training", 0.75), "fine tuning stage", "training phase", "zero shot",
        "number of zo step", "zo step", ("budget", 0.5)),
        domain=NumberDomain("steps", 10, _INT, integer=True, units=("step", "iteration", "update"),
                            zero_words=("zero shot", "no training", "no fine tuning", "0 step")),
        remove=TO, remove_to=0),
    Component("batch_size", "batch size", "batch_size", names(
        "batch size", "minibatch size", "mini batch size", ("batch", 0.9), "batch of example"),
        domain=NumberDomain("batch_size", 1, 8192, integer=True, units=("example", "batch", "sequence"))),
    Component("lr", "learning rate", "lr", names(
        "learning rate", "lr", "step size", "learning rate value", ("eta", 0.9), ("update magnitude", 0.6)),
        domain=NumberDomain("lr", 1e-8, 1.0, units=("lr", "learning rate"), symbols=("lr", "eta"))),
    Component("lr_schedule", "learning-rate schedule", "lr_schedule", names(
        "learning rate schedule", "lr schedule", ("schedule", 0.8), "decay schedule", "learning rate decay",
        "lr decay", "annealing", "cosine schedule", "linear decay", "scheduler", "learning rate scheduler",
        "cosine decay", "cosine annealing", "constant learning rate", "constant lr", "fixed learning rate"),
        domain=Vocabulary("lr_schedule", {
            "constant": "constant", "constant learning rate": "constant", "no schedule": "constant", "fixed": "constant",
            "flat": "constant", "linear": "linear", "linear decay": "linear", "linear schedule": "linear",
            "cosine": "cosine", "cosine annealing": "cosine", "cosine decay": "cosine", "cosine schedule": "cosine"}),
        remove=TO, remove_to="constant"),
    Component("warmup", "learning-rate warmup", "warmup_steps", names(
        "warmup", "warm up", "learning rate warmup", "lr warmup", "warmup step", "warmup phase", "warmup period",
        "number of warmup step", "warmup schedule", "linear warmup"),
        domain=NumberDomain("warmup_steps", 0, _INT, integer=True, units=("step", "iteration"), of_steps=True),
        remove=TO, remove_to=0),
    Component("weight_decay", "weight decay", "weight_decay", names(
        "weight decay", "l2 regularization", "l2 penalty", "decoupled weight decay", ("regularization strength", 0.7),
        ("l2", 0.9)),
        domain=NumberDomain("weight_decay", 0.0, 1.0, units=("decay",)), remove=TO, remove_to=0.0),
    Component("momentum", "momentum", "momentum", names(
        "momentum", "momentum coefficient", "momentum term", "heavy ball", "heavy ball momentum", "momentum factor",
        "momentum parameter"),
        domain=NumberDomain("momentum", 0.0, 0.9999, symbols=("momentum",)), remove=TO, remove_to=0.0,
        add_values=(0.9,), uses=("zo-momentum", "fo-sgd"), imply={"zo": "zo-momentum", "fo": "fo-sgd"}),
    Component("betas", "Adam betas", "betas", names(
        ("beta", 0.6), "betas", "adam beta", "beta 1", "beta 2", "first moment decay", "second moment decay",
        "moment decay", ("adam hyperparameter", 0.7), "exponential decay rate", "adam beta 1", "adam beta 2"),
        domain=BetasDomain(), uses=("zo-adam", "fo-adam"), imply={"zo": "zo-adam", "fo": "fo-adam"}),
    Component("icl_demos", "in-context demonstrations", "icl_demos", names(
        "demonstration", "number of demonstration", "in context demonstration", "in context example",
        "number of in context example", ("demo", 0.9), "prompt example"),
        domain=NumberDomain("icl_demos", 0, 256, integer=True, units=("demo", "demonstration", "example", "shot")),
        remove=TO, remove_to=0, uses=("icl",), imply={"zo": "icl", "fo": "icl"}),
    # ------------------------------------------------------------------ what zolab does not have
    Component("layerwise_adaptive", "layer-wise adaptive step size", None, names(
        "layer wise adaptive", "layer wise adaptive optimization", "layer wise adaptive learning rate",
        "layer wise adaptive step size", "layer wise learning rate", "layer wise step size", "per layer learning rate",
        "layer wise", "layerwise", "per layer", "layerwise adaptation", "layer wise scaling",
        "layer wise learning rate decay", "layer wise decay", "llrd"),
        remove=ABSENT, absent="zolab has no layer-wise adaptive step-size setting",
        absent_remove="{method} has no layer-wise adaptive step size; removing it changes nothing"),
    *(Component(key, title, None, names(*phrases), remove=ABSENT, absent=absent, absent_remove=removed)
      for key, title, phrases, absent, removed in (
        ("dropout", "dropout", ("dropout", "attention dropout", "dropout rate", "dropout regularization"),
         "zolab has no dropout setting: every method runs the model in eval mode, without dropout",
         ("zolab runs every method without dropout (the model stays in eval mode, so the two ZO forwards see "
          "the same function); removing it changes nothing")),
        ("gradient_clipping", "gradient clipping", ("gradient clipping", "gradient norm clipping", "clipping",
                                                    "clip", "norm clipping"),
         "zolab has no gradient-clipping setting", "zolab does not clip gradients; removing clipping changes nothing"),
        ("label_smoothing", "label smoothing", ("label smoothing",), "zolab has no label-smoothing setting",
         "zolab's loss has no label smoothing; removing it changes nothing"),
        ("data_augmentation", "data augmentation", ("data augmentation", "augmentation", "augmented data",
                                                    "back translation"),
         "zolab has no data-augmentation setting",
         "zolab trains on the task's examples as sampled, without augmentation; removing it changes nothing"),
        ("early_stopping", "early stopping", ("early stopping", "early stop"), "zolab has no early-stopping setting",
         "zolab trains for all steps and tests the final weights; there is no early stopping to remove"),
        ("gradient_accumulation", "gradient accumulation", ("gradient accumulation", "accumulation step",
                                                            "gradient accumulation step"),
         "zolab has no gradient-accumulation setting",
         "zolab does not accumulate gradients over batches; removing accumulation changes nothing"),
        ("activation_checkpointing", "activation checkpointing", ("gradient checkpointing",
                                                                  "activation checkpointing",
                                                                  "activation recomputation"),
         "zolab has no activation-checkpointing setting",
         "zolab does not checkpoint activations; removing it changes nothing"),
        ("mixed_precision", "mixed precision", ("mixed precision", "amp", "autocast", "automatic mixed precision"),
         "zolab has no mixed-precision (autocast) setting; dtype sets the weights' precision",
         "zolab does not use mixed-precision autocast; removing it changes nothing"),
        ("quantization", "quantization", ("quantization", "quantized weight", "int8", "int4", "4 bit", "8 bit",
                                          "quantized model"),
         "zolab has no quantization setting (dtype sets float32, float16 or bfloat16 weights)",
         "zolab does not quantize weights; removing quantization changes nothing"),
        ("weight_averaging", "weight averaging", ("exponential moving average", "moving average of the weight",
                                                  "weight averaging", "ema", "polyak averaging", "iterate averaging",
                                                  "stochastic weight averaging", "swa", "model averaging"),
         "zolab has no weight-averaging (EMA / SWA) setting: the final weights are tested",
         "zolab tests the final weights, with no moving average of them; removing averaging changes nothing"),
        ("distillation", "knowledge distillation", ("knowledge distillation", "distillation", "teacher model"),
         "zolab has no distillation setting", "zolab trains without distillation; removing it changes nothing"),
        ("pruning", "model pruning", ("pruning", "weight pruning", "pruned model"),
         "zolab has no model-pruning setting (sparsity masks the perturbation; it does not prune weights)",
         "zolab does not prune the model; removing pruning changes nothing"),
        ("variance_reduction", "variance reduction", ("variance reduction", "control variate", "svrg"),
         "zolab has no variance-reduction setting", "MeZO uses no variance reduction; removing it changes nothing"),
        ("preconditioning", "preconditioning", ("preconditioning", "preconditioner", "hessian", "curvature",
                                                "diagonal hessian", "second order information"),
         "zolab has no preconditioning (Hessian-informed) setting",
         "MeZO uses no preconditioning; removing it changes nothing"),
        ("epochs", "training epochs", ("epoch", "number of epoch", "training epoch"),
         "zolab counts training in steps (steps:), not epochs; write the number of steps", ""),
        ("tokenizer", "tokenizer", ("tokenizer", "tokenization", "vocabulary", "subword", "tokeniser"),
         "zolab has no tokenizer setting: each model uses its own tokenizer", ""),
        ("seed", "random seed", ("random seed", "seed", "seeds"),
         "seeds are a plan-level setting (seeds:), not a per-ablation knob: every variant runs on every seed", ""),
        ("task", "task / data set", (("task", 0.8), "dataset", "evaluation dataset", "benchmark", "downstream task",
                                     "data set", "evaluation task"),
         "tasks are a plan-level setting (tasks:), not a per-ablation knob: every variant runs on every task", ""),
        ("hardware", "hardware / parallelism", ("number of gpu", "gpu count", "distributed training",
                                                "data parallelism", "multi gpu", "hardware"),
         "zolab runs each job on one device; it has no multi-GPU or distributed setting", ""),
    )),
)}


def _with_attributes(comp: Component) -> Component:
    """The component with its written forms (:data:`~zolab.platform.resolver.attributes.WRITTEN`), and for
    what zolab does not have, the words by which a value asks for it (refused with ``absent``)."""
    found = WRITTEN.get(comp.key, ())
    if comp.key in ASKED_FOR:
        found += cannot({ASKED_FOR[comp.key]: comp.absent})
    return replace(comp, attributes=found) if found else comp


COMPONENTS = {key: _with_attributes(comp) for key, comp in COMPONENTS.items()}


def _depth(model: str) -> int | None:
    """Transformer layers of ``model`` when known offline (OPT sizes, tiny configs), else None."""
    from zolab.platform.estimates import OPT_SIZES
    from zolab.runners.models import parse_tiny

    tiny = parse_tiny(model)
    if tiny:
        return tiny[2]
    name = model.lower().rsplit("/", 1)[-1]
    if name.startswith("opt-") and name[4:] in OPT_SIZES:
        return OPT_SIZES[name[4:]][1]
    return None


#: components the user can pick (a knob to set), in registry order
SETTABLE = tuple(k for k, c in COMPONENTS.items() if c.knob is not None)
