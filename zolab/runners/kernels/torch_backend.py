"""Reference perturbation backend in plain torch (CPU fallback, and the reference for the Triton kernel).

z for parameter ``index`` at ``seed`` comes from a ``torch.Generator`` seeded with a mix of both,
so every pass regenerates the same z with one parameter-sized temporary at a time.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import torch

_MIX = 0x9E3779B97F4A7C15  # golden-ratio constant: spreads (seed, index) over the 64-bit seed space
_MASK = (1 << 63) - 1


def checked_terms(params: Sequence[torch.Tensor], terms: Sequence[tuple[int, float]],
                  decay: Sequence[float] | None) -> list[tuple[int, float]]:
    """An ``apply`` call's terms, merged, after checking its decay list (before anything is written)."""
    if decay is not None and len(decay) != len(params):
        raise ValueError(f"decay has {len(decay)} entries for {len(params)} parameters")
    return merge_terms(terms)


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
    """z from a freshly seeded ``torch.Generator`` per (seed, parameter): pure, so passes regenerate it.

    On CPU, torch draws normals on one core (about 77M/s here), which makes z, not the forwards,
    the cost of a MeZO step on a real model (SmolLM2-135M: 2.4 s a pass on 2 cores). Because each
    parameter's z comes from its own seed, parameters can be drawn in parallel with identical
    results: :meth:`apply` spreads CPU parameter lists of at least :attr:`parallel_min_elements`
    over ``torch.get_num_threads()`` threads (torch releases the GIL in its kernels), largest first.
    The price is memory: up to that many parameter-sized z temporaries at once instead of one.
    """

    name = "torch"
    #: CPU parameter lists smaller than this are perturbed serially (threads cost more than they save)
    parallel_min_elements = 1 << 20

    def __init__(self) -> None:
        self._local = threading.local()      # one generator per thread and device
        self._pool: ThreadPoolExecutor | None = None
        self._pool_key = (0, 0)               # (pid, threads): a forked child or a new thread count gets a new pool

    def _gen(self, device: torch.device) -> torch.Generator:
        gens = self._local.__dict__.setdefault("generators", {})
        gen = gens.get(device)
        if gen is None:
            gen = gens[device] = torch.Generator(device=device)
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
        terms = checked_terms(params, terms, decay)

        @torch.no_grad()
        def one(i: int) -> None:
            p = params[i]
            if decay is not None and decay[i]:
                p.mul_(1.0 - decay[i])
            for seed, alpha in terms:
                p.add_(self.z(p, seed, i), alpha=alpha)

        pool = self._cpu_pool(params) if terms else None
        if pool is None:
            for i in range(len(params)):
                one(i)
            return
        largest_first = sorted(range(len(params)), key=lambda i: params[i].numel(), reverse=True)
        for _ in pool.map(one, largest_first):   # re-raises a worker's exception here
            pass

    def _cpu_pool(self, params: Sequence[torch.Tensor]) -> ThreadPoolExecutor | None:
        """The thread pool for a large CPU parameter list (None: perturb serially)."""
        threads = torch.get_num_threads()
        if (threads < 2 or len(params) < 2 or any(p.device.type != "cpu" for p in params)
                or sum(p.numel() for p in params) < self.parallel_min_elements):
            return None
        key = (os.getpid(), threads)
        if self._pool is None or self._pool_key != key:
            if self._pool is not None and self._pool_key[0] == key[0]:
                self._pool.shutdown(wait=True)    # (a pool inherited through fork has no threads to stop)
            self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="zolab-z")
            self._pool_key = key
        return self._pool
