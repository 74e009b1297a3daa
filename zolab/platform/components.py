"""Component resolver: what an ablation's free text means for the runner's config.

An ablation says *what* to ablate in words ("memory-efficient in-place operation", "Number of
sampled z's"). :func:`resolve` maps it to a registered :class:`Component` (the DESIGN.md
"Components" table) and to concrete RunConfig changes, one per replacement, with a confidence,
a status and one sentence that explains the decision. It never guesses silently:

* ``resolved``   the changes are run against the baseline;
* ``inverted``   REMOVE of an option the baseline does not use but the method offers (PEFT,
  non-differentiable objectives): the contrast is run the other way round;
* ``no_op``      the change leaves the baseline unchanged (nothing to run);
* ``unresolved`` confidence below :data:`THRESHOLD` or replacement text that cannot be read.

Matching is data, not a chain of ifs: keyword rules (regular expressions with a score and an
optional note) plus rapidfuzz over every component's aliases; the best score wins.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from rapidfuzz import fuzz, utils

from zolab.platform.plan import Ablation, Action, Baseline, Plan
from zolab.runners.config import FO_METHODS

THRESHOLD = 0.7
STATUSES = ("resolved", "inverted", "no_op", "unresolved")
_NOT_REMOVABLE = object()

METHOD_NAMES = {
    "mezo": "MeZO", "zo-sgd": "ZO-SGD", "zo-momentum": "ZO-SGD with momentum", "zo-adam": "ZO-Adam",
    "zo-sign": "ZO-SGD-Sign", "zo-cons": "ZO-SGD-Cons", "forward-grad": "forward gradient",
    "one-point-rf": "one-point residual-feedback ZO", "fo-sgd": "SGD (backpropagation)",
    "fo-adam": "Adam (backpropagation)", "icl": "in-context learning", "linear-probe": "linear probing",
}


class ResolveError(ValueError):
    """An ablation that can never run as written (e.g. REMOVE of the optimizer)."""

    def __init__(self, message: str, field: str = "action") -> None:
        super().__init__(message)
        self.field = field


# --------------------------------------------------------------------------------------------
# replacement value parsers: text -> RunConfig changes
# --------------------------------------------------------------------------------------------
def _norm(text: str) -> str:
    return utils.default_process(str(text))


def best_alias(text: str, aliases: Mapping[str, Any], cutoff: float = 88) -> Any | None:
    """The value of the alias that matches ``text`` best (exact, then fuzzy; longer alias wins ties)."""
    norm = _norm(text)
    table = {_norm(a): v for a, v in aliases.items()}
    if norm in table:
        return table[norm]
    scored = [(max(fuzz.ratio(norm, a), fuzz.token_set_ratio(norm, a)), len(a), v) for a, v in table.items()]
    score, _, value = max(scored, key=lambda s: (s[0], s[1]))
    return value if score >= cutoff else None


_METHOD_ALIASES: dict[str, dict[str, Any]] = {
    **{a: {"method": "mezo"} for a in ("mezo", "zo sgd", "zo-sgd", "zeroth order sgd", "memory efficient zo sgd")},
    **{a: {"method": "fo-sgd"} for a in ("sgd", "fo sgd", "first order sgd", "stochastic gradient descent",
                                         "sgd with backpropagation")},
    **{a: {"method": "fo-adam"} for a in ("adam", "adamw", "fo adam", "first order adam", "backpropagation",
                                          "backprop", "first order", "gradient descent with backpropagation")},
    **{a: {"method": "fo-adam", "peft": "none"} for a in (
        "traditional fine tuning", "standard fine tuning", "full fine tuning", "fine tuning with backpropagation",
        "conventional fine tuning", "ft")},
    **{a: {"method": "one-point-rf"} for a in ("one point residual feedback oracle", "one point residual feedback",
                                               "residual feedback", "one point", "one-point-rf")},
    **{a: {"method": "zo-momentum"} for a in ("zo momentum", "zo sgd mmt", "zo sgd momentum", "zeroth order momentum")},
    **{a: {"method": "zo-adam"} for a in ("zo adam", "zeroth order adam")},
    **{a: {"method": "zo-sign"} for a in ("zo sign", "zo sgd sign", "sign sgd", "zeroth order sign sgd")},
    **{a: {"method": "zo-cons"} for a in ("zo cons", "zo sgd cons", "conservative zo sgd")},
    **{a: {"method": "forward-grad"} for a in ("forward grad", "forward gradient", "forward mode ad", "jvp")},
    # the MeZO paper's no-ZO baselines (runner: zolab.runners.baselines)
    **{a: {"method": "icl"} for a in ("icl", "in context learning", "in-context learning", "few shot prompting")},
    **{a: {"method": "linear-probe"} for a in ("linear probe", "linear probing", "linear-probe", "lp")},
}
_PEFT_ALIASES = {"none": "none", "full": "none", "full parameter": "none", "no peft": "none", "lora": "lora",
                 "low rank adaptation": "lora", "prefix": "prefix", "prefix tuning": "prefix"}
_OBJECTIVE_ALIASES = {"ce": "ce", "cross entropy": "ce", "cross entropy loss": "ce", "accuracy": "accuracy",
                      "negative accuracy": "accuracy", "f1": "f1", "macro f1": "f1", "f1 score": "f1"}
_BOOL_ALIASES = {"true": True, "yes": True, "on": True, "with": True, "false": False, "no": False, "off": False,
                 "without": False, "none": False, "remove": False}
_PROMPT_ALIASES = {**_BOOL_ALIASES, "prompt": True, "with prompt": True, "prompt based": True,
                   "no prompt": False, "without prompt": False, "raw input": False, "no template": False}
_IN_PLACE_ALIASES = {**_BOOL_ALIASES, "in place": True, "naive": False, "naive zo sgd": False,
                     "materialised": False, "materialized": False, "stored z": False, "store z": False}
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_POWER = re.compile(r"10\s*\^\s*\{?\s*([-+]?\d+)\s*\}?")


def _float(text: str) -> float | None:
    if m := _POWER.search(text):
        return 10.0 ** int(m.group(1))
    m = _NUMBER.search(text)
    return float(m.group(0)) if m else None


def _int(text: str) -> int | None:
    value = _float(text)
    if value is None or value != int(value):
        return None
    return int(value)


def _knob_parser(knob: str, parse: Callable[[str], Any]) -> Callable[[str], dict[str, Any] | None]:
    def parser(text: str) -> dict[str, Any] | None:
        value = parse(text)
        return None if value is None else {knob: value}

    return parser


def _method_changes(text: str) -> dict[str, Any] | None:
    """Optimizer free text -> changes ("traditional fine-tuning" also means full parameters)."""
    found = best_alias(text, _METHOD_ALIASES)
    return dict(found) if found else None


# --------------------------------------------------------------------------------------------
# the registry
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Component:
    """One thing an ablation can change, and what each action means for it."""

    key: str
    title: str
    knob: str | None                                   # RunConfig field; None: the runner has no such knob
    aliases: tuple[str, ...]
    parse: Callable[[str], dict[str, Any] | None] | None = None
    remove_to: Any = _NOT_REMOVABLE                    # value REMOVE sets
    offered: tuple[Any, ...] = ()                      # options to run when REMOVE finds the baseline without it
    add_values: tuple[Any, ...] = ()                   # what ADD without replacement turns on
    absent_note: str = ""                              # knob None: why REMOVE changes nothing
    unused_phrase: str = ""                            # "does not use {unused_phrase}" in inverted results

    @property
    def removable(self) -> bool:
        return self.remove_to is not _NOT_REMOVABLE or self.knob is None


COMPONENTS: dict[str, Component] = {c.key: c for c in (
    Component("optimizer", "optimizer", "method",
              ("optimizer", "optimization method", "optimisation method", "zeroth-order optimization method",
               "zo method", "optimization algorithm", "training method", "fine-tuning method", "method"),
              parse=_method_changes),
    Component("eps", "perturbation scale", "eps",
              ("perturbation scale", "perturbation size", "epsilon", "eps", "smoothing parameter",
               "perturbation magnitude"), parse=_knob_parser("eps", _float)),
    Component("n_samples", "number of sampled directions", "n_samples",
              ("number of sampled directions", "sampled directions", "number of sampled z", "number of samples",
               "n samples", "number of perturbations", "query budget", "number of queries"),
              parse=_knob_parser("n_samples", _int), remove_to=1),
    Component("in_place", "in-place perturbation", "in_place",
              ("in-place perturbation", "in-place operation", "memory-efficient implementation",
               "memory-efficient in-place operation", "seed trick", "in place", "resampling z from the seed"),
              parse=_knob_parser("in_place", lambda t: best_alias(t, _IN_PLACE_ALIASES)), remove_to=False,
              add_values=(True,)),
    Component("peft", "parameter-efficient fine-tuning", "peft",
              ("parameter-efficient tuning", "parameter-efficient fine-tuning", "peft", "lora", "prefix tuning",
               "parameter-efficient tuning techniques", "adapters"),
              parse=_knob_parser("peft", lambda t: best_alias(t, _PEFT_ALIASES)), remove_to="none",
              offered=("lora", "prefix"), add_values=("lora", "prefix"),
              unused_phrase="parameter-efficient fine-tuning (it tunes all parameters)"),
    Component("objective", "training objective", "objective",
              ("objective", "non-differentiable objectives", "loss function", "training objective",
               "optimization of non-differentiable objectives"),
              parse=_knob_parser("objective", lambda t: best_alias(t, _OBJECTIVE_ALIASES)), remove_to="ce",
              offered=("accuracy", "f1"), add_values=("accuracy", "f1"),
              unused_phrase="a non-differentiable objective (it minimises cross-entropy)"),
    Component("prompt", "prompt / task alignment", "prompt",
              ("prompt", "prompting", "prompt template", "task alignment", "prompt-based fine-tuning",
               "templates", "local effective rank", "theoretical assumptions"),
              parse=_knob_parser("prompt", lambda t: best_alias(t, _PROMPT_ALIASES)), remove_to=False,
              add_values=(True,)),
    Component("layerwise_adaptive", "layer-wise adaptive step size", None,
              ("layer-wise adaptive optimization", "layer-wise adaptive learning rate",
               "layer-wise adaptive step size", "layerwise adaptation"),
              absent_note="{method} has no layer-wise adaptive step size; removing it changes nothing"),
    Component("lr", "learning rate", "lr", ("learning rate", "lr", "step size"), parse=_knob_parser("lr", _float)),
    Component("steps", "training steps", "steps",
              ("training steps", "number of steps", "iterations", "training budget", "fine-tuning", "training"),
              parse=_knob_parser("steps", _int), remove_to=0),
    Component("batch_size", "batch size", "batch_size", ("batch size", "minibatch size"),
              parse=_knob_parser("batch_size", _int)),
    Component("weight_decay", "weight decay", "weight_decay", ("weight decay", "l2 regularization"),
              parse=_knob_parser("weight_decay", _float), remove_to=0.0),
)}


@dataclass(frozen=True)
class Rule:
    """A keyword rule: a pattern in the ablated part that names a component with a given confidence."""

    pattern: re.Pattern[str]
    component: str
    score: float
    note: str = ""


def _rule(pattern: str, component: str, score: float, note: str = "") -> Rule:
    return Rule(re.compile(pattern, re.IGNORECASE), component, score, note)


_RANK_NOTE = (
    "The paper ties MeZO's convergence to a low local effective rank of the loss, which it attributes to "
    "prompt-based fine-tuning; without a prompt MeZO collapses (SST-2 89.6 -> 51.9 in the paper), so removing "
    "the assumption means fine-tuning without a prompt (prompt=false, raw input)."
)
RULES: tuple[Rule, ...] = (
    _rule(r"\blayer[- ]?wise\b", "layerwise_adaptive", 0.95),
    _rule(r"\bin[- ]place\b|memory[- ]efficient (implementation|operation|perturbation)|seed trick", "in_place", 0.95),
    _rule(r"parameter[- ]efficient|\bpeft\b|\blora\b|prefix[- ]tuning|\badapters?\b", "peft", 0.95),
    _rule(r"non[- ]?differentiable|\bobjective|loss function", "objective", 0.9),
    _rule(r"effective rank|theoretical assumption", "prompt", 0.9, _RANK_NOTE),
    _rule(r"\bprompt|task alignment|\btemplates?\b", "prompt", 0.9),
    _rule(r"perturbation (scale|size|magnitude|radius)|\bepsilon\b|\beps\b|\u03b5|smoothing parameter", "eps", 0.95),
    _rule(r"(number|count|num) of (sampled |random )?(z\b|z's|directions|perturbations|samples|queries|random vectors)"
          r"|sampled z|\bn_samples\b|query budget", "n_samples", 0.95),
    _rule(r"optimi[sz](ation|er) (method|algorithm)|\boptimi[sz]er\b|zeroth[- ]order (optimi|method)"
          r"|\bzo[- ](method|optimi)", "optimizer", 0.9),
    _rule(r"learning[- ]rate|\blr\b", "lr", 0.9),
    _rule(r"batch[- ]size", "batch_size", 0.9),
    _rule(r"weight[- ]decay", "weight_decay", 0.9),
)
_STOPWORDS = {"of", "the", "a", "an", "and", "such", "as", "in", "for", "on", "with", "to", "its"}
_ALIAS_TABLE = [(_norm(a), c.key) for c in COMPONENTS.values() for a in (c.key, c.title, *c.aliases)]


def component_names() -> list[str]:
    return list(COMPONENTS)


def canonical_component(name: str) -> str:
    """A component key from its key, knob or an alias; unknown names list the known ones."""
    norm = _norm(name).replace(" ", "_")
    for c in COMPONENTS.values():
        if norm in (c.key, c.knob) or norm.replace("_", " ") in {_norm(a) for a in c.aliases}:
            return c.key
    from zolab.platform.errors import did_you_mean

    raise ValueError(f"unknown component {name!r}{did_you_mean(norm, COMPONENTS)}; known: {', '.join(COMPONENTS)}")


@dataclass(frozen=True)
class Match:
    component: str
    score: float
    how: str
    note: str = ""


def match_component(text: str) -> list[Match]:
    """Candidate components for free text, best first (keyword rules and fuzzy alias matching)."""
    best: dict[str, Match] = {}

    def offer(m: Match) -> None:
        if m.component not in best or m.score > best[m.component].score:
            best[m.component] = m

    for rule in RULES:
        if found := rule.pattern.search(text):
            offer(Match(rule.component, rule.score, f"keyword {found.group(0)!r}", rule.note))
    norm = _norm(text)
    words = [w for w in norm.split() if w not in _STOPWORDS] or norm.split()
    for alias, key in _ALIAS_TABLE:
        # token_set_ratio is 100 whenever the alias's words are a subset of the text ("training" in
        # "training data size"): weight it by how much of the text the alias covers.
        coverage = min(1.0, len(alias.split()) / max(len(words), 1) + 0.25)
        subset = fuzz.token_set_ratio(norm, alias) * 0.9 * coverage
        score = max(subset, fuzz.ratio(norm, alias), fuzz.token_sort_ratio(norm, alias)) / 100
        offer(Match(key, round(score, 3), f"alias {alias!r}"))
    return sorted(best.values(), key=lambda m: -m.score)


# --------------------------------------------------------------------------------------------
# resolution
# --------------------------------------------------------------------------------------------
@dataclass
class Resolution:
    """What one ablation runs: ``variants`` are (label, RunConfig changes) against the baseline."""

    ablation: str
    component: str | None
    status: str
    confidence: float
    explanation: str
    variants: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    overridden: bool = False

    @property
    def runnable(self) -> bool:
        return self.status in ("resolved", "inverted")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.ablation, "component": self.component, "status": self.status,
            "confidence": round(self.confidence, 3), "explanation": self.explanation,
            "changes": [{"label": label, "changes": changes} for label, changes in self.variants],
            "overridden": self.overridden,
        }


def _fmt(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def change_label(changes: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in changes.items())


def _check(base: dict[str, Any], changes: dict[str, Any]) -> str | None:
    """Why ``base | changes`` is not a valid config (None when it is)."""
    try:
        Baseline.model_validate({**base, **changes})
    except ValidationError as exc:
        return "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
    return None


_DIRECT = re.compile(r"^\s*([A-Za-z_]+)\s*[:=]\s*(.+?)\s*$")


def _parse_item(comp: Component, text: str, base: dict[str, Any]) -> dict[str, Any] | None:
    """``knob: value`` items set that field directly; other text goes through the component's parser."""
    if (m := _DIRECT.match(text)) and m.group(1) in base:
        key, raw = m.group(1), m.group(2)
        if key == comp.knob and comp.parse is not None:
            return comp.parse(raw)
        current = base[key]
        if isinstance(current, bool):
            value = best_alias(raw, _BOOL_ALIASES)
        elif isinstance(current, int) and not isinstance(current, bool):
            value = _int(raw)
        elif isinstance(current, float):
            value = _float(raw)
        elif current is None or isinstance(current, list):  # optional / list knobs: perturb_layers: [0, 1]
            try:
                value = json.loads(raw)
            except ValueError:
                value = raw
        else:
            value = raw
        return None if value is None else {key: value}
    return comp.parse(text) if comp.parse is not None else None


