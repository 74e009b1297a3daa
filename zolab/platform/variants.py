"""Variant expansion: the baseline plus one config per runnable (ablation, replacement).

A variant is a RunConfig without task and seed; jobs are variants x tasks x seeds (the scheduler
makes them). Variants with the same config hash are one variant labelled with every ablation it
serves, so e.g. ``n_samples=1`` against an ``n_samples=1`` baseline is run once, as the baseline.
``no_op`` and ``unresolved`` ablations add nothing (:func:`skipped_ablations` says why).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from zolab.platform.components import Resolution
from zolab.platform.plan import Plan

BASELINE_LABEL = "baseline"
ZERO_SHOT_LABEL = "zero-shot"
ZERO_SHOT_ABLATION = "zero-shot reference"
#: fields that do not change a result (same set as RunConfig.config_hash drops)
_NOT_HASHED = ("checkpoint_every", "device", "kernel", "task", "seed")


def variant_hash(config: dict[str, Any]) -> str:
    """Stable hash of a variant config: what changes the result, without task and seed."""
    d = {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.items() if k not in _NOT_HASHED}
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class VariantSpec:
    label: str
    config: dict[str, Any]
    config_hash: str
    is_baseline: bool = False
    ablations: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "config": self.config, "config_hash": self.config_hash,
                "is_baseline": self.is_baseline, "ablations": list(self.ablations)}


def expand_variants(plan: Plan, resolutions: Sequence[Resolution]) -> list[VariantSpec]:
    """Baseline first, then each new config in plan order; duplicates merged by config hash."""
    base = plan.baseline.model_dump(mode="json")
    baseline = VariantSpec(BASELINE_LABEL, base, variant_hash(base), True, [])
    by_hash: dict[str, VariantSpec] = {baseline.config_hash: baseline}
    order = [baseline]

    def add(label: str, changes: dict[str, Any], ablation: str) -> None:
        config = {**base, **changes}
        digest = variant_hash(config)
        spec = by_hash.get(digest)
        if spec is None:
            spec = VariantSpec(label, config, digest, False, [])
            by_hash[digest] = spec
            order.append(spec)
        if ablation not in spec.ablations:
            spec.ablations.append(ablation)

    if plan.zero_shot:
        add(ZERO_SHOT_LABEL, {"steps": 0}, ZERO_SHOT_ABLATION)
    for res in resolutions:
        if not res.runnable:
            continue
        if res.ablation not in baseline.ablations:  # the baseline is every ablation's contrast
            baseline.ablations.append(res.ablation)
        for label, changes in res.variants:
            add(label, changes, res.ablation)
    return order


def skipped_ablations(resolutions: Sequence[Resolution]) -> list[tuple[str, str]]:
    """(ablation, reason) for every ablation that adds no variant."""
    return [(r.ablation, f"{r.status}: {r.explanation}") for r in resolutions if not r.runnable]
