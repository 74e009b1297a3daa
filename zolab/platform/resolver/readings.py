"""One component's reading of one ablation: the variants it would run, or why it cannot.

:func:`read` applies the action's meaning for the component (REMOVE sets the knob to its "off"
value, inverts, or is a no-op; REPLACE/ADD read each replacement value in the component's domain)
and checks every variant against the Baseline model. It does not decide whether this component is
the right one: :mod:`zolab.platform.resolver.resolve` weighs the readings of all components.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from zolab.platform.plan import Ablation, Action, Baseline
from zolab.platform.resolver.compound import read_value
from zolab.platform.resolver.domains import Context, Misfit, Value, Vocabulary
from zolab.platform.resolver.methods import family_of, zo_contradiction
from zolab.platform.resolver.registry import ABSENT, COMPONENTS, IMPOSSIBLE, Component
from zolab.platform.resolver.text import normalise, split_list
from zolab.runners.config import FO_METHODS, ZO_METHODS

METHOD_NAMES = {
    "mezo": "MeZO", "zo-sgd": "ZO-SGD", "zo-momentum": "ZO-SGD with momentum", "zo-adam": "ZO-Adam",
    "zo-sign": "ZO-SGD-Sign", "zo-cons": "ZO-SGD-Cons", "forward-grad": "forward gradient",
    "one-point-rf": "one-point residual-feedback ZO", "fo-sgd": "SGD (backpropagation)",
    "fo-adam": "Adam (backpropagation)", "linear-probe": "linear probing", "icl": "in-context learning",
}
Variant = tuple[str, dict[str, Any]]


@dataclass
class Reading:
    """What ``component`` makes of the ablation. ``fit`` is the values' evidence (None: no values
    were read, as for REMOVE); ``unreadable`` marks a reading whose values are not of its domain."""

    component: Component
    status: str
    why: str
    variants: list[Variant] = field(default_factory=list)
    fit: float | None = None
    unreadable: bool = False
    notes: list[str] = field(default_factory=list)
    spans: list[tuple[str, int]] = field(default_factory=list)  # (value text, vocabulary alias length)

    @property
    def runnable(self) -> bool:
        return self.status in ("resolved", "inverted")

    def same_changes(self, other: Reading) -> bool:
        return [c for _, c in self.variants] == [c for _, c in other.variants]


def fmt(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(fmt(v) for v in value) + "]"
    return str(value)


def change_label(changes: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={fmt(v)}" for k, v in changes.items())


def method_name(base: Mapping[str, Any]) -> str:
    return METHOD_NAMES.get(base["method"], base["method"])


def describe_base(base: Mapping[str, Any]) -> str:
    name = method_name(base)
    if base["peft"] != "none":
        name += f"+{'LoRA' if base['peft'] == 'lora' else 'prefix'}"
    return name


def check(base: Mapping[str, Any], changes: Mapping[str, Any]) -> str | None:
    """Why ``base | changes`` is not a valid config (None when it is)."""
    try:
        Baseline.model_validate({**base, **changes})
    except ValidationError as exc:
        return "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
    return None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return a == b


def differing(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in changes.items() if not _same(base.get(k), v)}


# ---------------------------------------------------------------------------------------------
# replacement items
# ---------------------------------------------------------------------------------------------
_KEYED = re.compile(r"^\s*([A-Za-z_][\w .'-]{0,40}?)\s*[:=]\s*(\S.*?)\s*$")


def keyed_component(text: str) -> tuple[str, str] | None:
    """``"eps: 0.01"`` / ``"optimizer = ZO-Adam"`` -> (component key, value text); None otherwise."""
    m = _KEYED.match(text)
    if not m:
        return None
    from zolab.platform.resolver.resolve import find_component

    key = find_component(m.group(1))
    return (key, m.group(2)) if key else None


def _items(comp: Component, text: str, ctx: Context) -> list[tuple[str, Value | Misfit]]:
    """Read one replacement string as one or several values of ``comp``'s domain."""
    domain = comp.domain
    assert domain is not None
    keyed = keyed_component(text)
    if keyed is not None:
        key, rest = keyed
        if key != comp.key:
            return [(text, Misfit(f"{text!r} sets {COMPONENTS[key].title}, not {comp.title}"))]
        # a number domain keeps the name: "sparsity: 0.9" is a sparsity, whatever the ablated part says
        text = rest if isinstance(domain, Vocabulary) else f"{text[:len(text) - len(rest)]}{rest}".strip()
    whole = read_value(comp, text, ctx)
    parts = split_list(text) if domain.split else [text]
    if len(parts) > 1:
        read = [(p, read_value(comp, p, ctx)) for p in parts]
        if all(isinstance(r, Value) for _, r in read):
            fits = [r.fit for _, r in read]  # type: ignore[union-attr]
            distinct = len({change_label(r.changes) for _, r in read}) == len(read)  # type: ignore[union-attr]
            if isinstance(whole, Misfit) or (distinct and min(fits) >= 0.9):
                return read
    if keyed is not None and isinstance(whole, Value):  # the value names its knob: full evidence
        whole = Value(whole.changes, 1.0, whole.note, max(whole.span, 2), whole.attributes)
    return [(text, whole)]


