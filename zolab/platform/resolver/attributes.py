"""How a knob is written *inside* another component's replacement value ("LoRA with r=16",
"cosine schedule with 500 warmup steps", "perturb only 20% of the weights with the smallest
magnitude"): the data each :class:`~zolab.platform.resolver.registry.Component` declares.

An :class:`Attribute` is a pattern (a regex over the value, case-insensitive) and what it means:

* a number with its unit or symbol (``r=16``, ``500 warmup steps``, ``lr 1e-4``): the knob's own
  value domain reads the named group ``v`` (or the whole match), so ranges and units are checked the
  same way as for a value of the knob itself;
* a qualifier word with a fixed value (``smallest magnitude`` -> ``sparsity_rule: magnitude``);
* a *refusal*: words naming something zolab cannot run ("Nesterov", "gradient clipping",
  "warm restarts"); a value holding them is never read as if they were not there.

``read_in`` names the components whose values may carry the attribute (None: any). Outside them the
attribute is still found, and then it is words the reading cannot place: the value is not read
(:mod:`zolab.platform.resolver.compound`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: a whole number, not the tail of a longer one (a regex must not restart inside "1111...")
INT = r"(?<![\d.,])\d+"
#: a number as planners write it: 16, 0.9, 1e-4, 1.6e-5, 5k, 10,000, 20%
NUM = r"(?<![\d.,])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?|\.\d+)(?:\s*[eE]\s*[-+]?\d+)?(?:\s*[kKmM]\b)?(?:\s*%)?"
READ = object()  # the knob's domain reads the match (no fixed value)


@dataclass(frozen=True)
class Attribute:
    """One way a knob appears inside another value (module doc). ``whole``: the domain reads the
    whole match (it needs the words, e.g. "perturb only 20%" vs "20% sparsity"), else group ``v``."""

    pattern: str
    value: Any = READ
    whole: bool = False
    read_in: tuple[str, ...] | None = None
    not_in: tuple[str, ...] = ()
    reason: str = ""

    def readable_in(self, key: str) -> bool:
        """Whether a value of component ``key`` may carry this attribute."""
        return key not in self.not_in and (self.read_in is None or key in self.read_in)

    @property
    def numeric(self) -> bool:
        return self.value is READ and not self.reason


def number(*patterns: str, whole: bool = False, read_in: tuple[str, ...] | None = None,
           not_in: tuple[str, ...] = ()) -> tuple[Attribute, ...]:
    """Attributes whose value the knob's domain reads (``{N}`` in a pattern stands for a number, ``{I}``
    for a whole number)."""
    return tuple(Attribute(p.replace("{N}", NUM).replace("{I}", INT), whole=whole, read_in=read_in, not_in=not_in)
                 for p in patterns)


def words(table: dict[str, Any], read_in: tuple[str, ...] | None = None) -> tuple[Attribute, ...]:
    """Qualifier words with a fixed value: ``{regex: value}``."""
    return tuple(Attribute(p, value=v, read_in=read_in) for p, v in table.items())


def named(pattern: str, read_in: tuple[str, ...] | None = None) -> tuple[Attribute, ...]:
    """Names the knob's domain reads (a model id, a method name): the whole match."""
    return (Attribute(pattern, whole=True, read_in=read_in),)


def cannot(table: dict[str, str]) -> tuple[Attribute, ...]:
    """Words zolab cannot run: ``{regex: why}``."""
    return tuple(Attribute(p, reason=why) for p, why in table.items())


#: the step or rate words between a knob's name and its number ("momentum coefficient of 0.5")
JOIN = r"(?:\s*(?:=|:|of|to|at|is|with|set\s+to|scaled\s+to|coefficient|coeff\.?|factor|value)\s*)*\s*"

_PCT = r"(?<![\d.,])(?:\d+(?:\.\d+)?\s*%|0?\.\d+)"
#: components whose values are about the zeroth-order perturbation (a sparsity is read only there)
_ZO_VALUES = ("sparsity", "sparsity_rule", "optimizer", "perturb_layers", "distribution", "estimator", "eps",
              "n_samples", "in_place")
#: components whose values may give a training-set size besides their own setting
_DATA_VALUES = ("steps", "batch_size", "model", "dtype", "max_length", "prompt", "lr", "objective")

