"""The fused Philox perturbation kernel (Triton): one read-modify-write pass over many tensors.

Why a kernel: MeZO's step is bound by how many times it streams the weights through memory.
Regenerating z from a counter-based generator (Philox) inside the pass needs no z buffer and
lets one pass apply decay, the restore, the update and the next step's perturbation together.

Definition of z (the contract every pass relies on, independent of launch geometry):
element ``e`` of the parameter with index ``i`` at key ``k`` lies in tile ``e // TILE``, quarter
``(e % TILE) // QUAD`` and lane ``e % QUAD``; the four 32-bit Philox4x32-10 outputs at key ``k`` and
counter ``(i << 32) + (e // TILE) * QUAD + lane`` become four normals by Box-Muller
(``r = sqrt(-2 ln u1)``, ``theta = pi (2 u2 - 1)``; ``r cos theta``, ``r sin theta``, likewise for u3, u4),
taken at that quarter. One Philox call thus feeds four contiguous, coalesced vectors.

Cost: the pass must keep up with HBM (about 750e9 fp16 elements/s read+written on an H100), so the
transform uses the GPU's fast approximations (MUFU lg2/sin/cos: ~1e-6 absolute error, deterministic on
a given GPU); the numpy interpreter uses exact functions, so z differs in the last bits between the
two (never mixed within a run).
"""

from __future__ import annotations

import os

import triton
import triton.language as tl
from triton.language.extra.cuda import libdevice

#: fast transcendental approximations (lg2/sin/cos.approx) on the GPU; the interpreter has no libdevice
FAST_MATH: bool = os.environ.get("TRITON_INTERPRET") != "1"
N_ROUNDS: int = 10         # Philox4x32-10, as cuRAND and tl.randn
QUAD: int = 1024           # lanes per tile quarter (one Philox output vector)
TILE: int = 4 * QUAD       # elements per Philox tile
TILES_PER_PROGRAM: int = 16  # a program walks up to 16 tiles (64K elements) of one tensor
NUM_WARPS: int = 8          # launch geometry only (z does not depend on it): 88 registers, 8-byte accesses


@triton.jit
def _box_muller(u1, u2, FAST: tl.constexpr):
    """Two independent N(0, 1) from two U[0, 1) (u1 clamped away from 0 as in tl.randn)."""
    u1 = tl.maximum(1.0e-7, u1)
    theta = 3.141592653589793 * (2.0 * u2 - 1.0)     # in [-pi, pi): the approximations' accurate range
    if FAST:
        r = tl.sqrt(-2.0 * libdevice.fast_logf(u1))
        return r * libdevice.fast_cosf(theta), r * libdevice.fast_sinf(theta)
    else:
        r = tl.sqrt(-2.0 * tl.log(u1))
        return r * tl.cos(theta), r * tl.sin(theta)


@triton.jit
def _normal4(seed, counter, N_ROUNDS: tl.constexpr, FAST: tl.constexpr):
    i1, i2, i3, i4 = tl.randint4x(seed, counter, N_ROUNDS)
    n1, n2 = _box_muller(tl.uint_to_uniform_float(i1), tl.uint_to_uniform_float(i2), FAST)
    n3, n4 = _box_muller(tl.uint_to_uniform_float(i3), tl.uint_to_uniform_float(i4), FAST)
    return n1, n2, n3, n4


@triton.jit
def _load(base, offs, numel, MASKED: tl.constexpr):
    if MASKED:
        return tl.load(base + offs, mask=offs < numel, other=0.0)
    else:
        return tl.load(base + offs)


@triton.jit
def _update_store(base, offs, numel, x, keep, alpha0, z0, alpha1, z1,
                  DTYPE: tl.constexpr, NTERMS: tl.constexpr, HAS_DECAY: tl.constexpr, MASKED: tl.constexpr):
    """x <- keep * x + alpha0 * z0 (+ alpha1 * z1), in fp32, rounded once to the storage dtype."""
    x = x.to(tl.float32)
    if HAS_DECAY:
        x = x * keep
    if NTERMS >= 1:
        x = x + alpha0 * z0
    if NTERMS >= 2:
        x = x + alpha1 * z1
    if MASKED:
        tl.store(base + offs, x.to(DTYPE), mask=offs < numel)
    else:
        tl.store(base + offs, x.to(DTYPE))