#: plain ZO-SGD: a setting that only a ZO variant reads refines it to that variant ("MeZO with momentum 0.9")
_PLAIN_ZO = ("mezo", "zo-sgd")


def _with_implied(comps: list[Component], changes: dict[str, Any], base: Mapping[str, Any]) \
        -> tuple[dict[str, Any], list[str]] | str:
    """``changes`` with what each of ``comps`` needs to take effect, and the notes that say so; or why
    they cannot run together ("momentum 0.5" with Adam). A setting read only by a ZO variant refines
    plain ZO-SGD to it; any other clash with a written change is a reason, never overridden."""
    out, notes = dict(changes), []
    for comp in comps:
        extra = _implied(comp, out, base)
        if isinstance(extra, str):
            return extra
        for key, value in extra.items():
            if key in out and out[key] != value:
                if key == "method" and out[key] in _PLAIN_ZO and value in ZO_METHODS:
                    continue  # set below: plain ZO-SGD refined to the variant
                return (f"{comp.title} is read only by {', '.join(comp.uses) or comp.peft}, but the value sets "
                        f"{key}={fmt(out[key])}")
        if extra:
            notes.append(f"{comp.title} takes effect only with {change_label(extra)}, so the variants set it too")
            out = {**extra, **{k: v for k, v in out.items() if k not in extra}}
    return out, notes


def _implied(comp: Component, changes: dict[str, Any], base: Mapping[str, Any]) -> dict[str, Any] | str:
    """The changes a knob needs to take effect (momentum -> zo-momentum, lora_r -> peft lora), or why not."""
    extra: dict[str, Any] = {}
    method = changes.get("method", base["method"])
    if comp.uses and method not in comp.uses:
        family = family_of(method)
        implied = comp.imply.get(family)
        if implied is None:
            return f"{comp.title} is read only by {', '.join(comp.uses)}; {method} has no such variant"
        extra["method"] = implied
    if comp.peft and changes.get("peft", base["peft"]) != comp.peft:
        extra["peft"] = comp.peft
    if comp.key == "sparsity_rule" and not changes.get("sparsity", base["sparsity"]):
        return ("the baseline perturbs every weight (sparsity 0), so a mask rule changes nothing; "
                "give a sparsity too (e.g. 'sparsity: 0.9')")
    return extra