def _method_name(base: dict[str, Any]) -> str:
    return METHOD_NAMES.get(base["method"], base["method"])


def _describe_base(base: dict[str, Any]) -> str:
    name = _method_name(base)
    if base["peft"] != "none":
        name += f"+{'LoRA' if base['peft'] == 'lora' else 'prefix'}"
    return name


def resolve(ablation: Ablation, baseline: Any, *, component: str | None = None) -> Resolution:
    """Resolve one ablation against the baseline (a Baseline model or a dict of its fields).

    ``component`` (or ``ablation.component``) overrides the matcher. Raises :class:`ResolveError`
    for an ablation that can never run (REMOVE of the optimizer or of eps).
    """
    base = baseline.model_dump() if hasattr(baseline, "model_dump") else dict(baseline)
    forced = component or ablation.component
    if forced:
        comp, confidence, note, how = COMPONENTS[canonical_component(forced)], 1.0, "", "set by the user"
    else:
        candidates = match_component(ablation.ablated_part)
        top = candidates[0]
        by_name = match_component(ablation.name)[0]
        if by_name.score * 0.9 > top.score:  # the title helps only when the ablated part says little
            top = Match(by_name.component, round(by_name.score * 0.9, 3), by_name.how + " (from the title)", by_name.note)
        comp, confidence, note, how = COMPONENTS[top.component], top.score, top.note, top.how
        if confidence < THRESHOLD:
            return Resolution(
                ablation.name, None, "unresolved", confidence,
                f"no component matches {ablation.ablated_part!r} well enough (best: {comp.key} at "
                f"{confidence:.2f} < {THRESHOLD}); set 'component:' to one of {', '.join(COMPONENTS)}",
            )
    res = _resolve_action(ablation, comp, base)
    res.confidence = confidence
    res.overridden = bool(forced)
    prefix = f"{note} " if note else ""
    if res.status != "unresolved" or forced:
        res.explanation = f"{prefix}{res.explanation} [{comp.key}: {how}]"
    return res