@triton.jit
def _tile(base, tile_start, numel, keep, hi_word, seed0, alpha0, seed1, alpha1,
          DTYPE: tl.constexpr, NTERMS: tl.constexpr, HAS_DECAY: tl.constexpr, MASKED: tl.constexpr,
          ALIGNED: tl.constexpr, QUAD: tl.constexpr, N_ROUNDS: tl.constexpr, FAST: tl.constexpr):
    """One Philox tile: 4 * QUAD elements from one Philox call per term.

    The four loads are issued before the Philox arithmetic so memory latency overlaps the compute."""
    lane = tl.arange(0, QUAD).to(tl.int64)
    offs = tile_start + lane
    if ALIGNED:  # tile_start is a multiple of 4 * QUAD: let the compiler use wide accesses
        offs = tl.max_contiguous(tl.multiple_of(offs, QUAD), QUAD)
    x0 = _load(base, offs, numel, MASKED)
    x1 = _load(base, offs + QUAD, numel, MASKED)
    x2 = _load(base, offs + 2 * QUAD, numel, MASKED)
    x3 = _load(base, offs + 3 * QUAD, numel, MASKED)
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
        a0, a1, a2, a3 = _normal4(seed0, counter, N_ROUNDS, FAST)
    if NTERMS >= 2:
        b0, b1, b2, b3 = _normal4(seed1, counter, N_ROUNDS, FAST)
    _update_store(base, offs, numel, x0, keep, alpha0, a0, alpha1, b0, DTYPE, NTERMS, HAS_DECAY, MASKED)
    _update_store(base, offs + QUAD, numel, x1, keep, alpha0, a1, alpha1, b1, DTYPE, NTERMS, HAS_DECAY, MASKED)
    _update_store(base, offs + 2 * QUAD, numel, x2, keep, alpha0, a2, alpha1, b2, DTYPE, NTERMS, HAS_DECAY, MASKED)
    _update_store(base, offs + 3 * QUAD, numel, x3, keep, alpha0, a3, alpha1, b3, DTYPE, NTERMS, HAS_DECAY, MASKED)


@triton.jit(do_not_specialize=["seed0_lo", "seed0_hi", "alpha0", "seed1_lo", "seed1_hi", "alpha1"])
def perturb_kernel(
    chunk_slot_ptr,    # int32 [programs]: which tensor this program works on
    chunk_start_ptr,   # int64 [programs]: first element (a multiple of TILE)
    slot_addr_ptr,     # int64 [tensors]: data pointer (16-byte aligned when ALIGNED)
    slot_numel_ptr,    # int64 [tensors]
    slot_index_ptr,    # int64 [tensors]: parameter index (the high word of the Philox counter)
    slot_keep_ptr,     # fp32  [tensors]: 1 - decay
    seed0_lo, seed0_hi, alpha0,
    seed1_lo, seed1_hi, alpha1,
    DTYPE: tl.constexpr,
    NTERMS: tl.constexpr,
    HAS_DECAY: tl.constexpr,
    ALIGNED: tl.constexpr,
    TILES: tl.constexpr,
    QUAD: tl.constexpr,
    N_ROUNDS: tl.constexpr,
    FAST: tl.constexpr,
):
    pid = tl.program_id(0)
    slot = tl.load(chunk_slot_ptr + pid)
    start = tl.load(chunk_start_ptr + pid)
    base = tl.load(slot_addr_ptr + slot).to(tl.pointer_type(DTYPE))
    if ALIGNED:
        base = tl.multiple_of(base, 16)
    numel = tl.load(slot_numel_ptr + slot)
    hi_word = tl.load(slot_index_ptr + slot) << 32
    keep = 1.0
    if HAS_DECAY:
        keep = tl.load(slot_keep_ptr + slot)
    # 62-bit keys arrive as two 31-bit halves so the kernel signature never changes with the seed
    seed0 = (seed0_hi.to(tl.uint64) << 31) | seed0_lo.to(tl.uint64)
    seed1 = (seed1_hi.to(tl.uint64) << 31) | seed1_lo.to(tl.uint64)
    remaining = numel - start
    full = tl.minimum(remaining // (4 * QUAD), TILES)          # whole tiles: no masks, vector accesses
    for t in range(full):
        _tile(base, start + t * (4 * QUAD), numel, keep, hi_word, seed0, alpha0, seed1, alpha1,
              DTYPE, NTERMS, HAS_DECAY, False, ALIGNED, QUAD, N_ROUNDS, FAST)
    if full < TILES and full * (4 * QUAD) < remaining:        # the tensor's ragged last tile
        _tile(base, start + full * (4 * QUAD), numel, keep, hi_word, seed0, alpha0, seed1, alpha1,
              DTYPE, NTERMS, HAS_DECAY, True, ALIGNED, QUAD, N_ROUNDS, FAST)