def _variants(comp: Component, ab: Ablation, values: list[str], base: Mapping[str, Any],
              ctx: Context) -> Reading:
    read: list[tuple[str, Value | Misfit]] = []
    for text in values:
        read += _items(comp, text, ctx)
    if comp.domain is not None and comp.domain.joins and len(values) > 1 \
            and all(isinstance(r, Misfit) for _, r in read):
        joined = "[" + ", ".join(values) + "]"  # [0, 1, 2] written out as items: one list value
        if isinstance(again := comp.domain.read(joined, ctx), Value):
            read = [(joined, again)]
    bad = [f"{r.reason}" for _, r in read if isinstance(r, Misfit)]
    if bad:
        return Reading(comp, "unresolved", f"cannot read the replacement as {comp.title}: " + "; ".join(bad),
                       fit=0.0, unreadable=True)
    variants: list[Variant] = []
    notes: list[str] = []
    problems: list[str] = []
    for text, value in read:
        assert isinstance(value, Value)
        changes = dict(value.changes)
        if "method" in changes and (veto := zo_contradiction(changes, text, ctx)):
            problems.append(veto)
            continue
        implied = _with_implied([comp, *(COMPONENTS[k] for k in value.attributes)], changes, base)
        if isinstance(implied, str):
            problems.append(f"{text!r}: {implied}")
            continue
        changes, more = implied
        notes += more
        if value.note:
            notes.append(value.note)
        problem = check(base, changes)
        if problem:
            problems.append(f"{text!r}: {problem}")
            continue
        changed = differing(base, changes) or changes
        variants.append((change_label(changed), changed))
    fit = sum(v.fit for _, v in read if isinstance(v, Value)) / len(read)
    spans = [(text, v.span) for text, v in read if isinstance(v, Value)]
    if problems:
        return Reading(comp, "unresolved", f"{comp.title} cannot run as written: " + "; ".join(dict.fromkeys(problems)),
                       fit=fit, spans=spans)
    notes = list(dict.fromkeys(notes))
    running = [label for label, ch in variants if differing(base, ch)]
    same = [label for label, ch in variants if not differing(base, ch)]
    if not running:
        return Reading(comp, "no_op", f"the baseline already has {', '.join(same)}; nothing changes", variants,
                       fit=fit, notes=notes, spans=spans)
    knob = comp.knob or ""
    text = f"{comp.title[0].upper() + comp.title[1:]} ({knob}): baseline {knob}={fmt(base.get(knob))}; " \
           f"runs {', '.join(running)}"
    if same:
        text += f"; {', '.join(same)} equals the baseline and is merged with it"
    if any(ch.get("method") in FO_METHODS for _, ch in variants):
        text += "; first-order methods backpropagate (more memory) with the baseline's other settings"
    return Reading(comp, "resolved", text + ".", variants, fit=fit, notes=notes, spans=spans)


# ---------------------------------------------------------------------------------------------
# actions
# ---------------------------------------------------------------------------------------------
def named_value(comp: Component, text: str, ctx: Context) -> Any | None:
    """The value of a vocabulary knob that the ablated part itself names ("REMOVE LoRA" -> lora)."""
    if not isinstance(comp.domain, Vocabulary) or comp.knob == "method":
        return None
    found = comp.domain.match(text)
    return found[0] if found and found[1] >= 1.0 else None


def _not_zo(comp: Component, base: Mapping[str, Any]) -> str | None:
    if comp.zo_only and base["method"] not in ZO_METHODS:
        return f"{method_name(base)} does not perturb the weights, so it has no {comp.title}"
    return None


