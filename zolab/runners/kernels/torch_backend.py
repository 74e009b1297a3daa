"""Reference perturbation backend in plain torch (CPU fallback, and the reference for the Triton kernel).

z for parameter ``index`` at ``seed`` comes from a ``torch.Generator`` seeded with a mix of both,
so every pass regenerates the same z with one parameter-sized temporary at a time.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

_MIX = 0x9E3779B97F4A7C15  # golden-ratio constant: spreads (seed, index) over the 64-bit seed space
_MASK = (1 << 63) - 1


def merge_terms(terms: Sequence[tuple[int, float]]) -> list[tuple[int, float]]:
    """Terms with the same seed share one z: sum their alphas (one draw, one rounding); drop zeros.

    MeZO's last pass is ``[(s, +eps), (s, -lr g)]``: merged, it costs one z instead of two."""
    merged: dict[int, float] = {}
    for seed, alpha in terms:
        merged[int(seed)] = merged.get(int(seed), 0.0) + float(alpha)
    return [(s, a) for s, a in merged.items() if a]


def mix_seed(seed: int, index: int) -> int:
    """Generator seed for (step seed, parameter index)."""
    return ((seed * _MIX) ^ (index * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB)) & _MASK


class TorchBackend:
    name = "torch"

    def __init__(self) -> None:
        self._generators: dict[torch.device, torch.Generator] = {}

    def _gen(self, device: torch.device) -> torch.Generator:
        gen = self._generators.get(device)
        if gen is None:
            gen = torch.Generator(device=device)
            self._generators[device] = gen
        return gen

    def z(self, p: torch.Tensor, seed: int, index: int) -> torch.Tensor:
        gen = self._gen(p.device)
        gen.manual_seed(mix_seed(seed, index))
        # drawn in fp32 then cast: the same z (up to rounding) whatever the weight dtype
        return torch.randn(p.shape, generator=gen, device=p.device, dtype=torch.float32).to(p.dtype)

    @torch.no_grad()
    def apply(
        self,
        params: Sequence[torch.Tensor],
        terms: Sequence[tuple[int, float]],
        decay: Sequence[float] | None = None,
    ) -> None:
        if decay is not None and len(decay) != len(params):  # validate before writing anything
            raise ValueError(f"decay has {len(decay)} entries for {len(params)} parameters")
        terms = merge_terms(terms)
        for i, p in enumerate(params):
            if decay is not None and decay[i]:
                p.mul_(1.0 - decay[i])
            for seed, alpha in terms:
                p.add_(self.z(p, seed, i), alpha=alpha)