def _resolve_action(ab: Ablation, comp: Component, base: dict[str, Any]) -> Resolution:
    knob = comp.knob
    if ab.action is Action.REMOVE and not ab.replacement:
        return _remove(ab, comp, base)
    values = ab.replacement
    if not values:  # ADD without a replacement
        if not comp.add_values or knob is None:
            return Resolution(ab.name, comp.key, "unresolved", 0.0,
                              f"ADD of {comp.title} needs a replacement (the value to add)")
        values = [_fmt(v) for v in comp.add_values]
    if knob is None:
        return Resolution(ab.name, comp.key, "unresolved", 0.0,
                          f"the runner has no knob for the {comp.title}; nothing to set it to")
    variants, bad = [], []
    for text in values:
        changes = _parse_item(comp, text, base)
        problem = None if changes is None else _check(base, changes)
        if changes is None:
            bad.append(f"{text!r} is not a {comp.title} value")
        elif problem:
            bad.append(f"{text!r}: {problem}")
        else:
            changed = {k: v for k, v in changes.items() if base[k] != v} or changes
            variants.append((change_label(changed), changed))
    if bad:
        return Resolution(ab.name, comp.key, "unresolved", 0.0, f"cannot read the replacement: {'; '.join(bad)}")
    running = [label for label, ch in variants if any(base[k] != v for k, v in ch.items())]
    same = [label for label, ch in variants if all(base[k] == v for k, v in ch.items())]
    if not running:
        return Resolution(ab.name, comp.key, "no_op", 0.0,
                          f"the baseline already has {', '.join(same)}; nothing changes", variants)
    text = f"{comp.title.capitalize()} ({knob}): baseline {knob}={_fmt(base[knob])}; runs {', '.join(running)}"
    if same:
        text += f"; {', '.join(same)} equals the baseline and is merged with it"
    if any(ch.get("method") in FO_METHODS for _, ch in variants):
        text += "; first-order methods backpropagate (more memory) with the baseline's other settings"
    return Resolution(ab.name, comp.key, "resolved", 0.0, text + ".", variants)