#: how each component's knob is written inside other values (component key -> attributes)
WRITTEN: dict[str, tuple[Attribute, ...]] = {
    "optimizer": named(
        r"\b(?:zo|fo|first[\s-]?order|zeroth[\s-]?order)[\s-]*(?:sgd|adam\w*|momentum|sign\w*|cons)"
        r"(?:[\s-]*(?:sgd|sign|cons|mmt))*\b|\bmezo\b|\badam\w*\b|\bsgd\b(?:\s+with\s+(?:heavy[\s-]?ball\s+)?momentum)?"
        r"|\bin[\s-]?context\s+learning\b|\bicl\b|\blinear[\s-]+prob\w*") + cannot({
            r"\bnesterov\b": "zolab's momentum is heavy-ball; it has no Nesterov variant",
            r"\bams[\s-]?grad\b": "zolab's Adam has no AMSGrad variant",
            r"\b(?:rmsprop|adagrad|adafactor|adadelta|lion|lamb|sophia|lookahead|shampoo)\b":
                "zolab has no such optimizer (its methods: mezo, zo-sgd, zo-momentum, zo-adam, zo-sign, zo-cons, "
                "forward-grad, one-point-rf, fo-sgd, fo-adam, linear-probe, icl)"}),
    "lr": number(
        r"\b(?:peak\s+|base\s+|initial\s+|max(?:imum)?\s+)?(?:lr|learning[\s-]+rate|eta)" + JOIN + r"(?P<v>{N})",
        r"(?P<v>{N})\s+(?:lr|learning[\s-]+rate)\b"),
    "eps": number(r"\b(?:eps|epsilon|mu|perturbation\s+(?:scale|size|radius|magnitude))" + JOIN + r"(?P<v>{N})"),
    "n_samples": number(
        r"\b(?:q|n)\s*[=:]\s*(?P<v>{I})\b",
        r"(?P<v>{I})\s+(?:[\w-]+\s+){0,2}?(?:directions?|queries|query|perturbations?|random\s+vectors?|probes?|"
        r"z\s+samples?|spsa\s+samples?)\b(?:\s+(?:per|each)\s+step)?") + number(
        r"(?P<v>{I})\s+(?:per|each)\s+step\b", read_in=("distribution", "estimator", "optimizer", "eps", "n_samples")),
    "steps": number(
        r"(?P<v>{N})\s+(?:training\s+|optimi[sz]ation\s+|zo\s+|fine[\s-]?tuning\s+|gradient\s+|update\s+)?"
        r"(?:steps?|iterations?|updates)\b", not_in=("lr_schedule", "warmup")),
    "warmup": number(
        r"(?P<v>{N})\s*(?:[\w-]+\s+)?warm[\s-]?up(?:\s+(?:steps?|iterations?))?",
        r"\bwarm[\s-]?up\s*(?:of|for|over|=|:|phase\s+of|period\s+of)?\s*(?:the\s+first\s+)?(?P<v>{N})"
        r"(?:\s*(?:steps?|iterations?))?",
        r"(?P<v>{N})\s*(?:steps?|iterations?)\s+of\s+(?:linear\s+)?warm[\s-]?up"),
    "momentum": number(
        r"\b(?:heavy[\s-]?ball\s+)?momentum" + JOIN + r"(?P<v>{N})",
        r"\bheavy[\s-]?ball" + JOIN + r"(?P<v>{N})",
        r"(?P<v>{N})\s+(?:heavy[\s-]?ball\s+)?momentum\b"),
    "betas": number(
        r"\bbeta\s*_?\s*[12]\b" + JOIN + r"{N}",
        r"\bbetas?" + JOIN + r"\(?\s*{N}\s*[,/]\s*{N}\s*\)?", whole=True),
    "weight_decay": number(
        r"\b(?:weight[\s-]+decay|wd|l2(?:\s+(?:penalty|regulari[sz]ation))?)" + JOIN + r"(?P<v>{N})",
        r"(?P<v>{N})\s+(?:decoupled\s+)?weight[\s-]+decay\b"),
    "lora_r": number(
        r"\b(?:lora\s+)?(?:rank|r)\s*[=:]\s*(?P<v>{I})\b",
        r"\b(?:lora\s+)?rank" + JOIN + r"(?P<v>{I})\b"),
    "lora_alpha": number(r"\b(?:lora\s+)?(?:alpha|scaling(?:\s+factor)?)" + JOIN + r"(?P<v>{I})\b"),
    "prefix_tokens": number(
        r"(?P<v>{I})\s*(?:virtual|prefix|soft[\s-]?prompt)\s+tokens?\b",
        r"(?P<v>{I})[\s-]+tokens?\s+(?:long\s+)?(?:prefix|soft\s+prompt)",
        r"\b(?:prefix|soft[\s-]?prompt)(?:\s+(?:tuning|length))?\s*(?:of|with|=|:|,)?\s*(?P<v>{I})\b"
        r"(?:\s*(?:virtual\s+)?tokens?)?(?:\s+long)?"),
    "max_length": number(
        r"\b(?:max(?:imum)?[\s_-]+)?(?:sequence|input|context)[\s_-]+length" + JOIN + r"(?P<v>{I})",
        r"\bmax[\s_-]*(?:len|length|tokens)" + JOIN + r"(?P<v>{I})",
        r"\btruncat\w*\s+(?:at|to)\s+(?P<v>{I})"),
    "batch_size": number(
        r"\b(?:mini[\s-]?)?batch(?:[\s_-]?size)?" + JOIN + r"(?P<v>{I})\b",
        r"\bbs\s*[=:]?\s*(?P<v>{I})\b",
        r"(?P<v>{I})\s+(?:examples?\s+|sequences?\s+)?per\s+batch\b"),
    "train_size": number(
        r"(?<![\d.,])\d[\d,]*k?\s+(?:labell?ed\s+|training\s+)?(?:examples?|samples?|instances)\s+(?:per|each|for\s+each)\s+"
        r"(?:class|label)",
        r"(?<![\d.,])\d+[\s-]*shots?\b", r"\bk\s*[=:]\s*\d+\b",
        r"(?<![\d.,])\d[\d,]*k?\s+(?:labell?ed\s+|training\s+)?(?:examples?|samples?)\b", whole=True, read_in=_DATA_VALUES),
    "icl_demos": number(
        r"(?P<v>{I})\s*(?:in[\s-]?context\s+)?(?:demonstrations?|demos?)\b",
        r"(?P<v>{I})\s+in[\s-]?context\s+examples?\b",
        r"(?P<v>{I})[\s-]*shots?\b",
        r"(?P<v>{I})\s+(?:examples?|shots)\b", read_in=("optimizer", "prompt", "train_size")),
    "sparsity": number(
        r"(?:\b(?:perturb\w*|updat\w*|keep\w*|kept|select\w*|train\w*|touch\w*|mask\w*|zero\w*|freez\w*|frozen|"
        r"drop\w*)\s+(?:only\s+)?(?:the\s+)?(?:top\s+|bottom\s+)?)?" + _PCT + r"\s*(?:of\s+)?(?:the\s+|all\s+)?"
        r"(?:[\w-]+\s+){0,2}?(?:weights?|parameters?|params|coordinates|entries)\b(?:\s+(?:perturbed|updated|frozen|masked))?",
        _PCT + r"\s*(?:sparsity|sparse|density|dense)\b",
        r"\b(?:sparsity|density)(?:\s+(?:level|ratio))?" + JOIN + _PCT,
        r"\b(?<![\d.,])\d+(?:\.\d+)?\s*%\s*(?:random\s+|magnitude\s+)?mask\b", whole=True, read_in=_ZO_VALUES),
    "sparsity_rule": words({
        r"\b(?:smallest|lowest|largest|highest|top|bottom|small|large|low|high)[\s-]+(?:absolute[\s-]+)?magnitudes?\b":
            "magnitude",
        r"\bmagnitude[\s-]*(?:based|criterion|rule|mask|selection|pruning)\b": "magnitude",
        r"\b(?:by|on|of)\s+(?:their\s+|the\s+)?(?:largest\s+|smallest\s+)?(?:absolute\s+)?magnitudes?\b": "magnitude",
        r"\b(?:smallest|largest)\s+(?:\w+\s+)?weights\b": "magnitude",
        r"\b(?:chosen|selected|picked|sampled)\s+(?:uniformly\s+)?at\s+random\b": "random",
        r"\brandom(?:ly)?\s+(?:chosen|selected|picked|mask|selection|subset)\b": "random",
        r"\brandom(?=\s+\d+(?:\.\d+)?\s*%\s*mask)": "random"}, read_in=("sparsity", "optimizer", "perturb_layers")),
    "distribution": words({
        r"\brademacher\b|\brandom[\s-]+signs?\b|\bsign\s+vectors?\b": "rademacher",
        r"\bgaussian\b|\bstandard\s+normal\b": "gaussian",
        r"\b(?:unit[\s-]+)?(?:hyper)?spher(?:e|ical)\b": "sphere"}) + cannot({
        r"\b(?:laplace|cauchy|student[\s-]?t)\b": "zolab's perturbation distributions are gaussian, rademacher and sphere"}),
    "estimator": words({
        r"\bforward[\s-]+(?:finite[\s-]+)?differences?\b|\bone[\s-]+sided\b": "forward",
        r"\bcentral[\s-]+differences?\b|\btwo[\s-]+sided\b|\btwo[\s-]+point\b|\bsymmetric\s+differences?\b": "central",
        r"\bone[\s-]+point\b|\bresidual[\s-]+feedback\b": "one-point"}),
    "dtype": words({
        r"\b(?:fp|float)[\s-]?16\b|\bhalf[\s-]+precision\b": "float16",
        r"\bb(?:f|float)[\s-]?16\b|\bbrain[\s-]?float\b": "bfloat16",
        r"\b(?:fp|float)[\s-]?32\b|\bfull[\s-]+precision\b|\bsingle[\s-]+precision\b": "float32"}),
    "lr_schedule": words({
        r"\bcos(?:ine)?(?:[\s-]+(?:annealing|decay|schedule|lr|learning[\s-]+rate))?\b": "cosine",
        r"\blinear(?:ly)?[\s-]+(?:decay\w*|schedule|annealing)\b|\bdecay\w*\s+linearly\b": "linear",
        r"\bconstant[\s-]+(?:lr|learning[\s-]+rate|schedule)\b": "constant"}) + cannot({
        r"\b(?:warm\s+)?restarts?\b": "zolab's LR schedules (constant, linear, cosine) have no restarts",
        r"\b(?:step|exponential|polynomial|inverse[\s-]+sqrt|inverse[\s-]+square[\s-]+root)\s+(?:decay|schedule)\b"
        r"|\bone[\s-]?cycle\b|\breduce[\s-]+on[\s-]+plateau\b|\bcyclic(?:al)?\s+(?:lr|learning)":
            "zolab's LR schedules are constant, linear and cosine"}),
    "peft": words({
        r"\blora\b|\blow[\s-]+rank\s+adapt\w*": "lora",
        r"\bprefix[\s-]+tuning\b|\bsoft[\s-]+prompts?\b|\bprefix\b": "prefix"}) + cannot({
        r"\b(?:ia3|bitfit|dora|qlora|houlsby|compacter)\b": "zolab's PEFT kinds are LoRA and prefix tuning"}),
    "sign_rule": words({
        r"\bscalar\s+sign\b|\bsign\s+of\s+the\s+projected\s+(?:gradient|estimate)\b": "scalar",
        r"\b(?:element|coordinate)[\s-]?wise\s+sign\b|\bper[\s-]element\s+sign\b": "elementwise"},
        read_in=("optimizer", "sign_rule")),
    "objective": words({
        r"\bcross[\s-]?entropy\b": "ce", r"\bnegative\s+accuracy\b|\bzero[\s-]one\s+loss\b": "accuracy",
        r"\bnegative\s+(?:macro[\s-]?)?f1\b|\bf1\s+(?:objective|loss)\b": "f1"}),
    # a hub id (org/name) stands alone: never a piece of a longer path ("/data/run-1/opt-1.3b/ckpt")
    "model": named(r"(?<![\w./~-])(?:facebook/)?opt[\s-]?\d+(?:\.\d+)?\s*[mb]\b(?![\w./-])"
                   r"|(?<![\w./~-])[a-z][\w.-]*/[\w.-]*\d[\w.-]*(?![\w./-])"
                   r"|\bsmollm2-135m\b|\btiny-(?:opt|llama|gpt2)\b"),
}

