"""Triton perturbation backend: the fused Philox kernel over all parameters in one launch per dtype.

Parameters are grouped by (device, dtype, 16-byte alignment); each group gets a small table on the
device (tensor address, size, parameter index, 1 - decay) and a program table (which tensor, which
64K-element chunk), so one launch covers every tensor, large or tiny. Tables are cached by the parameters'
addresses and sizes: the table is a pure function of that key, so a stale hit is still correct.

z is the kernel's Philox stream (see :mod:`.triton_perturb`): bit-identical in every pass. It is
not the torch backend's stream (a different generator) but follows the same :class:`~.law.ZLaw`
(distribution, sparsity); the magnitude masks are the very same (:func:`~.law.magnitude_mask`).
Sphere scales come from :func:`~.triton_perturb.sumsq_kernel` once per (seed, table), then are cached.
Seeds are taken modulo 2**62. With more than two terms the kernel runs once per pair of terms
(rounding to the storage dtype in between); the optimizers use at most two per pass.

Under ``TRITON_INTERPRET=1`` the same code runs on CPU tensors (how the tests check it without a GPU).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
import triton.language as tl

from zolab.runners.kernels.law import MASK_SALT, ZLaw, magnitude_mask
from zolab.runners.kernels.torch_backend import checked_terms, stored_mask
from zolab.runners.kernels.triton_perturb import (
    FAST_MATH,
    N_ROUNDS,
    NUM_WARPS,
    QUAD,
    TILE,
    TILES_PER_PROGRAM,
    perturb_kernel,
    sumsq_kernel,
)

_TL_DTYPES = {torch.float32: tl.float32, torch.float16: tl.float16, torch.bfloat16: tl.bfloat16}
_CHUNK = TILE * TILES_PER_PROGRAM
_MAX_NUMEL = 1 << 34           # the counter's low 32-bit word holds element // 4: 2**34 elements per tensor
_KEY_BITS = 62
_CACHE_SIZE = 16
_SCALES_PER_TABLE = 8          # sphere scales kept per table (MeZO needs the current and the next seed)


def split_seed(seed: int) -> tuple[int, int]:
    """The kernel's Philox key for ``seed`` (mod 2**62) as two 31-bit halves (lo, hi)."""
    key = int(seed) % (1 << _KEY_BITS)
    return key & 0x7FFFFFFF, key >> 31


@dataclass
class _Tables:
    """Device tables for one (device, dtype, alignment) group of parameters."""

    positions: list[int]          # where the group's tensors sit in the caller's params list
    aligned: bool                 # every address 16-byte aligned: the kernel may use vector accesses
    chunk_slot: torch.Tensor
    chunk_start: torch.Tensor
    slot_addr: torch.Tensor
    slot_numel: torch.Tensor
    slot_index: torch.Tensor
    slot_keep: torch.Tensor
    slot_mask: torch.Tensor       # int64 addresses of the packed magnitude masks (zeros without)
    keep_values: tuple[float, ...] | None = None
    scales: OrderedDict[int, torch.Tensor] = field(default_factory=OrderedDict)   # sphere: seed -> [tensors]

    @property
    def programs(self) -> int:
        return int(self.chunk_slot.numel())


def _aligned(p: torch.Tensor) -> bool:
    return p.data_ptr() % 16 == 0


def _build_tables(tensors: Sequence[torch.Tensor], indices: Sequence[int], positions: list[int],
                  masks: Sequence[torch.Tensor] | None = None) -> _Tables:
    device = tensors[0].device
    numels = torch.tensor([t.numel() for t in tensors], dtype=torch.int64)
    chunks = (numels + _CHUNK - 1) // _CHUNK
    slot_of_chunk = torch.repeat_interleave(torch.arange(len(tensors), dtype=torch.int32), chunks)
    first_chunk = torch.cumsum(chunks, 0) - chunks
    chunk_start = (torch.arange(int(chunks.sum()), dtype=torch.int64) - first_chunk[slot_of_chunk.long()]) * _CHUNK

    def put(x: torch.Tensor) -> torch.Tensor:
        return x.to(device)

    return _Tables(
        positions=positions,
        aligned=all(_aligned(t) for t in tensors),
        chunk_slot=put(slot_of_chunk),
        chunk_start=put(chunk_start),
        slot_addr=put(torch.tensor([t.data_ptr() for t in tensors], dtype=torch.int64)),
        slot_numel=put(numels),
        slot_index=put(torch.tensor(list(indices), dtype=torch.int64)),
        slot_keep=put(torch.ones(len(tensors), dtype=torch.float32)),
        slot_mask=put(torch.tensor([m.data_ptr() for m in masks] if masks is not None else [0] * len(tensors),
                                   dtype=torch.int64)),
    )


