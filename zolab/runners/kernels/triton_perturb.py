"""The fused Philox perturbation kernel (Triton): one read-modify-write pass over many tensors.

Why a kernel: MeZO's step is bound by how many times it streams the weights through memory.
Regenerating z from a counter-based generator (Philox) inside the pass needs no z buffer and
lets one pass apply decay, the restore, the update and the next step's perturbation together.

Definition of z (the contract every pass relies on, independent of launch geometry):
element ``e`` of the parameter with index ``i`` at key ``k`` lies in tile ``e // TILE``, quarter
``(e % TILE) // QUAD`` and lane ``e % QUAD``; ``z = tl.randn4x(k, (i << 32) + (e // TILE) * QUAD + lane)``
taken at that quarter. One Philox call thus feeds four contiguous, coalesced vectors.
"""

from __future__ import annotations

import triton
import triton.language as tl

QUAD: int = 1024           # lanes per tile quarter (one randn4x output vector)
TILE: int = 4 * QUAD       # elements per Philox tile
TILES_PER_PROGRAM: int = 16  # a program walks up to 16 tiles (64K elements) of one tensor
NUM_WARPS: int = 4


@triton.jit
def _rmw(base, offs, numel, keep, alpha0, z0, alpha1, z1,
         DTYPE: tl.constexpr, NTERMS: tl.constexpr, HAS_DECAY: tl.constexpr):
    """x <- keep * x + alpha0 * z0 (+ alpha1 * z1), in fp32, rounded once to the storage dtype."""
    mask = offs < numel
    x = tl.load(base + offs, mask=mask, other=0.0).to(tl.float32)
    if HAS_DECAY:
        x = x * keep
    if NTERMS >= 1:
        x = x + alpha0 * z0
    if NTERMS >= 2:
        x = x + alpha1 * z1
    tl.store(base + offs, x.to(DTYPE), mask=mask)


@triton.jit(do_not_specialize=["seed0_lo", "seed0_hi", "alpha0", "seed1_lo", "seed1_hi", "alpha1"])
def perturb_kernel(
    chunk_slot_ptr,    # int32 [programs]: which tensor this program works on
    chunk_start_ptr,   # int64 [programs]: first element (a multiple of TILE)
    slot_addr_ptr,     # int64 [tensors]: data pointer
    slot_numel_ptr,    # int64 [tensors]
    slot_index_ptr,    # int64 [tensors]: parameter index (the high word of the Philox counter)
    slot_keep_ptr,     # fp32  [tensors]: 1 - decay
    seed0_lo, seed0_hi, alpha0,
    seed1_lo, seed1_hi, alpha1,
    DTYPE: tl.constexpr,
    NTERMS: tl.constexpr,
    HAS_DECAY: tl.constexpr,
    TILES: tl.constexpr,
    QUAD: tl.constexpr,
):
    pid = tl.program_id(0)
    slot = tl.load(chunk_slot_ptr + pid)
    start = tl.load(chunk_start_ptr + pid)
    base = tl.load(slot_addr_ptr + slot).to(tl.pointer_type(DTYPE))
    numel = tl.load(slot_numel_ptr + slot)
    hi_word = tl.load(slot_index_ptr + slot) << 32
    keep = 1.0
    if HAS_DECAY:
        keep = tl.load(slot_keep_ptr + slot)
    # 62-bit keys arrive as two 31-bit halves so the kernel signature never changes with the seed
    seed0 = (seed0_hi.to(tl.uint64) << 31) | seed0_lo.to(tl.uint64)
    seed1 = (seed1_hi.to(tl.uint64) << 31) | seed1_lo.to(tl.uint64)
    lane = tl.arange(0, QUAD).to(tl.int64)
    n_tiles = tl.minimum((numel - start + 4 * QUAD - 1) // (4 * QUAD), TILES)
    for t in range(n_tiles):
        tile_start = start + t * (4 * QUAD)
        counter = hi_word + tile_start // 4 + lane
        a0 = 0.0
        a1 = 0.0
        a2 = 0.0
        a3 = 0.0
        b0 = 0.0
        b1 = 0.0
        b2 = 0.0
        b3 = 0.0
        if NTERMS >= 1:
            a0, a1, a2, a3 = tl.randn4x(seed0, counter)
        if NTERMS >= 2:
            b0, b1, b2, b3 = tl.randn4x(seed1, counter)
        offs = tile_start + lane
        _rmw(base, offs, numel, keep, alpha0, a0, alpha1, b0, DTYPE, NTERMS, HAS_DECAY)
        _rmw(base, offs + QUAD, numel, keep, alpha0, a1, alpha1, b1, DTYPE, NTERMS, HAS_DECAY)
        _rmw(base, offs + 2 * QUAD, numel, keep, alpha0, a2, alpha1, b2, DTYPE, NTERMS, HAS_DECAY)
        _rmw(base, offs + 3 * QUAD, numel, keep, alpha0, a3, alpha1, b3, DTYPE, NTERMS, HAS_DECAY)