#: things zolab does not have, as a value asks for them ("Adam with gradient clipping at 1.0"):
#: component key -> pattern (the refusal says the component's own "zolab has no ..." sentence)
ASKED_FOR: dict[str, str] = {
    "dropout": r"\bdropout\b",
    "gradient_clipping": r"\b(?:gradient|grad|norm)[\s-]+clipp?\w*|\bclip(?:ping|ped)?\b",
    "label_smoothing": r"\blabel[\s-]+smoothing\b",
    "data_augmentation": r"\b(?:data[\s-]+)?augment\w*|\bback[\s-]+translation\b",
    "early_stopping": r"\bearly[\s-]+stop\w*",
    "gradient_accumulation": r"\bgradient[\s-]+accumulation\b|\baccumulat\w*\s+(?:steps?|gradients?)",
    "activation_checkpointing": r"\b(?:gradient|activation)[\s-]+checkpointing\b",
    "mixed_precision": r"\bmixed[\s-]+precision\b|\bautocast\b|\bamp\b",
    "quantization": r"\b(?:int|fp)[\s-]?[48]\b|\b[48][\s-]?bit\b|\bquanti[sz]\w*",
    "distillation": r"\b(?:knowledge\s+)?distill\w*|\bteacher\s+model\b",
    "layerwise_adaptive": r"\blayer[\s-]?wise\s+(?:adaptive|learning\s+rates?|lrs?|step\s+sizes?|scaling)"
                          r"|\bper[\s-]layer\s+(?:learning\s+rates?|lrs?|step\s+sizes?)|\bllrd\b",
}

__all__ = ["ASKED_FOR", "INT", "JOIN", "NUM", "READ", "WRITTEN", "Attribute", "cannot", "named", "number", "words"]