def _remove(comp: Component, ab: Ablation, base: Mapping[str, Any], ctx: Context) -> Reading:
    method = describe_base(base)
    if comp.knob is None:
        if comp.absent_remove:
            return Reading(comp, "no_op", comp.absent_remove.format(method=method_name(base)) + ".")
        return Reading(comp, "unresolved", f"REMOVE of the {comp.title} cannot be run: {comp.absent}.")
    if comp.remove == IMPOSSIBLE:
        example = "[fo-sgd, fo-adam]" if comp.knob == "method" else "the values to compare"
        return Reading(comp, "unresolved",
                       f"REMOVE of the {comp.title} ({comp.knob}) is not possible: every run needs one; use REPLACE "
                       f"with the alternative(s) to compare, e.g. action: REPLACE, replacement: {example}.")
    if reason := _not_zo(comp, base):
        return Reading(comp, "no_op", f"{reason}; removing it changes nothing.")
    if comp.uses and base["method"] not in comp.uses:
        return Reading(comp, "no_op", f"{method_name(base)} has no {comp.title}; removing it changes nothing.")
    knob, target, current = comp.knob, comp.remove_to, base[comp.knob]
    named = named_value(comp, ab.ablated_part, ctx)
    if named is not None and named != target:
        if _same(current, named):
            return _set(comp, base, {knob: target}, f"Removing the {comp.title} from {method}: "
                                                     f"{knob}={fmt(current)} -> {fmt(target)}.")
        if named in comp.offered:
            return _invert(comp, base, (named,))
        return Reading(comp, "no_op", f"The baseline ({method}) does not use {knob}={fmt(named)}; "
                                      "removing it changes nothing.")
    if not _same(current, target):
        return _set(comp, base, {knob: target}, f"Removing the {comp.title} from {method}: "
                                                 f"{knob}={fmt(current)} -> {fmt(target)}.")
    if comp.offered:
        return _invert(comp, base, comp.offered)
    return Reading(comp, "no_op", f"The baseline ({method}) already has {knob}={fmt(current)}: it has no "
                                  f"{comp.title} to remove, so removing it changes nothing.")


def _set(comp: Component, base: Mapping[str, Any], changes: dict[str, Any], text: str) -> Reading:
    if problem := check(base, changes):
        return Reading(comp, "unresolved", f"removing the {comp.title} is invalid: {problem}")
    return Reading(comp, "resolved", text, [(change_label(changes), changes)])


def _invert(comp: Component, base: Mapping[str, Any], offered: tuple[Any, ...]) -> Reading:
    knob = comp.knob or ""
    options = [(change_label({knob: v}), {knob: v}) for v in offered if check(base, {knob: v}) is None]
    method, current = describe_base(base), base[knob]
    if not options:
        return Reading(comp, "no_op", f"The baseline ({method}) already has {knob}={fmt(current)}; removing the "
                                      f"{comp.title} changes nothing.")
    shown = " and ".join(f"{method_name(base)}+{'LoRA' if v == 'lora' else v}" if knob == "peft"
                         else f"the {v} objective" if knob == "objective" else f"{knob}={fmt(v)}"
                         for v in (ch[knob] for _, ch in options))
    return Reading(comp, "inverted",
                   f"The baseline ({method}, {knob}={fmt(current)}) does not use {comp.unused_phrase or comp.title}, "
                   f"so removing it changes nothing; the contrast is run the other way round: the baseline vs "
                   f"{shown}.", options)


def read(comp: Component, ab: Ablation, base: Mapping[str, Any], ctx: Context) -> Reading:
    """``comp``'s reading of ``ab`` against the baseline fields ``base``."""
    if ab.action is Action.REMOVE and not ab.replacement:
        return _remove(comp, ab, base, ctx)
    if comp.knob is None:
        return Reading(comp, "unresolved", f"{comp.absent}.")
    if (reason := _not_zo(comp, base)) is not None:
        return Reading(comp, "unresolved", f"{reason}.")
    values = list(ab.replacement)
    if not values:  # ADD without a replacement: what the part names, else the component's usual options
        named = named_value(comp, ab.ablated_part, ctx)
        options = (named,) if named is not None else comp.add_values
        if not options:
            return Reading(comp, "unresolved", f"ADD of the {comp.title} needs a replacement (the value to add).")
        values = [fmt(v) for v in options]
    reading = _variants(comp, ab, values, base, ctx)
    if not ab.replacement:
        reading.fit = None  # the values came from the registry, not from the plan: no evidence
    return reading


def context(ab: Ablation, base: Mapping[str, Any]) -> Context:
    return Context(part=f"{ab.ablated_part} | {ab.name}", base=base)


def words_of(ab: Ablation) -> str:
    return normalise(f"{ab.ablated_part} {ab.name}")


__all__ = ["ABSENT", "METHOD_NAMES", "Reading", "change_label", "check", "context", "describe_base",
           "differing", "fmt", "method_name", "read"]
