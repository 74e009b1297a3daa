"""Replacement values written as a mapping, as planners do in JSON: made into the list the plan takes.

The AblationBench planner prompt asks for ``"replacement": [...]``, but planners also answer with an
object. Each entry becomes ``"key: value"`` text, one per value of a list, which the resolver reads
as "set this knob (or the component this name stands for) to that value":

* ``{"eps": [1e-4, 1e-2]}``            -> ``["eps: 0.0001", "eps: 0.01"]``
* ``{"optimizer": "ZO-Adam"}``         -> ``["optimizer: ZO-Adam"]``
* ``{"values": [1, 4]}``               -> ``["1", "4"]``  (a key that only says "the values")
* ``{"from": "SGD", "to": "Adam"}``    -> ``["Adam"]``    (the old value is not a variant)

Anything else (nested mappings, lists of lists) is left for the plan model to refuse with its place.
"""

from __future__ import annotations

from typing import Any

#: keys that only name the list ("values", "options"): their items carry no knob name
_PLAIN_KEYS = {"values", "value", "options", "choices", "candidates", "replacement", "replacements", "settings",
               "variants", "alternatives", "list", "items"}
_NEW_KEYS = {"to", "new", "with", "replace_with", "replaced_by", "after"}
_OLD_KEYS = {"from", "old", "original", "before", "current", "baseline"}


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def normalise_replacement(value: Any) -> Any:
    """A mapping of scalars or flat lists -> a list of text items; other values unchanged."""
    if not isinstance(value, dict) or not value:
        return value
    if not all(isinstance(k, str) and (_scalar(v) or (isinstance(v, list) and all(_scalar(x) for x in v)))
               for k, v in value.items()):
        return value
    keys = {k.strip().lower() for k in value}
    out: list[Any] = []
    for key, items in value.items():
        k = key.strip().lower()
        if k in _OLD_KEYS and keys & _NEW_KEYS:
            continue
        plain = k in _PLAIN_KEYS or k in _NEW_KEYS
        for item in items if isinstance(items, list) else [items]:
            if item is None:
                continue
            if isinstance(item, bool):
                item = "true" if item else "false"
            out.append(item if plain else f"{key}: {item}")
    return out


def normalise_ablations(ablations: Any) -> Any:
    """Every ablation mapping with its ``replacement`` normalised (in place; the list is returned)."""
    if isinstance(ablations, list):
        for ab in ablations:
            if isinstance(ab, dict) and "replacement" in ab:
                ab["replacement"] = normalise_replacement(ab["replacement"])
    return ablations