def _remove(ab: Ablation, comp: Component, base: dict[str, Any]) -> Resolution:
    method = _describe_base(base)
    if comp.knob is None:
        return Resolution(ab.name, comp.key, "no_op", 0.0, comp.absent_note.format(method=_method_name(base)) + ".")
    if comp.remove_to is _NOT_REMOVABLE:
        raise ResolveError(
            f"REMOVE of the {comp.title} ({comp.knob}) is not possible: every run needs one; use REPLACE with "
            f"the alternative(s) to compare, e.g. action: REPLACE, replacement: "
            + ("[fo-sgd, fo-adam]" if comp.knob == "method" else "[1.0e-4, 1.0e-2]")
        )
    knob, target, current = comp.knob, comp.remove_to, base[comp.knob]
    if current != target:
        changes = {knob: target}
        problem = _check(base, changes)
        if problem:
            return Resolution(ab.name, comp.key, "unresolved", 0.0, f"removing the {comp.title} is invalid: {problem}")
        return Resolution(ab.name, comp.key, "resolved", 0.0,
                          f"Removing the {comp.title} from {method}: {knob}={_fmt(current)} -> {_fmt(target)}.",
                          [(change_label(changes), changes)])
    options = [(change_label({knob: v}), {knob: v}) for v in comp.offered if _check(base, {knob: v}) is None]
    if options:
        shown = " and ".join(f"{_method_name(base)}+{'LoRA' if v == 'lora' else v}" if knob == "peft"
                             else f"the {v} objective" for v in (ch[knob] for _, ch in options))
        return Resolution(
            ab.name, comp.key, "inverted", 0.0,
            f"The baseline ({method}, {knob}={_fmt(current)}) does not use {comp.unused_phrase or comp.title}, "
            f"so removing it changes "
            f"nothing; the contrast is run the other way round: the baseline vs {shown}.", options)
    return Resolution(ab.name, comp.key, "no_op", 0.0,
                      f"The baseline already has {knob}={_fmt(current)}; removing the {comp.title} changes nothing.")


def resolve_plan(plan: Plan, overrides: Mapping[str, str] | None = None) -> list[Resolution]:
    """Resolve every ablation; ablations that can never run raise a located PlanError."""
    from zolab.platform.errors import Issue, PlanError

    overrides = dict(overrides or {})
    unknown = [name for name in overrides if name not in {a.name for a in plan.ablations}]
    issues: list[Issue] = [Issue(f"override for unknown ablation {n!r}", plan._source) for n in unknown]
    out: list[Resolution] = []
    for i, ab in enumerate(plan.ablations):
        try:
            out.append(resolve(ab, plan.baseline, component=overrides.get(ab.name)))
        except (ResolveError, ValueError) as exc:
            where = plan.locate(("ablations", i, getattr(exc, "field", "component")))
            issues.append(Issue(f"ablation {ab.name!r}: {exc}", where.file, where.line, where.column, where.field))
    if issues:
        raise PlanError(issues)
    return out