def _check(i: int, p: torch.Tensor) -> None:
    if p.dtype not in _TL_DTYPES:
        raise TypeError(f"parameter {i}: dtype {p.dtype} is not supported by the triton kernel (fp32/fp16/bf16)")
    if not p.is_contiguous():
        raise ValueError(f"parameter {i}: the triton kernel needs contiguous tensors (shape {tuple(p.shape)})")
    if p.numel() >= _MAX_NUMEL:
        raise ValueError(f"parameter {i}: {p.numel()} elements exceed the kernel's counter space")


class TritonBackend:
    """Fused in-place perturbation ``p <- (1 - d) p + a0 z(s0) + a1 z(s1)`` over many tensors per launch."""

    name = "triton"

    def __init__(self, num_warps: int | None = None, law: ZLaw | None = None) -> None:
        # launch geometry never changes z, so it can be tuned per card (benchmarks/triton_check.py sweeps it)
        self.num_warps = int(num_warps or os.environ.get("ZOLAB_TRITON_WARPS") or NUM_WARPS)
        self.law = law or ZLaw()
        self._cache: OrderedDict[tuple, list[_Tables]] = OrderedDict()
        self._masks: list[torch.Tensor] | None = None

    def with_law(self, law: ZLaw) -> TritonBackend:
        """This backend drawing from ``law`` (itself when the law is unchanged)."""
        return self if law == self.law else type(self)(self.num_warps, law)

    def prepare(self, params: Sequence[torch.Tensor]) -> None:
        """Magnitude rule: compute the masks from the base weights (the same ones as the torch backend)."""
        if self.law.stored_mask:
            for i, p in enumerate(params):
                _check(i, p)
            self._masks = [magnitude_mask(p, self.law) for p in params]
            self._cache.clear()          # tables hold the mask addresses

    def held_bytes(self) -> int:
        """Memory kept between calls: the magnitude masks (1 bit a parameter)."""
        return sum(m.numel() for m in self._masks) if self._masks is not None else 0

    # -- tables --------------------------------------------------------------------------------
    def _groups(self, params: Sequence[torch.Tensor]) -> list[_Tables]:
        key = tuple((p.data_ptr(), p.numel(), p.dtype, p.device) for p in params)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        by_kind: dict[tuple[torch.device, torch.dtype, bool], list[int]] = {}
        for i, p in enumerate(params):
            _check(i, p)
            if p.numel():
                by_kind.setdefault((p.device, p.dtype, _aligned(p)), []).append(i)
        groups = [_build_tables([params[i] for i in pos], pos, pos, self._group_masks(pos))
                  for pos in by_kind.values()]
        self._cache[key] = groups
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return groups

    def _group_masks(self, indices: Sequence[int]) -> list[torch.Tensor] | None:
        return [self._masks[i] for i in indices] if self.law.stored_mask and self._masks is not None else None

    # -- the law -------------------------------------------------------------------------------
    @property
    def _sparse_mode(self) -> int:
        return 1 if self.law.random_mask else 2 if self.law.stored_mask else 0

    def _scale(self, tables: _Tables, seed: int) -> torch.Tensor:
        """Sphere: ``sqrt(k / sum z^2)`` per tensor of the table at ``seed`` (fp32 on the device)."""
        hit = tables.scales.get(seed)
        if hit is not None:
            tables.scales.move_to_end(seed)
            return hit
        device = tables.chunk_slot.device
        sums = torch.empty(tables.programs, dtype=torch.float32, device=device)
        counts = torch.empty(tables.programs, dtype=torch.int32, device=device)
        lo, hi = split_seed(seed)
        mlo, mhi = split_seed(int(seed) ^ MASK_SALT)
        ctx = torch.cuda.device(device) if device.type == "cuda" else nullcontext()
        with ctx:
            sumsq_kernel[(tables.programs,)](
                tables.chunk_slot, tables.chunk_start, tables.slot_numel, tables.slot_index, tables.slot_mask,
                lo, hi, mlo, mhi, self.law.key_threshold, sums, counts,
                SPARSE=self._sparse_mode, TILES=TILES_PER_PROGRAM, QUAD=QUAD, N_ROUNDS=N_ROUNDS, FAST=FAST_MATH,
                num_warps=self.num_warps,
            )
        # per tensor in fp64 on the host, in program order: the same scale in every pass
        slots = tables.chunk_slot.long().cpu()
        n = tables.slot_numel.numel()
        total = torch.zeros(n, dtype=torch.float64).index_add_(0, slots, sums.double().cpu())
        count = torch.zeros(n, dtype=torch.float64).index_add_(0, slots, counts.double().cpu())
        scale = torch.where(total > 0, (count / total.clamp_min(1e-300)).sqrt(), torch.zeros_like(total))
        out = scale.float().to(device)
        tables.scales[seed] = out
        if len(tables.scales) > _SCALES_PER_TABLE:
            tables.scales.popitem(last=False)
        return out

    # -- launches ------------------------------------------------------------------------------
    def _launch(self, tables: _Tables, dtype: torch.dtype, terms: Sequence[tuple[int, float]], has_decay: bool) -> None:
        if not tables.programs:
            return
        (s0, a0), (s1, a1) = (list(terms) + [(0, 0.0), (0, 0.0)])[:2]
        s0_lo, s0_hi = split_seed(s0)
        s1_lo, s1_hi = split_seed(s1)
        m0_lo, m0_hi = split_seed(int(s0) ^ MASK_SALT)
        m1_lo, m1_hi = split_seed(int(s1) ^ MASK_SALT)
        scaled = self.law.distribution == "sphere" and bool(terms)
        scale0 = self._scale(tables, s0) if scaled else tables.slot_keep
        scale1 = self._scale(tables, s1) if scaled and len(terms) > 1 else scale0
        device = tables.chunk_slot.device
        ctx = torch.cuda.device(device) if device.type == "cuda" else nullcontext()
        with ctx:
            perturb_kernel[(tables.programs,)](
                tables.chunk_slot, tables.chunk_start,
                tables.slot_addr, tables.slot_numel, tables.slot_index, tables.slot_keep, tables.slot_mask,
                scale0, scale1,
                s0_lo, s0_hi, float(a0), m0_lo, m0_hi, s1_lo, s1_hi, float(a1), m1_lo, m1_hi,
                self.law.key_threshold,
                DTYPE=_TL_DTYPES[dtype], NTERMS=len(terms), HAS_DECAY=has_decay,
                DIST=1 if self.law.distribution == "rademacher" else 0, SCALED=scaled, SPARSE=self._sparse_mode,
                ALIGNED=tables.aligned, TILES=TILES_PER_PROGRAM, QUAD=QUAD, N_ROUNDS=N_ROUNDS, FAST=FAST_MATH,
                num_warps=self.num_warps,
            )

    @torch.no_grad()
    def apply(
        self,
        params: Sequence[torch.Tensor],
        terms: Sequence[tuple[int, float]],
        decay: Sequence[float] | None = None,
    ) -> None:
        """For every parameter i: ``p_i <- (1 - decay_i) p_i + sum_k alpha_k z(seed_k, i)`` in place."""
        terms = checked_terms(params, terms, decay, self.law, self._masks)
        for tables in self._groups(params):
            dtype = params[tables.positions[0]].dtype
            has_decay = decay is not None and any(decay[i] for i in tables.positions)
            if has_decay:
                keep = tuple(1.0 - float(decay[i]) for i in tables.positions)  # type: ignore[index]
                if keep != tables.keep_values:
                    tables.slot_keep.copy_(torch.tensor(keep, dtype=torch.float32))
                    tables.keep_values = keep
            if not terms and not has_decay:
                continue
            pairs = [terms[k:k + 2] for k in range(0, len(terms), 2)] or [[]]
            for n, pair in enumerate(pairs):
                self._launch(tables, dtype, pair, has_decay and n == 0)

    def z(self, p: torch.Tensor, seed: int, index: int) -> torch.Tensor:
        """The direction the kernel adds to parameter ``index`` at ``seed``, rounded to p's dtype as it would be.

        Computed by the kernel itself (0 + 1 * z on a fresh buffer), so it is the applied z by construction.
        """
        out = torch.zeros(p.shape, dtype=p.dtype, device=p.device)
        if out.numel():
            _check(index, out)
            mask = stored_mask(self.law, self._masks, index, p)
            masks = None if mask is None else [mask]
            self._launch(_build_tables([out], [index], [0], masks), p.dtype, [(seed, 1.0)], False)
        return out
