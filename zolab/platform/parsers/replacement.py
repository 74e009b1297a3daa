"""Replacement values written as mappings, as planners do in JSON: made into the list the plan takes.

The AblationBench planner prompt asks for ``"replacement": [...]``, but planners also answer with an
object, or with a list of objects. Each becomes text the resolver reads (a "key: value" names the
knob; words in parentheses are further settings of the same variant):

* ``{"eps": [1e-4, 1e-2]}``                   -> ``["eps: 0.0001", "eps: 0.01"]``  (one variant per value)
* ``{"optimizer": "ZO-Adam"}``                -> ``["optimizer: ZO-Adam"]``
* ``{"values": [1, 4]}``                      -> ``["1", "4"]``  (a key that only says "the values")
* ``{"from": "SGD", "to": "Adam"}``           -> ``["Adam"]``    (the old value is not a variant)
* ``{"name": "eps", "values": [1e-2, 1e-4]}`` -> ``["eps (0.01)", "eps (0.0001)"]``  (a name and its values)
* ``{"lr_schedule": "cosine", "warmup_steps": 200}`` -> ``["lr_schedule: cosine (warmup_steps: 200)"]``:
  several settings (keys that name knobs), each one value, are one variant;
* ``{"small": 4, "large": 64}`` -> ``["4", "64"]``: keys that name no knob label alternatives;
* a list of objects: each object is one variant, read as above (``[{"name": "LoRA", "value": "r=4"}]`` ->
  ``["LoRA (r=4)"]``, ``[{"method": "ZO-Adam", "lr": 1e-5}]`` -> ``["method: ZO-Adam (lr: 1e-05)"]``).

Anything else (nested mappings, lists of lists) is left for the plan model to refuse with its place.
"""

from __future__ import annotations

from typing import Any

#: keys that only name the list ("values", "options"): their items carry no knob name
_PLAIN_KEYS = {"values", "value", "options", "choices", "candidates", "replacement", "replacements", "settings",
               "variants", "alternatives", "list", "items"}
_NEW_KEYS = {"to", "new", "with", "replace_with", "replaced_by", "after"}
_OLD_KEYS = {"from", "old", "original", "before", "current", "baseline"}
#: keys whose value is the name of what is set (its values come under a plain key)
_NAME_KEYS = {"name", "component", "knob", "parameter", "param", "setting", "hyperparameter", "field", "key",
              "method", "type", "kind"}
_DESCRIPTION_KEYS = {"description", "rationale", "note", "notes", "comment", "why", "reason"}


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).strip()


def _flat(mapping: dict[Any, Any]) -> bool:
    return bool(mapping) and all(isinstance(k, str) and (_scalar(v) or (isinstance(v, list) and all(_scalar(x) for x in v)))
                                 for k, v in mapping.items())


def _entries(mapping: dict[str, Any]) -> list[tuple[str, Any]]:
    """The mapping's (key, value) pairs that carry a setting: descriptions, old values and nulls dropped."""
    keys = {k.strip().lower() for k in mapping}
    out = []
    for key, value in mapping.items():
        k = key.strip().lower()
        if k in _DESCRIPTION_KEYS or (k in _OLD_KEYS and keys & _NEW_KEYS) or value is None:
            continue
        out.append((key, value))
    return out


def _variant(main: str, settings: list[tuple[str, Any]]) -> str:
    """One variant's text: the main value, then the further settings in parentheses."""
    extra = ", ".join(f"{k}: {_text(v)}" for k, v in settings)
    return f"{main} ({extra})" if extra and main else main or extra


def _name_and_values(entries: list[tuple[str, Any]]) -> tuple[str, list[Any], list[tuple[str, Any]]] | None:
    """``{"name": X, "value(s)": V, ...}`` -> (X, the values, the other settings); None for other shapes."""
    names = [(k, v) for k, v in entries if k.strip().lower() in _NAME_KEYS and _scalar(v)]
    plain = [(k, v) for k, v in entries if k.strip().lower() in _PLAIN_KEYS | _NEW_KEYS]
    if len(names) != 1:
        return None
    name = _text(names[0][1])
    values: list[Any] = []
    for _, v in plain:
        values += v if isinstance(v, list) else [v]
    rest = [(k, v) for k, v in entries if (k, v) not in names and (k, v) not in plain]
    if any(isinstance(v, list) for _, v in rest):
        return None
    return name, values, rest


def _names_a_setting(key: str) -> bool:
    """Whether a mapping key names a zolab component or knob ("lr", "warmup_steps", "optimizer"), as
    opposed to a label of one alternative ("small", "option_a")."""
    from zolab.platform.resolver import find_component

    return find_component(key) is not None


def object_variants(mapping: dict[str, Any]) -> list[str] | None:
    """The variants a flat mapping stands for (module doc), or None when it is not flat."""
    if not _flat(mapping):
        return None
    entries = _entries(mapping)
    shaped = _name_and_values(entries)
    if shaped is not None:
        name, values, rest = shaped
        if not values:                                   # {"name": "ZO-Adam", "lr": 1e-5}
            return [_variant(name, rest)]
        return [_variant(f"{name} ({_text(v)})", rest) for v in values]
    plain = [v for k, v in entries if k.strip().lower() in _PLAIN_KEYS | _NEW_KEYS]
    keyed = [(k, v) for k, v in entries if k.strip().lower() not in _PLAIN_KEYS | _NEW_KEYS]
    lists = [(k, v) for k, v in keyed if isinstance(v, list)]
    scalars = [(k, v) for k, v in keyed if not isinstance(v, list)]
    if len(lists) == 1 and not plain:                    # {"lr": [1e-5, 1e-4], "optimizer": "adam"}
        key, values = lists[0]
        return [_variant(f"{key}: {_text(v)}", scalars) for v in values if v is not None]
    if not lists and len(scalars) > 1 and not plain:
        if all(_names_a_setting(k) for k, _ in scalars):  # several settings, one value each: one variant
            (key, value), *rest = scalars
            return [_variant(f"{key}: {_text(value)}", rest)]
        # labelled alternatives ({"small": 4, "large": 64}): each value is a variant, the labels are names
        return [_text(v) for _, v in scalars if _text(v)]
    out: list[str] = []                                  # one item per value, as written
    for key, items in entries:
        k = key.strip().lower()
        for item in items if isinstance(items, list) else [items]:
            if item is not None:
                out.append(_text(item) if k in _PLAIN_KEYS | _NEW_KEYS else f"{key}: {_text(item)}")
    return out


def normalise_replacement(value: Any) -> Any:
    """A mapping, or a list holding mappings -> a list of text items; other values unchanged."""
    if isinstance(value, dict):
        return object_variants(value) if value else value
    if isinstance(value, list) and any(isinstance(item, dict) for item in value):
        out: list[Any] = []
        for item in value:
            if isinstance(item, dict):
                variants = object_variants(item)
                if variants is None:
                    return value                          # nested: the plan model says where
                out += variants
            else:
                out.append(item)
        return out
    return value


def normalise_ablations(ablations: Any) -> Any:
    """Every ablation mapping with its ``replacement`` normalised (in place; the list is returned)."""
    if isinstance(ablations, list):
        for ab in ablations:
            if isinstance(ab, dict) and "replacement" in ab:
                ab["replacement"] = normalise_replacement(ab["replacement"])
    return ablations
