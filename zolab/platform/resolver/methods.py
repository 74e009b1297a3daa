"""The optimizer's value domain: method names, with the zeroth-order / first-order family from context.

Most method names are unambiguous ("ZO-Adam", "forward gradient", "linear probing", "in-context
learning"). Some words name an update rule that exists in both families: "Adam", "SGD",
"momentum", "sign". Their family comes from, in order:

1. the value itself: "first-order SGD", "Adam with backpropagation" (FO); "ZO-Adam",
   "gradient-free momentum" (ZO);
2. the ablated part: backpropagation / first-order words (FO); words that keep the zeroth-order
   estimate and change what is done with it ("update rule", "update step", "forward-only",
   "... of the zeroth-order optimizer") keep the baseline's family;
3. otherwise the plain reading: "SGD" and "Adam" are the usual first-order optimizers, as when
   "the zeroth-order optimization method" is replaced by "SGD" (seed plan 000).

A value that names no training at all reads as the no-training baselines: ``icl`` (in-context
learning), ``steps: 0`` (zero-shot). Numbers in a method value ("ICL with 32 demonstrations",
"momentum 0.9", "Adam (lr 1e-4)") are other knobs' settings, read by
:mod:`zolab.platform.resolver.compound`.
"""

from __future__ import annotations

import re
from typing import Any

from zolab.platform.resolver.domains import Context, Misfit, Reading, Value, Vocabulary, contains
from zolab.runners.config import FO_METHODS, ZO_METHODS

#: unambiguous names -> changes
_NAMED: dict[str, dict[str, Any]] = {
    **{a: {"method": "mezo"} for a in ("mezo", "memory efficient zo sgd", "memory efficient zeroth order sgd")},
    **{a: {"method": "zo-sgd"} for a in ("zo sgd", "zeroth order sgd", "spsa sgd", "zo gd")},
    **{a: {"method": "zo-momentum"} for a in ("zo sgd mmt", "zo momentum", "zo sgd momentum", "zo mmt",
                                              "zeroth order momentum", "zo sgd with momentum")},
    **{a: {"method": "zo-adam"} for a in ("zo adam", "zeroth order adam", "zo adamw")},
    **{a: {"method": "zo-sign"} for a in ("zo sign", "zo sgd sign", "zo signsgd", "zo sign sgd",
                                          "zeroth order signsgd", "zeroth order sign sgd")},
    **{a: {"method": "zo-cons"} for a in ("zo cons", "zo sgd cons", "conservative zo", "conservative update",
                                          "conservative")},
    **{a: {"method": "forward-grad"} for a in ("forward grad", "forward gradient", "forward mode gradient",
                                               "forward mode ad", "forward mode differentiation", "jvp",
                                               "jacobian vector product")},
    **{a: {"method": "one-point-rf"} for a in ("one point residual feedback", "residual feedback",
                                               "one point zo", "one point residual feedback oracle", "one point rf")},
    **{a: {"method": "fo-sgd"} for a in ("fo sgd", "first order sgd", "sgd with backpropagation", "sgd with backprop")},
    **{a: {"method": "fo-adam"} for a in ("fo adam", "first order adam", "adam with backpropagation",
                                          "adam with backprop")},
    **{a: {"method": "fo-adam", "peft": "none"} for a in (
        "traditional fine tuning", "standard fine tuning", "full fine tuning", "fine tuning with backpropagation",
        "conventional fine tuning", "vanilla fine tuning", "regular fine tuning", "ft", "full parameter fine tuning")},
    **{a: {"method": "linear-probe"} for a in ("linear probe", "linear probing", "lp", "head only",
                                               "train only the head", "classification head only", "probing")},
    **{a: {"method": "icl"} for a in ("in context learning", "icl", "few shot prompting", "prompting only",
                                      "demonstration", "in context demonstration")},
    **{a: {"steps": 0} for a in ("zero shot", "no fine tuning", "no training", "without training",
                                 "without fine tuning", "no update")},
}
#: family words alone (no update rule named): the usual first-order fine-tuning, Adam
_MARKERS: dict[str, dict[str, Any]] = {
    a: {"method": "fo-adam"} for a in ("backpropagation", "backprop", "first order",
                                       "gradient descent with backpropagation", "exact gradient", "true gradient", "autograd", "fo",
                                       "gradient based")
}
#: update rules that exist in both families -> (ZO method, FO method); None: no such method in zolab
_RULES: dict[str, tuple[str | None, str | None]] = {
    **{a: ("zo-adam", "fo-adam") for a in ("adam", "adamw", "adam w", "adaptive moment", "adaptive moment estimation",
                                           "adam style")},
    **{a: ("zo-sgd", "fo-sgd") for a in ("sgd", "stochastic gradient descent", "plain sgd", "vanilla sgd",
                                         "gradient descent")},
    **{a: ("zo-momentum", "fo-sgd") for a in ("momentum", "sgd with momentum", "heavy ball", "momentum sgd",
                                              "sgd momentum")},
    **{a: ("zo-sign", None) for a in ("sign", "signsgd", "sign sgd", "sign of the gradient", "sign based")},
}
_FO_WORDS = re.compile(r"backprop|first[- ]order|\bfo\b|exact gradient|true gradient|autograd|"
                       r"gradient[- ]based|(?:standard|full|vanilla|regular) fine[- ]tuning|traditional|conventional",
                       re.IGNORECASE)
_ZO_WORDS = re.compile(r"zeroth[- ]order|\bzo\b|\bzo-|gradient[- ]free|derivative[- ]free|forward[- ]only|"
                       r"forward passes only|without backprop|no backprop|spsa|two forward", re.IGNORECASE)
#: in the ablated part: the ZO estimate stays, what is done with it changes
_KEEP_WORDS = re.compile(r"update|step rule|moment|consum|on top of|applied to|fed (?:to|into)|"
                         r"forward[- ]only|gradient[- ]free|derivative[- ]free|of the (?:zo|zeroth)", re.IGNORECASE)


def family_of(method: str) -> str:
    return "zo" if method in ZO_METHODS else "fo" if method in FO_METHODS else "none"


class MethodDomain(Vocabulary):
    """Method names; the family of ambiguous update rules comes from the context (module doc).

    Three vocabularies, tried in order: specific names ("ZO-Adam", "first-order SGD", "linear
    probing"), update rules of both families ("Adam", "SGD with momentum"), family words alone
    ("backpropagation").
    """

    describe = ("an optimizer (mezo, zo-sgd, zo-momentum, zo-adam, zo-sign, zo-cons, forward-grad, "
                "one-point-rf, fo-sgd, fo-adam, linear-probe, icl) or zero-shot")

    def __init__(self) -> None:
        super().__init__("method", _NAMED, fuzzy=True, gap=2)
        self._rules = Vocabulary("method", {k: k for k in _RULES}, fuzzy=False)
        self._markers = Vocabulary("method", _MARKERS, fuzzy=False)

    def match(self, text: str) -> tuple[Any, float, int] | None:
        if found := super().match(text) or self._rules.match(text):
            return found
        marker = self._markers.match(text)  # a family word alone says less than a name
        return (marker[0], 0.7, marker[2]) if marker else None

    def family(self, text: str, ctx: Context) -> tuple[str, str]:
        """('zo' | 'fo', why) for an ambiguous update rule in ``text``."""
        if _FO_WORDS.search(text):
            return "fo", "the value says first-order / backpropagation"
        if _ZO_WORDS.search(text):
            return "zo", "the value says zeroth-order"
        if _FO_WORDS.search(ctx.part):
            return "fo", "the ablation says first-order / backpropagation"
        base = family_of(str(ctx.base.get("method", "mezo")))
        if _KEEP_WORDS.search(ctx.part) and base in ("zo", "fo"):
            return base, "the ablation changes the update applied to the baseline's gradient estimate"
        return "fo", "plain SGD/Adam are the first-order (backpropagation) optimizers"

    def locate(self, text: str) -> tuple[int, int] | None:
        """Where the method name read from ``text`` is written (any of the three vocabularies)."""
        return super().locate(text) or self._rules.locate(text) or self._markers.locate(text)

    def read(self, text: str, ctx: Context) -> Reading:
        found = self.match(text)
        if found is None:
            return Misfit(f"{text!r} is not {self.describe}")
        value, fit, span = found
        if isinstance(value, dict):
            changes = dict(value)
            if changes.get("method") == "zo-sgd" and ctx.base.get("method") in ("mezo", "zo-sgd"):
                changes["method"] = ctx.base["method"]  # MeZO is ZO-SGD (in place): the same optimizer
            return Value(changes, fit, span=span)
        zo, fo = _RULES[value]
        family, why = self.family(text, ctx)
        method = zo if family == "zo" else fo
        if method is None:
            return Misfit(f"{text!r}: zolab has no first-order {value} optimizer")
        said = why.startswith("the value says")  # "Adam with backprop" names its method fully
        # a family word and an update rule together name one method fully: two words of evidence
        return Value({"method": method}, fit if said else fit * 0.9, f"{text!r} read as {method}: {why}",
                     span=max(span, 2) if said else span)


def zo_contradiction(changes: dict[str, Any], value: str, ctx: Context) -> str | None:
    """Why running ``changes`` would contradict the ablation's words (a first-order method for an
    ablation that keeps the zeroth-order estimate), or None."""
    method = changes.get("method")
    if method not in FO_METHODS or method == "linear-probe" or _FO_WORDS.search(value):
        return None
    words = ctx.part
    if _ZO_WORDS.search(value) or (_ZO_WORDS.search(words) and _KEEP_WORDS.search(words)):
        return (f"{value!r} would run {method} (backpropagation), but the ablation keeps the zeroth-order "
                "estimate; write 'first-order' or 'backpropagation' in the replacement if that is meant")
    return None


def names_method(text: str) -> bool:
    """Whether ``text`` contains an unambiguous method name (a strong value for the optimizer)."""
    from zolab.platform.resolver.text import tokens

    words = tokens(text)
    return any(contains(words, tuple(tokens(a))) for a in _NAMED)
